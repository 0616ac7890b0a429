"""Embedding map (symcere.md Figure 1): a 2-D projection of the graph and the text embeddings of the items,
raw against L2-normalised.

Both modalities are projected *jointly* (one fit on the stacked matrix), so their relative position (the
"modality gap") is visible. The projection is UMAP (``umap-learn``, seeded; ``pip install symcere[maps]``)
when installed, otherwise PCA (numpy SVD of the centred matrix) -- deterministic, but linear: clusters that
UMAP would separate can overlap. :func:`item_map` computes the coordinates;
:func:`symcere.analysis.plots.plot_embedding_map` draws them (coloured by modality, sized by popularity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symcere.analysis.geometry import l2_normalize
from symcere.errors import SymcereError

__all__ = ["ItemMap", "MapPanel", "item_map", "pca_2d", "project_2d", "subsample", "umap_available", "view_box"]


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


def view_box(coords: np.ndarray, q: float = 1.0, pad: float = 0.25) -> tuple[tuple[np.ndarray, np.ndarray] | None, int]:
    """``((lo, hi) axis limits or None for the whole data, points outside them)``.

    The limits are the [q, 100 - q] percentile box of all points widened by ``pad`` x its size on each side
    (never beyond the data) plus a 3 % margin, so that a small group of outliers (e.g. the items with an
    empty text, which share one text embedding) does not squash the map. Fewer than 50 points: no limits.
    """
    if coords.shape[0] < 50:
        return None, 0
    lo, hi = np.percentile(coords, [q, 100 - q], axis=0)
    width = np.maximum(hi - lo, 1e-12)
    lo = np.maximum(coords.min(axis=0), lo - pad * width)
    hi = np.minimum(coords.max(axis=0), hi + pad * width)
    inside = np.all((coords >= lo) & (coords <= hi), axis=1)
    margin = 0.03 * np.maximum(hi - lo, 1e-12)
    return (lo - margin, hi + margin), int((~inside).sum())


@dataclass
class MapPanel:
    """One joint projection: ``coords`` holds the graph rows first, then the text rows."""

    normalized: bool
    coords: np.ndarray
    method: str
    view: tuple[np.ndarray, np.ndarray] | None
    outside: int


@dataclass
class ItemMap:
    """The two panels (raw, L2-normalised) of an embedding map of ``n`` subsampled items."""

    n: int
    has_text: bool
    degree: np.ndarray
    panels: list[MapPanel]

    @property
    def method(self) -> str:
        """The projection used (of the last panel)."""
        return self.panels[-1].method


def item_map(
    graph: np.ndarray,
    text: np.ndarray | None,
    degree: np.ndarray,
    method: str = "auto",
    seed: int = 0,
    max_points: int = 2000,
) -> ItemMap:
    """Joint 2-D projections of a seeded subsample of ``graph`` and ``text`` item embeddings (``text=None``:
    graph only), raw and L2-normalised."""
    g = np.asarray(graph, dtype=np.float64)
    if text is not None and np.asarray(text).shape != g.shape:
        raise SymcereError(f"graph {g.shape} and text {np.asarray(text).shape} embeddings differ in shape")
    idx = subsample(g.shape[0], max_points, seed)
    g = g[idx]
    t = None if text is None else np.asarray(text, dtype=np.float64)[idx]
    panels = []
    for normed in (False, True):
        parts = [g if not normed else l2_normalize(g)]
        if t is not None:
            parts.append(t if not normed else l2_normalize(t))
        coords, used = project_2d(np.vstack(parts), method, seed)
        view, outside = view_box(coords)
        panels.append(MapPanel(normalized=normed, coords=coords, method=used, view=view, outside=outside))
    return ItemMap(n=g.shape[0], has_text=t is not None, degree=np.asarray(degree)[idx], panels=panels)
