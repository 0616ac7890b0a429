import math

import pytest
import torch

from symcere.evaluation.metrics import METRICS, hit_ratio, mrr, ndcg, precision, recall

LOG2_3 = math.log2(3)  # 1.584962500721156


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def test_registry_names() -> None:
    assert set(METRICS) == {"hr", "ndcg", "recall", "precision", "mrr"}


def test_hits_at_ranks_1_and_3_of_k5() -> None:
    hits = _t([[1, 0, 1, 0, 0]])
    n_rel = torch.tensor([2])
    # DCG = 1/log2(2) + 1/log2(4) = 1.5 ; IDCG = 1 + 1/log2(3) = 1.6309297535714575
    assert ndcg(hits, n_rel, 5).item() == pytest.approx(1.5 / 1.6309297535714575)
    assert ndcg(hits, n_rel, 5).item() == pytest.approx(0.9197207891481877)
    assert hit_ratio(hits, n_rel, 5).item() == 1.0
    assert recall(hits, n_rel, 5).item() == 1.0
    assert precision(hits, n_rel, 5).item() == pytest.approx(0.4)
    assert mrr(hits, n_rel, 5).item() == 1.0


def test_single_hit_at_rank_2_with_three_relevant() -> None:
    hits = _t([[0, 1, 0, 0, 0]])
    n_rel = torch.tensor([3])
    # DCG = 1/log2(3) = 0.6309297535714575 ; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309297535714575
    assert ndcg(hits, n_rel, 5).item() == pytest.approx(0.6309297535714575 / 2.1309297535714575)
    assert ndcg(hits, n_rel, 5).item() == pytest.approx(0.2960819109658652)
    assert recall(hits, n_rel, 5).item() == pytest.approx(1 / 3)
    assert precision(hits, n_rel, 5).item() == pytest.approx(0.2)
    assert mrr(hits, n_rel, 5).item() == pytest.approx(0.5)
    assert hit_ratio(hits, n_rel, 5).item() == 1.0


def test_cutoff_and_no_hit() -> None:
    hits = _t([[0, 0, 1, 0], [0, 0, 0, 0]])
    n_rel = torch.tensor([1, 2])
    for name, fn in METRICS.items():
        assert fn(hits, n_rel, 2).tolist() == [0.0, 0.0], name
    assert mrr(hits, n_rel, 3).tolist() == pytest.approx([1 / 3, 0.0])
    assert ndcg(hits, n_rel, 3).tolist() == pytest.approx([0.5, 0.0])  # 1/log2(4) / 1


def test_ideal_dcg_capped_at_k() -> None:
    hits = _t([[1, 1]])
    n_rel = torch.tensor([5])
    assert ndcg(hits, n_rel, 2).item() == pytest.approx(1.0)  # ideal over min(5, 2) = 2 items
    assert recall(hits, n_rel, 2).item() == pytest.approx(0.4)


def test_k_beyond_columns_counts_as_misses_and_float_hits() -> None:
    hits = torch.tensor([[0.0, 1.0]])
    n_rel = torch.tensor([2])
    assert precision(hits, n_rel, 4).item() == pytest.approx(0.25)
    assert ndcg(hits, n_rel, 4).item() == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))


def test_zero_relevant_gives_zero() -> None:
    hits = _t([[0, 0]])
    n_rel = torch.tensor([0])
    assert recall(hits, n_rel, 2).item() == 0.0
    assert ndcg(hits, n_rel, 2).item() == 0.0
