import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from symcere.errors import SymcereError
from symcere.evaluation import evaluate, evaluate_split, popularity_groups, rank_scores, topk_items

LOG2_3 = math.log2(3)


def _csr(n_users: int, n_items: int, pairs: list[tuple[int, int]]) -> sp.csr_matrix:
    if not pairs:
        return sp.csr_matrix((n_users, n_items), dtype=np.float32)
    r, c = zip(*pairs, strict=True)
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_users, n_items))


def _fixed(table: np.ndarray):
    t = torch.as_tensor(table)
    return lambda users: t[users]


def test_hand_example_excludes_train_and_keeps_unseen_items() -> None:
    # 1 user, 6 items; item 0 is a training item with the top score, item 5 never occurs in training.
    train = _csr(1, 6, [(0, 0), (0, 1)])
    heldout = _csr(1, 6, [(0, 2), (0, 5)])
    scores = np.array([[9.0, 8.0, 5.0, 6.0, 1.0, 7.0]], dtype=np.float32)
    res = evaluate(_fixed(scores), train, heldout, ks=(3,))
    # ranking of candidates 2..5: 5 (7), 3 (6), 2 (5), 4 (1) -> hits at ranks 1 and 3
    assert res.metrics["ndcg@3"] == pytest.approx((1 + 0.5) / (1 + 1 / LOG2_3))
    assert res.metrics["recall@3"] == 1.0
    assert res.metrics["precision@3"] == pytest.approx(2 / 3)
    assert res.metrics["mrr@3"] == 1.0
    assert res.metrics["hr@3"] == 1.0
    items, top = topk_items(_fixed(scores), train, [0], 3)
    assert items.tolist() == [[5, 3, 2]]
    assert top.tolist() == [[7.0, 6.0, 5.0]]


def test_validation_items_excluded_at_test_time() -> None:
    train = _csr(1, 5, [(0, 0)])
    valid = _csr(1, 5, [(0, 1)])
    test = _csr(1, 5, [(0, 2)])
    scores = np.array([[0.0, 9.0, 3.0, 4.0, 1.0]], dtype=np.float32)
    with_excl = evaluate(_fixed(scores), train, test, exclude=valid, ks=(1, 2), metrics=("mrr",))
    without = evaluate(_fixed(scores), train, test, ks=(1, 2), metrics=("mrr",))
    assert with_excl.metrics == {"mrr@1": 0.0, "mrr@2": 0.5}  # ranking 3, 2, 4
    assert without.metrics == {"mrr@1": 0.0, "mrr@2": 0.0}  # ranking 1, 3, 2, 4


class _FakeDataset:
    def __init__(self, mats: dict[str, sp.csr_matrix]) -> None:
        self.mats = mats

    def matrix(self, split: str) -> sp.csr_matrix:
        return self.mats[split]


def test_evaluate_split() -> None:
    ds = _FakeDataset(
        {"train": _csr(2, 4, [(0, 0), (1, 1)]), "valid": _csr(2, 4, [(0, 1)]), "test": _csr(2, 4, [(0, 2)])}
    )
    scores = np.array([[0.0, 5.0, 4.0, 3.0], [1.0, 1.0, 1.0, 1.0]], dtype=np.float32)
    test = evaluate_split(_fixed(scores), ds, "test", ks=(1,), metrics=("hr",))
    assert test.metrics == {"hr@1": 1.0} and test.users.tolist() == [0] and test.n_users == 1
    valid = evaluate_split(_fixed(scores), ds, "valid", ks=(1,), metrics=("hr",))
    assert valid.metrics == {"hr@1": 1.0}
    with pytest.raises(SymcereError):
        evaluate_split(_fixed(scores), ds, "train")


def test_deterministic_ties_lower_index_first() -> None:
    seen = _csr(2, 7, [(0, 1), (1, 6)])
    flat = np.zeros((2, 7), dtype=np.float32)
    flat[1, 3] = -0.0  # -0.0 ties with +0.0
    for dtype in (np.float32, np.float64):
        items, _ = topk_items(_fixed(flat.astype(dtype)), seen, [0, 1], 4)
        assert items.tolist() == [[0, 2, 3, 4], [0, 1, 2, 3]]
    s = torch.tensor([[1.0, 3.0, 3.0, float("-inf"), 3.0, 1.0, float("-inf")]])
    assert rank_scores(s, 7)[0].tolist() == [[1, 2, 4, 0, 5, 3, 6]]
    assert rank_scores(s.double(), 7)[0].tolist() == [[1, 2, 4, 0, 5, 3, 6]]
    assert rank_scores(s.half(), 3)[0].tolist() == [[1, 2, 4]]


def test_rank_scores_matches_lexsort_with_many_ties() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.round(torch.randn(8, 300, generator=g) * 3) / 3 - 0.5
    a_idx, a_val = rank_scores(s, 50)
    b_idx, b_val = rank_scores(s.double(), 50)
    assert torch.equal(a_idx, b_idx)
    assert torch.equal(a_val.double(), b_val)
    order = np.lexsort((np.arange(300)[None].repeat(8, 0), -s.numpy()), axis=1)
    assert np.array_equal(a_idx.numpy(), order[:, :50])
    # rows with and without ties at the k-th value in one call, every k up to the row length
    for levels, k in ((2, 1), (5, 7), (40, 20), (1000, 20), (7, 59), (3, 60)):
        x = torch.randint(0, levels, (64, 60), generator=g).float()
        x[::3] = torch.randn(22, 60, generator=g)  # tie-free rows
        want = np.lexsort((np.arange(60)[None].repeat(64, 0), -x.numpy()), axis=1)[:, :k]
        got_idx, got_val = rank_scores(x, k)
        assert np.array_equal(got_idx.numpy(), want), (levels, k)
        assert torch.equal(got_val, x.gather(1, got_idx))
    with pytest.raises(SymcereError, match="NaN"):
        rank_scores(torch.tensor([[0.0, float("nan")]]), 1)


def test_fewer_candidates_than_k() -> None:
    train = _csr(1, 3, [(0, 0), (0, 2)])
    heldout = _csr(1, 3, [(0, 1)])
    scores = np.array([[5.0, 1.0, 4.0]], dtype=np.float32)
    items, top = topk_items(_fixed(scores), train, [0], 10)
    assert items.tolist() == [[1, 0, 2]] and top[0, 1:].tolist() == [-math.inf, -math.inf]
    res = evaluate(_fixed(scores), train, heldout, ks=(5,))
    assert res.metrics["recall@5"] == 1.0 and res.metrics["precision@5"] == pytest.approx(0.2)


def _random_problem(seed: int, n_users: int = 25, n_items: int = 30):
    rng = np.random.default_rng(seed)
    split = rng.choice(4, size=(n_users, n_items), p=[0.7, 0.15, 0.08, 0.07])  # none/train/valid/test
    split[:, -3:] = np.where(split[:, -3:] == 1, 0, split[:, -3:])  # last items never trained
    train, valid, test = (sp.csr_matrix((split == v).astype(np.float32)) for v in (1, 2, 3))
    scores = (rng.integers(0, 6, size=(n_users, n_items)) / 2).astype(np.float32)  # many ties
    return train, valid, test, scores


def _reference(train, valid, test, scores, ks):
    """Brute force: loop over users, sort all candidates by (score desc, item asc)."""
    seen = (train + valid).toarray() > 0
    rel = test.toarray() > 0
    out: dict[str, list[float]] = {}
    users = []
    for u in range(scores.shape[0]):
        n_rel = int(rel[u].sum())
        if n_rel == 0:
            continue
        users.append(u)
        cand = [i for i in range(scores.shape[1]) if not seen[u, i]]
        ranked = sorted(cand, key=lambda i, u=u: (-scores[u, i], i))
        for k in ks:
            h = [1.0 if rel[u, i] else 0.0 for i in ranked[:k]]
            dcg = sum(x / math.log2(r + 2) for r, x in enumerate(h))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(n_rel, k)))
            first = next((r for r, x in enumerate(h) if x), None)
            out.setdefault(f"hr@{k}", []).append(float(sum(h) > 0))
            out.setdefault(f"recall@{k}", []).append(sum(h) / n_rel)
            out.setdefault(f"precision@{k}", []).append(sum(h) / k)
            out.setdefault(f"ndcg@{k}", []).append(dcg / idcg)
            out.setdefault(f"mrr@{k}", []).append(0.0 if first is None else 1 / (first + 1))
    return np.array(users), {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_reference_and_batching_invariant(seed: int) -> None:
    train, valid, test, scores = _random_problem(seed)
    ks = (1, 5, 12)
    small = evaluate(_fixed(scores), train, test, exclude=valid, ks=ks, max_batch_elements=1)
    large = evaluate(_fixed(scores), train, test, exclude=valid, ks=ks, max_batch_elements=2**24)
    f64 = _fixed(scores.astype(np.float64))
    mid = evaluate(f64, train, test, exclude=valid, ks=ks, max_batch_elements=100)
    users, ref = _reference(train, valid, test, scores, ks)
    assert small.users.tolist() == users.tolist() and small.n_users == len(users)
    assert set(small.per_user) == set(ref)
    for key, val in ref.items():
        np.testing.assert_allclose(small.per_user[key], val, rtol=1e-12, atol=1e-12, err_msg=key)
        np.testing.assert_array_equal(small.per_user[key], large.per_user[key])
        np.testing.assert_allclose(mid.per_user[key], val, rtol=1e-12, atol=1e-12)
        assert small.metrics[key] == pytest.approx(val.mean())


def test_popularity_group_contributions_sum_to_total() -> None:
    train, valid, test, scores = _random_problem(3)
    groups = popularity_groups(np.asarray(train.sum(axis=0)).ravel(), n_groups=4)
    res = evaluate(_fixed(scores), train, test, exclude=valid, ks=(5, 10), item_groups=groups)
    for name in ("recall", "ndcg"):
        for k in (5, 10):
            parts = [res.per_user[f"{name}@{k}/g{g}"] for g in range(4)]
            np.testing.assert_allclose(np.sum(parts, axis=0), res.per_user[f"{name}@{k}"], atol=1e-12)
            assert sum(res.metrics[f"{name}@{k}/g{g}"] for g in range(4)) == pytest.approx(res.metrics[f"{name}@{k}"])
    assert "hr@5/g0" not in res.metrics


def test_errors_and_inputs_untouched() -> None:
    train = _csr(2, 3, [(0, 0)])
    heldout = _csr(2, 3, [(0, 1), (1, 2)])
    data_before = train.data.copy()
    nan = np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]], dtype=np.float32)
    with pytest.raises(SymcereError, match="NaN"):
        evaluate(_fixed(nan), train, heldout)
    with pytest.raises(SymcereError, match="shape"):
        evaluate(lambda users: torch.zeros(len(users), 2), train, heldout)
    with pytest.raises(SymcereError, match="unknown metrics"):
        evaluate(_fixed(nan), train, heldout, metrics=("auc",))
    with pytest.raises(SymcereError, match="no user"):
        evaluate(_fixed(nan), train, _csr(2, 3, []))
    assert np.array_equal(train.data, data_before)


def test_to_dict_and_progress(capsys: pytest.CaptureFixture[str]) -> None:
    train = _csr(3, 4, [(0, 0)])
    heldout = _csr(3, 4, [(0, 1), (2, 3)])
    scores = np.arange(12, dtype=np.float32).reshape(3, 4)
    res = evaluate(_fixed(scores), train, heldout, ks=(2,), metrics=("hr",), progress=True)
    assert res.to_dict() == {"metrics": {"hr@2": 0.5}, "n_users": 2}  # user 0 ranks 3, 2; user 2 hits 3
    assert res.to_dict(per_user=True)["users"] == [0, 2]
    assert capsys.readouterr().out == ""
