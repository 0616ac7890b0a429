"""Top-K ranking metrics from ranked hit matrices (torch only; RecBole definitions).

Every metric takes

- ``hits``: ``(B, Kmax)`` bool/float tensor; ``hits[u, r]`` is 1 when the item the model ranked at
  position ``r + 1`` (ranks start at 1) is relevant (held out) for user ``u``. Columns beyond
  ``hits.shape[1]`` count as misses, so ``k`` may exceed ``Kmax``.
- ``n_relevant``: ``(B,)`` number of relevant items of each user.
- ``k``: the cut-off.

and returns a ``(B,)`` float64 tensor of per-user values. Users with ``n_relevant == 0`` get 0 for every
metric (the evaluator never scores them). Hits are binary; a non-binary ``hits`` is used as given, which
keeps Recall, Precision and NDCG linear in ``hits`` (popularity-group contributions rely on this).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["METRICS", "MetricFn", "hit_ratio", "mrr", "ndcg", "precision", "recall"]

MetricFn = Callable[[Tensor, Tensor, int], Tensor]


def _top(hits: Tensor, k: int) -> Tensor:
    """The first ``k`` columns of ``hits`` as float64, zero-padded to ``k`` columns."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if hits.dim() != 2:
        raise ValueError(f"hits must be 2-D (B, Kmax), got shape {tuple(hits.shape)}")
    h = hits[:, :k].to(torch.float64)
    if h.shape[1] < k:
        h = torch.nn.functional.pad(h, (0, k - h.shape[1]))
    return h


def _discounts(k: int, device: torch.device) -> Tensor:
    """``1 / log2(r + 1)`` for ranks ``r = 1..k``."""
    ranks = torch.arange(1, k + 1, dtype=torch.float64, device=device)
    return 1.0 / torch.log2(ranks + 1.0)


def hit_ratio(hits: Tensor, n_relevant: Tensor, k: int) -> Tensor:
    """HR@K = 1 if at least one relevant item is in the top K, else 0."""
    return (_top(hits, k).sum(dim=1) > 0).to(torch.float64)


def recall(hits: Tensor, n_relevant: Tensor, k: int) -> Tensor:
    """Recall@K = (number of relevant items in the top K) / n_relevant (0 when n_relevant = 0)."""
    n = n_relevant.to(device=hits.device, dtype=torch.float64)
    found = _top(hits, k).sum(dim=1)
    return torch.where(n > 0, found / n.clamp(min=1.0), torch.zeros_like(found))


def precision(hits: Tensor, n_relevant: Tensor, k: int) -> Tensor:
    """Precision@K = (number of relevant items in the top K) / K."""
    return _top(hits, k).sum(dim=1) / float(k)


def ndcg(hits: Tensor, n_relevant: Tensor, k: int) -> Tensor:
    """NDCG@K with binary relevance: DCG / IDCG.

    ``DCG = sum_{r=1..K} hit_r / log2(r + 1)`` and ``IDCG = sum_{r=1..min(n_relevant, K)} 1 / log2(r + 1)``
    (all relevant items ranked first); 0 when ``n_relevant = 0``.
    """
    h = _top(hits, k)
    disc = _discounts(k, h.device)
    dcg = (h * disc).sum(dim=1)
    cum = torch.cumsum(disc, dim=0)
    n_ideal = n_relevant.to(device=h.device, dtype=torch.long).clamp(min=0, max=k)
    idcg = cum[(n_ideal - 1).clamp(min=0)]
    return torch.where(n_ideal > 0, dcg / idcg, torch.zeros_like(dcg))


def mrr(hits: Tensor, n_relevant: Tensor, k: int) -> Tensor:
    """MRR@K = 1 / (rank of the first relevant item) if it is within the top K, else 0."""
    h = _top(hits, k) > 0
    first = h.to(torch.uint8).argmax(dim=1)  # index of the first maximal value, i.e. the first hit
    rr = 1.0 / (first.to(torch.float64) + 1.0)
    return torch.where(h.any(dim=1), rr, torch.zeros_like(rr))


METRICS: dict[str, MetricFn] = {
    "hr": hit_ratio,
    "ndcg": ndcg,
    "recall": recall,
    "precision": precision,
    "mrr": mrr,
}
"""Metric name -> ``fn(hits, n_relevant, k) -> (B,)``; names appear in result keys (``"ndcg@10"``)."""
