"""Embedding map (symcere.md Figure 1): a 2-D projection of the graph and the text embeddings of the items,
coloured by modality and sized by popularity, raw against L2-normalised.

Both modalities are projected *jointly* (one fit on the stacked matrix), so their relative position (the
"modality gap") is visible. The projection is UMAP (``umap-learn``, seeded; ``pip install symcere[maps]``)
when installed, otherwise PCA (numpy SVD of the centred matrix) -- deterministic, but linear: clusters that
UMAP would separate can overlap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from symcere.analysis.geometry import l2_normalize
from symcere.errors import SymcereError

__all__ = ["pca_2d", "plot_embedding_map", "project_2d", "subsample", "umap_available"]


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except Exception:  # ImportError, or a broken numba install
        return False
    return True


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (``(n, 2)``; the sign of each axis is fixed so that its largest
    absolute loading is positive, making the result deterministic)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1:
        raise SymcereError(f"pca_2d needs a non-empty (n, d) array, got shape {a.shape}")
    c = a - a.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(comps.shape[0]), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    out = c @ comps.T
    if out.shape[1] < 2:  # d == 1
        out = np.hstack([out, np.zeros((out.shape[0], 2 - out.shape[1]))])
    return out


def project_2d(x: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """``(coords (n, 2), method used)``; ``method``: ``auto`` (UMAP if installed, else PCA), ``umap``,
    ``pca``."""
    if method not in ("auto", "umap", "pca"):
        raise SymcereError(f"projection must be auto, umap or pca, got {method!r}")
    if method == "umap" and not umap_available():
        raise SymcereError("projection=umap needs umap-learn: pip install 'symcere[maps]'")
    a = np.asarray(x, dtype=np.float64)
    if method != "pca" and umap_available() and a.shape[0] > 10:
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, a.shape[0] - 1), random_state=seed)
        return np.asarray(reducer.fit_transform(a), dtype=np.float64), "umap"
    return pca_2d(a), "pca"


def subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted seeded sample of ``min(n, max_points)`` indices of ``range(n)``."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _sizes(degree: np.ndarray) -> np.ndarray:
    d = np.log1p(np.asarray(degree, dtype=np.float64))
    top = d.max() if d.size and d.max() > 0 else 1.0
    return 3.0 + 45.0 * d / top


def _robust_limits(ax, coords: np.ndarray, q: float = 1.0, pad: float = 0.25) -> int:
    """Axis limits on the [q, 100 - q] percentile box of all points widened by ``pad`` x its size on each
    side (never beyond the data), so that a small group of outliers (e.g. the items with an empty text, which
    share one text embedding) does not squash the map; returns how many points fall outside the view."""
    if coords.shape[0] < 50:
        return 0
    lo, hi = np.percentile(coords, [q, 100 - q], axis=0)
    width = np.maximum(hi - lo, 1e-12)
    lo = np.maximum(coords.min(axis=0), lo - pad * width)
    hi = np.minimum(coords.max(axis=0), hi + pad * width)
    inside = np.all((coords >= lo) & (coords <= hi), axis=1)
    margin = 0.03 * np.maximum(hi - lo, 1e-12)
    ax.set_xlim(lo[0] - margin[0], hi[0] + margin[0])
    ax.set_ylim(lo[1] - margin[1], hi[1] + margin[1])
    return int((~inside).sum())


def plot_embedding_map(
    graph: np.ndarray,
    text: np.ndarray | None,
    degree: np.ndarray,
    path: str | Path,
    title: str,
    method: str = "auto",
    seed: int = 0,
    max_points: int = 2000,
) -> tuple[Path, str]:
    """Two panels (raw, L2-normalised) of the joint 2-D projection of ``graph`` and ``text`` item embeddings
    (``text=None``: graph only). Returns ``(path, method used)``."""
    from matplotlib.figure import Figure

    g = np.asarray(graph, dtype=np.float64)
    if text is not None and np.asarray(text).shape != g.shape:
        raise SymcereError(f"graph {g.shape} and text {np.asarray(text).shape} embeddings differ in shape")
    idx = subsample(g.shape[0], max_points, seed)
    g = g[idx]
    t = None if text is None else np.asarray(text, dtype=np.float64)[idx]
    size = _sizes(np.asarray(degree)[idx])
    fig = Figure(figsize=(11.5, 5.0), layout="constrained")
    fig.suptitle(title)
    axes = fig.subplots(1, 2)
    used = method
    for ax, normed in zip(axes, (False, True), strict=True):
        parts = [g if not normed else l2_normalize(g)]
        if t is not None:
            parts.append(t if not normed else l2_normalize(t))
        coords, used = project_2d(np.vstack(parts), method, seed)
        n = g.shape[0]
        if t is not None:  # text first: the (often tighter) graph cloud stays visible on top
            ax.scatter(
                coords[n:, 0], coords[n:, 1], s=size, alpha=0.45, color="tab:red", label="text t_i", linewidths=0
            )
        ax.scatter(coords[:n, 0], coords[:n, 1], s=size, alpha=0.45, color="tab:blue", label="graph g_i", linewidths=0)
        outside = _robust_limits(ax, coords)
        extra = f"; {outside} outlier point(s) outside the view" if outside else ""
        ax.set_title(("L2-normalised" if normed else "raw") + f" embeddings ({used.upper()}{extra})", fontsize=10)
        ax.set_xlabel(f"{used.upper()} 1")
        ax.set_ylabel(f"{used.upper()} 2")
        ax.grid(alpha=0.3)
        leg = ax.legend(fontsize=8, loc="best", title="marker size ~ log(1 + degree)", title_fontsize=7)
        for h in leg.legend_handles:
            h.set_sizes([30])
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path, used
