"""Every figure of ``symcere analyze``: magnitude scatter, similarity histograms (Table 4), dimension variance
and singular-value spectrum (Figure 4), long-tail contributions, LIME word classes (Tables 5-7) and the
embedding map (Figure 1).

Each ``plot_*`` function takes numbers computed by the analysis modules, draws one figure (no pyplot state)
and writes it as PNG atomically. matplotlib is imported on the first figure, through
:func:`symcere.extras.require` (``pip install 'symcere[analysis]'``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from symcere.analysis.anchoring import CLASSES
from symcere.analysis.embedding_map import ItemMap
from symcere.extras import require
from symcere.io import atomic_write

__all__ = [
    "plot_class_contributions",
    "plot_dimension_variance",
    "plot_embedding_map",
    "plot_longtail",
    "plot_magnitude",
    "plot_similarity_hist",
    "plot_spectrum",
    "plot_training_curves",
    "run_colors",
]

_DPI = 110


def run_colors(labels: Sequence[str]) -> dict[str, str]:
    """A fixed colour per run label (matplotlib's ``tab10`` cycle in order), shared by every figure."""
    palette = [f"C{k}" for k in range(10)]
    out: dict[str, str] = {}
    for label in labels:
        if label not in out:
            out[label] = palette[len(out) % len(palette)]
    return out


def _colors(labels: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    base = run_colors(labels)
    return {k: (colors or {}).get(k, v) for k, v in base.items()}


def _figure(width: float, height: float) -> Any:
    mpl_figure = require("matplotlib.figure", "figures")
    return mpl_figure.Figure(figsize=(width, height), layout="constrained")


def _save(fig: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=_DPI))


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def _legend_cols(labels: Sequence[str]) -> int:
    """One legend column for long run labels, else up to three."""
    return 1 if max(map(len, labels), default=0) > 40 else min(3, max(1, len(labels)))


# -- geometry (section 6.1) -----------------------------------------------------------------------------------
def plot_magnitude(
    panels: Sequence[Mapping[str, object]],
    path: str | Path,
    title: str = "Embedding norm vs training degree",
) -> Path:
    """One scatter panel per run: ``log(1 + degree)`` against the L2 norm of each item (and user) embedding.

    Each panel mapping holds ``label``, ``item_degree``, ``item_norm`` and optionally ``user_degree``,
    ``user_norm``, ``item_rho``, ``user_rho``.
    """
    rows, cols = _grid(max(1, len(panels)))
    fig = _figure(4.6 * cols, 3.8 * rows)
    fig.suptitle(title)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, p in zip(axes, panels, strict=False):
        if p.get("user_norm") is not None:
            rho = p.get("user_rho", float("nan"))
            ax.scatter(
                np.log1p(np.asarray(p["user_degree"])),
                p["user_norm"],
                s=6,
                alpha=0.35,
                color="tab:orange",
                label=f"users (rho={rho:.2f})",
            )
        rho = p.get("item_rho", float("nan"))
        ax.scatter(
            np.log1p(np.asarray(p["item_degree"])),
            p["item_norm"],
            s=6,
            alpha=0.5,
            color="tab:blue",
            label=f"items (rho={rho:.2f})",
        )
        ax.set_title(str(p["label"]), fontsize=9)
        ax.set_xlabel("log(1 + training degree)")
        ax.set_ylabel("L2 norm of graph embedding")
        ax.legend(fontsize=8, loc="best", markerscale=2)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_similarity_hist(
    series: Sequence[tuple[str, np.ndarray]], path: str | Path, title: str, colors: Mapping[str, str] | None = None
) -> Path:
    """Overlaid histograms of sampled cosine similarities, one line per ``(label, values)``."""
    allv = np.concatenate([np.asarray(v) for _, v in series]) if series else np.zeros(1)
    lo, hi = float(np.min(allv)), float(np.max(allv))
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 60)
    return _step_histograms(
        series,
        path,
        title,
        colors,
        bins,
        xlabel="cosine similarity of a random item pair",
        ylabel="density",
        linewidth=1.6,
        density=True,
    )


def plot_dimension_variance(
    series: Sequence[tuple[str, np.ndarray]], path: str | Path, title: str, colors: Mapping[str, str] | None = None
) -> Path:
    """Overlaid histograms of per-dimension variances (log-spaced bins), one per ``(label, variances)``."""
    allv = np.concatenate([np.asarray(v) for _, v in series]) if series else np.ones(1)
    pos = allv[allv > 0]
    lo, hi = (float(pos.min()), float(pos.max())) if pos.size else (1e-6, 1.0)
    n_dims = max((np.asarray(v).size for _, v in series), default=1)
    bins = np.geomspace(lo * 0.9, hi * 1.1 if hi > lo else lo * 2, int(np.clip(n_dims // 3, 10, 40)))
    clipped = [(label, np.clip(v, lo, None)) for label, v in series]
    return _step_histograms(
        clipped,
        path,
        title,
        colors,
        bins,
        xlabel="variance of one embedding dimension (L2-normalised rows)",
        ylabel="number of dimensions",
        linewidth=1.8,
        log_x=True,
    )


def _step_histograms(
    series: Sequence[tuple[str, np.ndarray]],
    path: str | Path,
    title: str,
    colors: Mapping[str, str] | None,
    bins: np.ndarray,
    *,
    xlabel: str,
    ylabel: str,
    linewidth: float,
    density: bool = False,
    log_x: bool = False,
) -> Path:
    """One figure of overlaid step histograms, one per ``(label, values)``, in the runs' fixed colours."""
    col = _colors([lab for lab, _ in series], colors)
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    for label, v in series:
        ax.hist(v, bins=bins, histtype="step", linewidth=linewidth, density=density, label=label, color=col[label])
    if log_x:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_spectrum(
    panels: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]],
    path: str | Path,
    title: str,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """Singular-value spectra (``s_k / s_1``, log scale), one panel per ``(panel title, [(label, s), ...])``;
    one legend below the panels."""
    lines = require("matplotlib.lines", "figures")
    col = _colors([lab for _, series in panels for lab, _ in series], colors)
    n = max(1, len(panels))
    fig = _figure(5.2 * n, 4.3)
    fig.suptitle(title)
    axes = fig.subplots(1, n, squeeze=False).ravel()
    for ax, (ptitle, series) in zip(axes, panels, strict=False):
        for label, s in series:
            s = np.asarray(s, dtype=np.float64)
            if s.size and s[0] > 0:
                ax.plot(np.arange(1, s.size + 1), s / s[0], linewidth=1.6, label=label, color=col[label])
        ax.set_yscale("log")
        ax.set_title(ptitle, fontsize=10)
        ax.set_xlabel("singular value index k")
        ax.set_ylabel("s_k / s_1")
        ax.grid(alpha=0.3, which="both")
    handles = [lines.Line2D([], [], color=c, linewidth=2, label=lab) for lab, c in col.items()]
    fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncols=_legend_cols(list(col)))
    return _save(fig, path)


# -- long tail --------------------------------------------------------------------------------------------------
def plot_longtail(
    results: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    metrics: Sequence[str] = ("recall", "ndcg"),
    title: str = "Contribution of each popularity group (test)",
    colors: Mapping[str, str] | None = None,
) -> Path:
    """Grouped bar chart of :func:`~symcere.analysis.longtail.longtail_contributions` results (run label ->
    result): one panel per metric, groups on the x axis, one bar per run; legend below."""
    labels = list(results)
    col = _colors(labels, colors)
    first = next(iter(results.values()))
    n_groups, k = int(first["n_groups"]), int(first["k"])
    fig = _figure(max(7.0, 0.9 * n_groups + 1.5), 3.6 * len(metrics))
    fig.suptitle(title)
    axes = fig.subplots(len(metrics), 1, squeeze=False).ravel()
    width = 0.8 / max(1, len(labels))
    x = np.arange(n_groups)
    for ax, m in zip(axes, metrics, strict=True):
        for r, label in enumerate(labels):
            ax.bar(
                x - 0.4 + width * (r + 0.5),
                results[label]["contrib"][m],
                width=width,
                label=label if ax is axes[0] else None,
                color=col[label],
            )
        ax.set_xticks(x)
        ax.set_xticklabels([f"{g}" for g in range(n_groups)])
        ax.set_xlabel(f"popularity group (0 = long tail ... {n_groups - 1} = head)")
        ax.set_ylabel(f"contribution to {m.upper() if m == 'ndcg' else m.capitalize()}@{k}")
        ax.grid(alpha=0.3, axis="y")
    fig.legend(loc="outside lower center", fontsize=8, ncols=_legend_cols(labels))
    return _save(fig, path)


# -- semantic anchoring (section 6.2) ---------------------------------------------------------------------------
def plot_class_contributions(
    summaries: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    title: str,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """Bar chart of :func:`~symcere.analysis.anchoring.class_summary` rows (run label -> rows): mean LIME
    contribution per word class (x) for each run (bars)."""
    labels = list(summaries)
    col = _colors(labels, colors)
    classes = [c for c in CLASSES if any(r["class"] == c and r["occurrences"] for s in summaries.values() for r in s)]
    fig = _figure(max(7.0, 1.8 * len(classes) + 2), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(labels))
    x = np.arange(len(classes))
    for r, label in enumerate(labels):
        by = {row["class"]: row["mean contribution"] for row in summaries[label]}
        ax.bar(
            x - 0.4 + width * (r + 0.5),
            [by.get(c, np.nan) for c in classes],
            width=width,
            label=label,
            color=col[label],
        )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(classes)
    ax.set_xlabel("word class")
    ax.set_ylabel("mean LIME weight on cos(g_ui, t)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _save(fig, path)


# -- embedding map (Figure 1) -----------------------------------------------------------------------------------
def _marker_sizes(degree: np.ndarray) -> np.ndarray:
    """Marker area ~ log(1 + degree), 3 to 48 points."""
    d = np.log1p(np.asarray(degree, dtype=np.float64))
    top = d.max() if d.size and d.max() > 0 else 1.0
    return 3.0 + 45.0 * d / top


def plot_embedding_map(emap: ItemMap, path: str | Path, title: str) -> Path:
    """Two panels (raw, L2-normalised) of an :func:`~symcere.analysis.embedding_map.item_map`: graph items
    in blue, text items in red, marker size ~ log(1 + training degree)."""
    size = _marker_sizes(emap.degree)
    fig = _figure(11.5, 5.0)
    fig.suptitle(title)
    axes = fig.subplots(1, 2)
    n = emap.n
    for ax, panel in zip(axes, emap.panels, strict=True):
        coords, used = panel.coords, panel.method
        if emap.has_text:  # text first: the (often tighter) graph cloud stays visible on top
            ax.scatter(
                coords[n:, 0], coords[n:, 1], s=size, alpha=0.45, color="tab:red", label="text t_i", linewidths=0
            )
        ax.scatter(coords[:n, 0], coords[:n, 1], s=size, alpha=0.45, color="tab:blue", label="graph g_i", linewidths=0)
        if panel.view is not None:
            lo, hi = panel.view
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
        extra = f"; {panel.outside} outlier point(s) outside the view" if panel.outside else ""
        name = "L2-normalised" if panel.normalized else "raw"
        ax.set_title(f"{name} embeddings ({used.upper()}{extra})", fontsize=10)
        ax.set_xlabel(f"{used.upper()} 1")
        ax.set_ylabel(f"{used.upper()} 2")
        ax.grid(alpha=0.3)
        leg = ax.legend(fontsize=8, loc="best", title="marker size ~ log(1 + degree)", title_fontsize=7)
        for h in leg.legend_handles:
            h.set_sizes([30])
    return _save(fig, path)


def plot_training_curves(frames: Mapping[str, Any], path: str | Path) -> Path:
    """Per run: every loss term per epoch (log scale) and, where logged, each term's gradient share."""
    labels = list(frames)
    with_share = any(any(c.startswith("share.") for c in f.columns) for f in frames.values())
    rows = 2 if with_share else 1
    fig = _figure(4.2 * len(labels), 3.2 * rows)
    axes = fig.subplots(rows, len(labels), squeeze=False)
    for col, label in enumerate(labels):
        f = frames[label]
        ax = axes[0][col]
        for c in [c for c in f.columns if c.startswith("loss.") and c != "loss.total"]:
            ax.plot(f["epoch"], f[c].abs().clip(lower=1e-12), label=c[5:])
        ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss term")
        ax.legend(fontsize=7)
        if with_share:
            ax = axes[1][col]
            shares = [c for c in f.columns if c.startswith("share.")]
            if shares:
                ax.stackplot(f["epoch"], *[f[c].fillna(0) for c in shares], labels=[c[6:] for c in shares])
                ax.set_ylim(0, 1)
                ax.legend(fontsize=7, loc="upper right")
            ax.set_xlabel("epoch")
            ax.set_ylabel("gradient share (graph parameters)")
    return _save(fig, path)
