"""Batched full-ranking evaluation of a ``score(users)`` function.

Ranking lives in one place, :func:`rank_scores`, used by :func:`topk_items` (also behind
``symcere recommend``) and therefore by :func:`evaluate`.

**Candidates.** For each user every item is a candidate except the items in the ``seen`` matrix (training
items, plus validation items when scoring test). Items never seen in training stay candidates. Non-candidates
get score ``-inf``; they can only appear in a top-K list when the user has fewer than K candidates, and then
never count as hits.

**Tie rule.** Items are ordered by score descending, ties broken by item index ascending (``-0.0`` ties with
``+0.0``; ``-inf`` ranks last). This is exact, with no epsilon: ``torch.topk`` only supplies the k-th largest
value ``v`` of each row (a value, unique whatever topk does with ties). The top k are then exactly the items
scoring ``> v`` plus the lowest-index items scoring ``== v`` (as many as are missing); these are collected in
item-index order and ordered with ``torch.sort(descending=True, stable=True)``, which keeps equal scores in
index order. The result does not depend on the topk implementation, device, dtype or batch composition. The
cost is close to a plain topk, plus work linear in the number of items tied at the cut-off (all of them for
an all-equal row). Integer scores are ranked as float64.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from tqdm.auto import tqdm

from symcere.errors import SymcereError
from symcere.evaluation.metrics import METRICS
from symcere.evaluation.popularity import GROUP_ADDITIVE_METRICS, group_contributions

__all__ = [
    "DEFAULT_MAX_BATCH_ELEMENTS",
    "EvalResult",
    "ScoreFn",
    "evaluate",
    "evaluate_split",
    "mean_metrics",
    "user_shard",
    "rank_scores",
    "topk_items",
]

ScoreFn = Callable[[Tensor], Tensor]
DEFAULT_MAX_BATCH_ELEMENTS = 2**24


class _HasMatrix(Protocol):
    def matrix(self, split: str) -> sp.csr_matrix: ...


@dataclass
class EvalResult:
    """Evaluation outcome.

    ``metrics``: mean over evaluated users, keys ``"<metric>@<k>"`` (plus ``"<metric>@<k>/g<group>"`` with
    popularity groups); ``per_user``: the per-user values behind each key, aligned with ``users`` (for paired
    significance tests); ``users``: evaluated user ids ascending (users with >= 1 held-out item).
    """

    metrics: dict[str, float]
    per_user: dict[str, np.ndarray] = field(repr=False)
    users: np.ndarray = field(repr=False)
    n_users: int

    def to_dict(self, per_user: bool = False) -> dict[str, Any]:
        """JSON-ready dict of ``metrics`` and ``n_users`` (``per_user=True``: also users, per-user lists)."""
        out: dict[str, Any] = {"metrics": dict(self.metrics), "n_users": int(self.n_users)}
        if per_user:
            out["users"] = self.users.tolist()
            out["per_user"] = {k: v.tolist() for k, v in self.per_user.items()}
        return out


def _as_csr(m: Any, name: str, shape: tuple[int, int] | None = None) -> sp.csr_matrix:
    if not sp.issparse(m):
        raise SymcereError(f"{name} must be a scipy sparse matrix, got {type(m).__name__}")
    m = sp.csr_matrix(m, dtype=np.float32, copy=True)  # never modify the caller's matrix
    if shape is not None and m.shape != shape:
        raise SymcereError(f"{name} has shape {m.shape}, expected {shape} (n_users x n_items)")
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0  # binary: any stored nonzero is an interaction
    return m


def _nonzeros(m: sp.csr_matrix, rows: np.ndarray, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """(row position in ``rows``, column) of every nonzero of ``m[rows]``."""
    sub = m[rows]
    r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    return torch.as_tensor(r, device=device), torch.as_tensor(sub.indices, dtype=torch.long, device=device)


def _hits(relevant: sp.csr_matrix, rows: np.ndarray, items: Tensor) -> Tensor:
    """(B, k) bool: ``items[a, j]`` is a nonzero of ``relevant[rows[a]]`` (sorted-key search, no dense mask)."""
    r, c = _nonzeros(relevant, rows, items.device)
    n = relevant.shape[1]
    keys = torch.sort(r * n + c).values
    query = torch.arange(len(rows), device=items.device).unsqueeze(1) * n + items
    if keys.numel() == 0:
        return torch.zeros(items.shape, dtype=torch.bool, device=items.device)
    at = torch.searchsorted(keys, query.reshape(-1)).clamp_max(keys.numel() - 1)
    return (keys[at] == query.reshape(-1)).reshape(items.shape)


def _row_mask(m: sp.csr_matrix, rows: np.ndarray, device: torch.device | str) -> Tensor:
    """Dense ``(len(rows), n_cols)`` bool mask of the nonzeros of ``m[rows]``."""
    sub = m[rows]
    mask = torch.zeros((len(rows), m.shape[1]), dtype=torch.bool, device=device)
    if sub.nnz:
        r = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
        cols = torch.as_tensor(sub.indices, dtype=torch.long, device=device)
        mask[torch.as_tensor(r, device=device), cols] = True
    return mask


def rank_scores(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-``min(k, n_items)`` item indices and their scores per row of ``scores (B, n_items)``.

    Order: score descending, ties by item index ascending (see the module docstring for why it is exact).
    """
    if scores.dim() != 2:
        raise SymcereError(f"scores must be 2-D (B, n_items), got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    if bool(_nan_rows(scores).any()):
        raise SymcereError("cannot rank NaN scores")
    b, n = scores.shape
    k = min(int(k), n)
    if b == 0 or k == 0:
        empty = torch.empty((b, k), dtype=torch.long, device=scores.device)
        return empty, scores.new_empty((b, k))
    # 1) the k+1 largest values of each row, unsorted, then put in the final order (score descending, item
    #    ascending) by one small sort; the k-th largest value v is unique whatever topk does with ties
    vals, idx = torch.topk(scores, min(k + 1, n), dim=1, sorted=False)
    idx, vals = _order(idx, vals)
    # where the (k+1)-th is below v, every item scoring v is among the first k and the row is exact; elsewhere
    # items tied at v are resolved below
    settled = vals[:, k] < vals[:, k - 1] if k < n else torch.ones(b, dtype=torch.bool, device=scores.device)
    top_idx, top = idx[:, :k], vals[:, :k]
    if bool(settled.all()):
        return top_idx, top
    kth = top[:, k - 1 :]
    need = (top == kth).sum(dim=1)  # how many of the top k must score exactly v
    if bool(settled.any()):
        items, out = top_idx.clone(), top.clone()
        rest = ~settled
        items[rest], out[rest] = _rank_ties(scores[rest], kth[rest], need[rest], k)
        return items, out
    return _rank_ties(scores, kth, need, k)


def _order(idx: Tensor, vals: Tensor) -> tuple[Tensor, Tensor]:
    """Sort each row's (item, score) pairs by score descending, ties by item index ascending."""
    by_item = torch.sort(idx, dim=1).indices
    idx, vals = idx.gather(1, by_item), vals.gather(1, by_item)
    by_score = torch.sort(vals, dim=1, descending=True, stable=True).indices
    return idx.gather(1, by_score), vals.gather(1, by_score)


def _nan_rows(scores: Tensor) -> Tensor:
    """(B,) bool, the rows holding a NaN: a row sum is NaN when the row holds a NaN (or both infinities), and
    only such rows are checked element by element."""
    suspect = torch.isnan(scores.sum(dim=1))
    if not bool(suspect.any()):
        return suspect
    suspect[suspect.clone()] = torch.isnan(scores[suspect]).any(dim=1)
    return suspect


def _rank_ties(scores: Tensor, kth: Tensor, need: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The exact top k of rows with items tied at the k-th value ``kth`` beyond the ``need`` ones kept."""
    b = scores.shape[0]
    # 2) every item scoring >= v, row-major: item index ascending within a row (usually exactly k per row)
    rows, cols = (scores >= kth).nonzero(as_tuple=True)
    vals = scores[rows, cols]
    # 3) of the items scoring exactly v keep the `need` lowest-index ones: exactly k per row remain
    at = vals == kth[rows, 0]
    counts = torch.bincount(rows, minlength=b)
    cum = torch.cumsum(at, dim=0)
    before_row = torch.cat([cum.new_zeros(1), cum])[torch.cumsum(counts, 0) - counts]
    keep = ~at | (cum - before_row[rows] <= need[rows])
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    # 4) stable sorts: by score descending (equal scores keep index order), then by row
    order = torch.sort(vals, descending=True, stable=True).indices
    order = order[torch.sort(rows[order], stable=True).indices]
    return cols[order].view(b, k), vals[order].view(b, k)


def _check_scores(scores: Any, users: Tensor, n_items: int) -> Tensor:
    if not isinstance(scores, Tensor):
        scores = torch.as_tensor(scores)
    if scores.shape != (users.shape[0], n_items):
        raise SymcereError(
            f"score_fn returned shape {tuple(scores.shape)} for {users.shape[0]} users; "
            f"expected ({users.shape[0]}, {n_items})"
        )
    if scores.is_floating_point():
        nan_rows = _nan_rows(scores)
        if bool(nan_rows.any()):
            bad = users[nan_rows.to(users.device)][:5].tolist()
            raise SymcereError(
                f"score_fn returned NaN scores for {int(nan_rows.sum())} of {users.shape[0]} users "
                f"(e.g. users {bad}); the model has probably diverged"
            )
    else:
        scores = scores.to(torch.float64)
    return scores


def _batches(
    score_fn: ScoreFn,
    seen: sp.csr_matrix,
    users: np.ndarray,
    k: int,
    max_batch_elements: int,
    device: torch.device | str,
    progress: bool,
    desc: str,
) -> Iterator[tuple[np.ndarray, Tensor, Tensor]]:
    """Yield ``(batch_users, items (B, k'), scores (B, k'))`` with ``k' = min(k, n_items)``."""
    n_items = seen.shape[1]
    per_batch = users_per_batch(max_batch_elements, n_items)
    with (
        torch.no_grad(),
        tqdm(total=len(users), desc=desc, unit="user", file=sys.stderr, disable=not progress) as bar,
    ):
        for start in range(0, len(users), per_batch):
            bu = users[start : start + per_batch]
            ut = torch.as_tensor(bu, dtype=torch.long, device=device)
            raw = score_fn(ut)
            # a fresh tensor nobody else holds (the usual matmul output) is masked in place, anything else
            # (a view, a cached table, an array) is copied first
            own = isinstance(raw, Tensor) and raw._base is None and sys.getrefcount(raw) <= 2
            scores = _check_scores(raw, ut, n_items).to(device)
            del raw
            if not own:
                scores = scores.clone()
            rows, cols = _nonzeros(seen, bu, device)
            scores[rows, cols] = float("-inf")
            items, top = rank_scores(scores, k)
            yield bu, items, top
            bar.update(len(bu))


def topk_items(
    score_fn: ScoreFn,
    seen: sp.csr_matrix,
    users: np.ndarray | Sequence[int] | Tensor,
    k: int,
    max_batch_elements: int = DEFAULT_MAX_BATCH_ELEMENTS,
    *,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` recommendations per user, excluding the ``seen`` items (n_users x n_items sparse).

    Returns ``(items, scores)``: LongTensor and score tensor of shape ``(U, min(k, n_items))`` on CPU, rows
    in the order of ``users``. Order within a row: score descending, ties by item index ascending. When a user
    has fewer than ``k`` candidates the tail holds seen items with score ``-inf``.
    """
    if k < 1:
        raise SymcereError(f"k must be >= 1, got {k}")
    seen = _as_csr(seen, "seen")
    u = np.asarray(users.cpu() if isinstance(users, Tensor) else users, dtype=np.int64).reshape(-1)
    if u.size and (u.min() < 0 or u.max() >= seen.shape[0]):
        raise SymcereError(f"user ids must lie in [0, {seen.shape[0]}), got range [{u.min()}, {u.max()}]")
    kk = min(k, seen.shape[1])
    items, scores = [], []
    for _, it, sc in _batches(score_fn, seen, u, k, max_batch_elements, device, progress, "recommend"):
        items.append(it.cpu())
        scores.append(sc.cpu())
    if not items:
        return torch.empty((0, kk), dtype=torch.long), torch.empty((0, kk))
    return torch.cat(items), torch.cat(scores)


def evaluate(
    score_fn: ScoreFn,
    train: sp.csr_matrix,
    heldout: sp.csr_matrix,
    *,
    exclude: sp.csr_matrix | None = None,
    ks: Sequence[int] = (10,),
    metrics: Sequence[str] = ("hr", "ndcg", "recall", "precision", "mrr"),
    max_batch_elements: int = DEFAULT_MAX_BATCH_ELEMENTS,
    progress: bool = False,
    device: str | torch.device = "cpu",
    item_groups: np.ndarray | None = None,
    group_metrics: Sequence[str] = ("recall", "ndcg"),
    shard: tuple[int, int] | None = None,
) -> EvalResult:
    """Full-ranking evaluation of ``score_fn(users) -> (B, n_items)`` (higher is better).

    Users with >= 1 item in ``heldout`` are evaluated; each ranks all items except its ``train`` items and
    its ``exclude`` items (e.g. validation items when scoring test). Relevant items are the user's held-out
    items; ``n_relevant`` counts all of them (RecBole convention), though a held-out item that is also
    excluded can never be a hit. Metrics are averaged over evaluated users. With ``item_groups`` (group id per
    item, e.g. from :func:`~symcere.evaluation.popularity.popularity_groups`) the per-group contributions of
    ``group_metrics`` are added under keys like ``"recall@20/g3"``. ``max_batch_elements`` bounds the dense
    score block: ``max(1, max_batch_elements // n_items)`` users per batch (results do not depend on it).
    ``shard=(rank, world)`` evaluates only that rank's batches (:func:`user_shard`); the full result is
    ``symcere.training.distributed.gather_eval`` of the shards.
    """
    train = _as_csr(train, "train")
    shape = train.shape
    heldout = _as_csr(heldout, "heldout", shape)
    seen = train if exclude is None else _as_csr(train + _as_csr(exclude, "exclude", shape), "seen")
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise SymcereError(f"ks must be positive integers, got {ks}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise SymcereError(f"unknown metrics {unknown}; known: {sorted(METRICS)}")
    groups_t: Tensor | None = None
    n_groups = 0
    gmetrics: list[str] = []
    if item_groups is not None:
        g = np.asarray(item_groups, dtype=np.int64)
        if g.shape != (shape[1],) or (g.size and g.min() < 0):
            raise SymcereError(f"item_groups must be {shape[1]} non-negative group ids, got shape {g.shape}")
        bad = [m for m in group_metrics if m not in GROUP_ADDITIVE_METRICS]
        if bad:
            raise SymcereError(f"group_metrics must be among {list(GROUP_ADDITIVE_METRICS)}, got {bad}")
        groups_t = torch.as_tensor(g)
        n_groups = int(g.max()) + 1 if g.size else 1
        gmetrics = list(group_metrics)

    n_rel_all = np.diff(heldout.indptr)
    users = np.flatnonzero(n_rel_all > 0).astype(np.int64)
    if users.size == 0:
        raise SymcereError("no user has a held-out item: nothing to evaluate")
    if shard is not None:
        users = user_shard(users, users_per_batch(max_batch_elements, shape[1]), *shard)
    # relevant candidates: held-out items that are not seen
    relevant = heldout - heldout.multiply(seen)
    relevant.eliminate_zeros()
    kmax = max(ks)

    chunks: dict[str, list[Tensor]] = {}
    batches = _batches(score_fn, seen, users, kmax, max_batch_elements, device, progress, "evaluate")
    for bu, items, _ in batches:
        items = items.cpu()
        hits = _hits(relevant, bu, items)
        n_rel = torch.as_tensor(n_rel_all[bu], dtype=torch.long)
        for name in metrics:
            for k in ks:
                chunks.setdefault(f"{name}@{k}", []).append(METRICS[name](hits, n_rel, k))
        if groups_t is not None:
            contrib = group_contributions(hits, groups_t[items], n_rel, ks, gmetrics, n_groups)
            for key, val in contrib.items():
                chunks.setdefault(key, []).append(val)

    per_user = {key: torch.cat(vals).numpy() for key, vals in chunks.items()}
    means = mean_metrics(per_user)
    return EvalResult(metrics=means, per_user=per_user, users=users, n_users=int(users.size))


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """The reported metrics: the mean of each per-user array (one reduction, shared with the sharded gather)."""
    return {key: float(v.mean()) for key, v in per_user.items()}


def users_per_batch(max_batch_elements: int, n_items: int) -> int:
    """Users scored per batch: ``max(1, max_batch_elements // n_items)``."""
    return max(1, int(max_batch_elements) // max(1, n_items))


def user_shard(users: np.ndarray, per_batch: int, rank: int, world: int) -> np.ndarray:
    """The users ``rank`` of ``world`` evaluates: whole batches of ``per_batch`` users (the batches a single process
    scores), dealt round-robin, so every user's scores come from the same batch as in one process."""
    if not 0 <= rank < world:
        raise SymcereError(f"shard must be (rank, world) with 0 <= rank < world, got ({rank}, {world})")
    starts = range(rank * per_batch, len(users), world * per_batch)
    if not starts:
        return users[:0]
    return np.concatenate([users[s : s + per_batch] for s in starts])


def evaluate_split(score_fn: ScoreFn, dataset: _HasMatrix, split: str, **kw: Any) -> EvalResult:
    """:func:`evaluate` on ``dataset.matrix(split)``: ``"valid"`` excludes train items, ``"test"`` train and
    validation items. ``kw`` is passed on (``ks``, ``metrics``, ``item_groups``, ...)."""
    if split not in ("valid", "test"):
        raise SymcereError(f"split must be 'valid' or 'test', got {split!r}")
    if "exclude" in kw:
        raise SymcereError("evaluate_split sets `exclude` itself; call evaluate() for custom exclusions")
    train = dataset.matrix("train")
    exclude = dataset.matrix("valid") if split == "test" else None
    return evaluate(score_fn, train, dataset.matrix(split), exclude=exclude, **kw)
