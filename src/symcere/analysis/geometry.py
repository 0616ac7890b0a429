"""Embedding geometry (symcere.md section 6.1): magnitude as popularity, the cosine-similarity statistics of
Table 4 and the dimension utilisation of Figure 4.

Pure functions: plain arrays in (``(n, d)`` embeddings, ``(n,)`` degrees), numbers and arrays out; the figures
are drawn by :mod:`symcere.analysis.plots`.

Conventions:

* **Magnitude as popularity**: Spearman rank correlation between a node's training degree and the L2 norm
  of its (un-normalised) embedding. Cosine models can still encode popularity in the norm; a high
  correlation means the norm carries the popularity signal that L2 normalisation removes.
* **Similarity statistics**: cosine similarity of ``n_pairs`` seeded random pairs ``(i, j)``, ``i != j``
  (uniform over ordered pairs). Cosine ignores the norm, so the statistics of raw and L2-normalised
  vectors are identical: "with vs without normalisation" compares runs trained with / without it.
* **Dimension utilisation**: per-dimension variance and the singular-value spectrum of the *centred*
  embedding matrix. Runs differ in embedding scale, so the comparable numbers are computed on
  L2-normalised rows (each row has unit length, the per-dimension variances sum to ``1 - |mean|^2``);
  raw-vector numbers are given as well. Effective rank (Roy & Vetterli, 2007) is ``exp(H(p))`` with
  ``p_k = s_k / sum(s)`` the normalised singular values: ``d`` when all ``d`` directions are used equally,
  1 when a single direction carries everything.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from symcere.errors import SymcereError

__all__ = [
    "cosine_pair_stats",
    "dimension_utilisation",
    "dimension_variance",
    "effective_rank",
    "l2_normalize",
    "magnitude_popularity",
    "matched_cosine",
    "pair_cosines",
    "sample_pairs",
    "singular_values",
    "spearman",
    "summarize",
]

_EPS = 1e-12


def _as_matrix(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise SymcereError(f"{name} must be a 2-D (n, d) array, got shape {a.shape}")
    return a


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    a = _as_matrix(x)
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), _EPS)


# -- 1. magnitude as popularity ------------------------------------------------------------------------------
def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Spearman rank correlation and its two-sided p-value; ``(nan, nan)`` when either side is constant."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise SymcereError(f"spearman: lengths differ ({x.size} vs {y.size})")
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def magnitude_popularity(embeddings: np.ndarray, degree: np.ndarray) -> dict[str, float]:
    """``{"spearman", "pvalue", "n", "mean_norm", "std_norm"}``: how much the L2 norm of each row tracks its
    training degree."""
    emb = _as_matrix(embeddings)
    deg = np.asarray(degree, dtype=np.float64).ravel()
    if deg.shape[0] != emb.shape[0]:
        raise SymcereError(f"degree has {deg.shape[0]} entries for {emb.shape[0]} embeddings")
    norms = np.linalg.norm(emb, axis=1)
    rho, p = spearman(deg, norms)
    return {
        "spearman": rho,
        "pvalue": p,
        "n": int(emb.shape[0]),
        "mean_norm": float(norms.mean()) if norms.size else float("nan"),
        "std_norm": float(norms.std()) if norms.size else float("nan"),
    }


# -- 2. similarity statistics (Table 4) ----------------------------------------------------------------------
def sample_pairs(n: int, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` seeded ordered pairs ``(i, j)`` of distinct indices in ``[0, n)`` (with replacement)."""
    if n < 2:
        raise SymcereError(f"need at least 2 rows to sample pairs, got {n}")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=n_pairs)
    j = (i + rng.integers(1, n, size=n_pairs)) % n  # uniform over j != i
    return i.astype(np.int64), j.astype(np.int64)


def pair_cosines(a: np.ndarray, i: np.ndarray, j: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Cosine of ``a[i]`` and ``(b or a)[j]`` for each pair."""
    an = l2_normalize(a)
    bn = an if b is None else l2_normalize(b)
    return np.einsum("nd,nd->n", an[i], bn[j])


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean, std, min, 25 %, median, 75 %, max of ``values`` (the columns of Table 4)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return {k: float("nan") for k in ("mean", "std", "min", "p25", "median", "p75", "max")}
    q = np.percentile(v, [25, 50, 75])
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "p25": float(q[0]),
        "median": float(q[1]),
        "p75": float(q[2]),
        "max": float(v.max()),
    }


def cosine_pair_stats(
    embeddings: np.ndarray, n_pairs: int = 20000, seed: int = 0, return_values: bool = False
) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
    """Table 4 statistics of the cosine similarity over ``n_pairs`` seeded random pairs of distinct rows.

    Returns the :func:`summarize` dict plus ``n_pairs``; with ``return_values`` also the sampled cosines.
    """
    emb = _as_matrix(embeddings)
    i, j = sample_pairs(emb.shape[0], n_pairs, seed)
    cos = pair_cosines(emb, i, j)
    out = {**summarize(cos), "n_pairs": int(n_pairs)}
    return (out, cos) if return_values else out


def matched_cosine(a: np.ndarray, b: np.ndarray, n_pairs: int = 20000, seed: int = 0) -> dict[str, float]:
    """Cross-modal alignment: mean cosine of matched rows ``(a_i, b_i)`` against random rows ``(a_i, b_j)``.

    ``gap = matched - random``: how much closer an item's two views are than unrelated items' views.
    """
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape != b.shape:
        raise SymcereError(f"matched_cosine needs equal shapes, got {a.shape} and {b.shape}")
    matched = np.einsum("nd,nd->n", l2_normalize(a), l2_normalize(b))
    i, j = sample_pairs(a.shape[0], n_pairs, seed)
    rand = pair_cosines(a, i, j, b)
    return {"matched": float(matched.mean()), "random": float(rand.mean()), "gap": float(matched.mean() - rand.mean())}


# -- 3. dimension utilisation (Figure 4) ---------------------------------------------------------------------
def dimension_variance(embeddings: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Variance of each dimension over the rows, of L2-normalised rows by default (``(d,)``)."""
    emb = l2_normalize(embeddings) if normalize else _as_matrix(embeddings)
    return emb.var(axis=0)


def singular_values(embeddings: np.ndarray, normalize: bool = True, center: bool = True) -> np.ndarray:
    """Singular values (descending) of the embedding matrix: rows L2-normalised and columns centred by
    default."""
    emb = l2_normalize(embeddings) if normalize else _as_matrix(embeddings)
    if center:
        emb = emb - emb.mean(axis=0, keepdims=True)
    return np.linalg.svd(emb, compute_uv=False)


def effective_rank(singular: np.ndarray) -> float:
    """``exp(entropy(s / sum(s)))`` of singular values ``s`` (zeros ignored); 0 for an all-zero spectrum."""
    s = np.abs(np.asarray(singular, dtype=np.float64).ravel())
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def dimension_utilisation(embeddings: np.ndarray) -> dict[str, float]:
    """Summary of how many directions the embeddings use (normalised and raw rows, centred columns)."""
    emb = _as_matrix(embeddings)
    d = emb.shape[1]
    s_norm = singular_values(emb, normalize=True)
    s_raw = singular_values(emb, normalize=False)
    var_n = dimension_variance(emb, normalize=True)
    var_r = dimension_variance(emb, normalize=False)
    er_n, er_r = effective_rank(s_norm), effective_rank(s_raw)
    energy = s_norm**2
    return {
        "dim": int(d),
        "eff_rank_norm": er_n,
        "eff_rank_raw": er_r,
        "eff_rank_norm_frac": er_n / d if d else float("nan"),
        "top1_energy_norm": float(energy[0] / energy.sum()) if energy.sum() > 0 else float("nan"),
        "var_sum_norm": float(var_n.sum()),
        "var_max_min_norm": float(var_n.max() / max(var_n.min(), _EPS)),
        "var_sum_raw": float(var_r.sum()),
        "var_max_min_raw": float(var_r.max() / max(var_r.min(), _EPS)),
    }
