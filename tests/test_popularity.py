import numpy as np
import pytest
import torch

from symcere.errors import SymcereError
from symcere.evaluation.metrics import METRICS
from symcere.evaluation.popularity import group_contributions, group_summary, popularity_groups


def test_two_groups_equal_interactions() -> None:
    deg = np.array([8, 0, 1, 4, 1, 2])  # total 16
    g = popularity_groups(deg, n_groups=2)
    assert g.tolist() == [1, 0, 0, 0, 0, 0]
    assert group_summary(deg, g) == {"n_items": [5, 1], "n_interactions": [8.0, 8.0]}


def test_heavy_item_can_leave_a_group_empty() -> None:
    deg = np.array([0, 1, 1, 2, 4, 8])
    # midpoints of cumulative mass: 0, .5, 1.5, 3, 6, 12 (of 16) -> * 4/16 -> 0,0,0,0,1,3
    assert popularity_groups(deg, n_groups=4).tolist() == [0, 0, 0, 0, 1, 3]


def test_equal_degrees_split_by_index_and_zero_degree_in_tail() -> None:
    assert popularity_groups(np.ones(10), n_groups=5).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert popularity_groups(np.array([5, 0, 5, 0]), n_groups=2).tolist() == [0, 0, 1, 0]
    assert popularity_groups(np.zeros(3), n_groups=4).tolist() == [0, 0, 0]


def test_monotone_in_degree() -> None:
    rng = np.random.default_rng(0)
    deg = rng.integers(0, 50, size=200)
    g = popularity_groups(deg, n_groups=10)
    order = np.argsort(deg, kind="stable")
    assert np.all(np.diff(g[order]) >= 0)
    share = np.bincount(g, weights=deg, minlength=10) / deg.sum()
    assert np.all(np.abs(share - 0.1) < 0.05)


def test_contributions_sum_to_total() -> None:
    rng = np.random.default_rng(1)
    hits = torch.as_tensor(rng.random((6, 8)) < 0.4)
    groups = torch.as_tensor(rng.integers(0, 3, size=(6, 8)))
    n_rel = torch.as_tensor(rng.integers(1, 6, size=6))
    ks = (3, 8)
    contrib = group_contributions(hits, groups, n_rel, ks, ("recall", "ndcg", "precision"), n_groups=3)
    for name in ("recall", "ndcg", "precision"):
        for k in ks:
            total = sum(contrib[f"{name}@{k}/g{g}"] for g in range(3))
            assert torch.allclose(total, METRICS[name](hits, n_rel, k))


def test_non_additive_metric_rejected() -> None:
    h = torch.zeros((1, 2), dtype=torch.bool)
    with pytest.raises(SymcereError):
        group_contributions(h, torch.zeros((1, 2), dtype=torch.long), torch.tensor([1]), (2,), ("hr",))
