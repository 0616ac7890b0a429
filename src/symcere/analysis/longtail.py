"""Long-tail recommendation (sampled-softmax study, section 4.3): each popularity group's contribution to
Recall@K and NDCG@K on the test split.

Items are cut into ``n_groups`` groups holding about the same number of TRAINING interactions
(:func:`symcere.evaluation.popularity_groups`; group 0 is the least popular tail, the last group the head).
A group's contribution is the metric counting only hits on that group's items, with the overall normaliser,
so the contributions add up to the overall metric. A model with less popularity bias moves contribution
towards the low group ids. The figure is :func:`symcere.analysis.plots.plot_longtail`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from symcere.errors import SymcereError
from symcere.evaluation import evaluate, group_summary, popularity_groups

__all__ = ["group_contributions_from_metrics", "longtail_contributions", "longtail_rows"]


def group_contributions_from_metrics(metrics: Mapping[str, float], metric: str, k: int, n_groups: int) -> np.ndarray:
    """``(n_groups,)`` contributions read from evaluator keys ``"<metric>@<k>/g<group>"`` (missing = 0)."""
    return np.array([float(metrics.get(f"{metric}@{k}/g{g}", 0.0)) for g in range(n_groups)])


def longtail_contributions(
    score_fn: Any,
    train: Any,
    heldout: Any,
    item_degree: np.ndarray,
    *,
    exclude: Any = None,
    k: int = 20,
    n_groups: int = 10,
    metrics: Sequence[str] = ("recall", "ndcg"),
    max_batch_elements: int = 2**24,
) -> dict[str, Any]:
    """Evaluate ``score_fn`` on ``heldout`` with popularity groups of ``item_degree``.

    Returns ``{"groups": group id per item, "summary": group_summary, "total": {metric: value},
    "contrib": {metric: (n_groups,) array}}``; ``contrib[m].sum() == total[m]`` up to rounding.
    """
    deg = np.asarray(item_degree)
    if deg.shape[0] != train.shape[1]:
        raise SymcereError(f"item_degree has {deg.shape[0]} entries for {train.shape[1]} items")
    groups = popularity_groups(deg, n_groups)
    res = evaluate(
        score_fn,
        train,
        heldout,
        exclude=exclude,
        ks=(k,),
        metrics=tuple(metrics),
        item_groups=groups,
        group_metrics=tuple(metrics),
        max_batch_elements=max_batch_elements,
    )
    return {
        "groups": groups,
        "summary": group_summary(deg, groups, n_groups),
        "total": {m: float(res.metrics[f"{m}@{k}"]) for m in metrics},
        "contrib": {m: group_contributions_from_metrics(res.metrics, m, k, n_groups) for m in metrics},
        "k": int(k),
        "n_groups": int(n_groups),
    }


def longtail_rows(results: Mapping[str, Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Table rows (one per group, plus a ``total`` row): items, training interactions and each run's
    contribution to ``metric``. ``results`` maps run label -> :func:`longtail_contributions` output; the
    group composition is taken from the first run."""
    if not results:
        return []
    first = next(iter(results.values()))
    n_groups, summary = int(first["n_groups"]), first["summary"]
    rows: list[dict[str, Any]] = []
    for g in range(n_groups):
        row: dict[str, Any] = {
            "group": g,
            "items": int(summary["n_items"][g]),
            "train interactions": int(summary["n_interactions"][g]),
        }
        for label, r in results.items():
            row[label] = float(r["contrib"][metric][g])
        rows.append(row)
    total: dict[str, Any] = {
        "group": "total",
        "items": int(sum(summary["n_items"])),
        "train interactions": int(sum(summary["n_interactions"])),
    }
    for label, r in results.items():
        total[label] = float(r["total"][metric])
    rows.append(total)
    return rows
