"""Item popularity groups and per-group metric contributions.

Following the sampled-softmax study (Wu et al., "On the Effectiveness of Sampled Softmax Loss for Item
Recommendation", section 4.3): items are sorted by training popularity and cut into ``G`` groups holding
(approximately) the same total number of training interactions. **Group 0 is the least popular tail, group
``G - 1`` the most popular head.** Because the head holds few items with many interactions each, the groups
contain very different numbers of items.

The contribution of a group to Recall@K / NDCG@K (or Precision@K) is the metric computed counting only the
hits whose item belongs to that group; these metrics are linear in the hits, so the groups' contributions
add up to the overall metric (per user, hence also on average).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from symcere.errors import SymcereError
from symcere.evaluation.metrics import METRICS

__all__ = ["GROUP_ADDITIVE_METRICS", "group_contributions", "group_summary", "popularity_groups"]

GROUP_ADDITIVE_METRICS: tuple[str, ...] = ("recall", "ndcg", "precision")
"""Metrics linear in the hits, for which per-group contributions sum to the total."""


def popularity_groups(item_degree: np.ndarray, n_groups: int = 10) -> np.ndarray:
    """Group id (``0..n_groups-1``, 0 = least popular) of every item from its training degree.

    Items are sorted by degree ascending, ties by item index ascending (deterministic). With ``c_i`` the
    interactions of the items before item ``i`` in that order, ``d_i`` its degree and ``T`` the total, item
    ``i`` goes to group ``floor(G * (c_i + d_i / 2) / T)`` (its interaction mass's midpoint), clipped to
    ``[0, G-1]``. Groups therefore hold about ``T / G`` interactions each (a single item heavier than that can
    leave a neighbouring group empty). Zero-degree items come first and land in group 0; if ``T = 0`` every
    item is in group 0. Returns an int64 array of length ``len(item_degree)``.
    """
    deg = np.asarray(item_degree)
    if deg.ndim != 1:
        raise SymcereError(f"item_degree must be 1-D, got shape {deg.shape}")
    if n_groups < 1:
        raise SymcereError(f"n_groups must be >= 1, got {n_groups}")
    deg = deg.astype(np.float64)
    if np.any(~np.isfinite(deg)) or np.any(deg < 0):
        raise SymcereError("item_degree must be finite and non-negative")
    groups = np.zeros(deg.shape[0], dtype=np.int64)
    total = deg.sum()
    if total <= 0:
        return groups
    order = np.argsort(deg, kind="stable")
    d = deg[order]
    before = np.cumsum(d) - d
    g = np.floor(n_groups * (before + d / 2.0) / total).astype(np.int64)
    groups[order] = np.clip(g, 0, n_groups - 1)
    return groups


def group_summary(item_degree: np.ndarray, groups: np.ndarray, n_groups: int | None = None) -> dict:
    """Per group: number of items and of training interactions (lists indexed by group id)."""
    groups = np.asarray(groups, dtype=np.int64)
    g = int(groups.max()) + 1 if n_groups is None else n_groups
    deg = np.asarray(item_degree, dtype=np.float64)
    return {
        "n_items": np.bincount(groups, minlength=g).tolist(),
        "n_interactions": np.bincount(groups, weights=deg, minlength=g).tolist(),
    }


def group_contributions(
    hits: Tensor,
    hit_groups: Tensor,
    n_relevant: Tensor,
    ks: Sequence[int],
    metrics: Sequence[str] = ("recall", "ndcg"),
    n_groups: int | None = None,
) -> dict[str, Tensor]:
    """Per-user contribution of each popularity group to each additive metric.

    ``hits`` is the ``(B, Kmax)`` ranked hit matrix (see :mod:`symcere.evaluation.metrics`) and
    ``hit_groups`` the ``(B, Kmax)`` group id of the item at each rank. For group ``g`` the metric is
    computed on ``hits * (hit_groups == g)``: only hits on items of group ``g`` count, the normaliser
    (``n_relevant``, the ideal DCG, ``K``) is the overall one. Returns ``{"recall@20/g3": (B,) tensor, ...}``.
    """
    bad = [m for m in metrics if m not in GROUP_ADDITIVE_METRICS]
    if bad:
        raise SymcereError(
            f"per-group contributions only exist for metrics linear in the hits "
            f"{list(GROUP_ADDITIVE_METRICS)}, got {bad}"
        )
    if hits.shape != hit_groups.shape:
        raise SymcereError(f"hits {tuple(hits.shape)} and hit_groups {tuple(hit_groups.shape)} differ")
    if n_groups is None:
        n_groups = int(hit_groups.max().item()) + 1 if hit_groups.numel() else 1
    h = hits.to(torch.float64)
    out: dict[str, Tensor] = {}
    for g in range(n_groups):
        hg = h * (hit_groups == g)
        for name in metrics:
            for k in ks:
                out[f"{name}@{k}/g{g}"] = METRICS[name](hg, n_relevant, k)
    return out
