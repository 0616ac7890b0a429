"""Paired significance tests over per-user metric arrays of two runs.

Both arrays must hold the same users in the same order (``EvalResult.per_user[key]`` of two runs evaluated
on the same split). Differences are ``a - b``. Degenerate cases never crash: all-zero differences give
statistic 0 and p = 1; constant non-zero differences give an infinite t statistic and p = 0;
a t-test on a single non-zero pair is undefined (statistic and p are NaN).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from symcere.errors import SymcereError

__all__ = ["PairedTestResult", "compare_seeds", "paired_tests", "paired_ttest", "wilcoxon_test"]


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of one paired test; ``mean_diff`` is ``mean(a - b)`` and ``n`` the number of pairs."""

    test: str
    statistic: float
    p_value: float
    mean_diff: float
    n: int

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _pair(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> np.ndarray:
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise SymcereError(f"paired test needs equal lengths, got {x.size} and {y.size}")
    if x.size == 0:
        raise SymcereError("paired test needs at least one pair")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise SymcereError("paired test inputs contain NaN or infinite values")
    return x - y


def _degenerate(test: str, d: np.ndarray) -> PairedTestResult | None:
    n, mean = int(d.size), float(d.mean())
    if np.all(d == 0):
        return PairedTestResult(test, 0.0, 1.0, 0.0, n)
    if test == "ttest" and n >= 2 and np.all(d == d[0]):
        return PairedTestResult(test, float(np.sign(d[0]) * np.inf), 0.0, mean, n)
    return None


def paired_ttest(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> PairedTestResult:
    """Two-sided paired t-test (``scipy.stats.ttest_rel``) of ``a`` against ``b``."""
    d = _pair(a, b)
    if (res := _degenerate("ttest", d)) is not None:
        return res
    if d.size < 2:
        return PairedTestResult("ttest", float("nan"), float("nan"), float(d.mean()), int(d.size))
    from scipy import stats  # local: scipy.stats costs ~45 MB and ~1 s to import; training never needs it

    out = stats.ttest_1samp(d, 0.0)
    return PairedTestResult("ttest", float(out.statistic), float(out.pvalue), float(d.mean()), int(d.size))


def wilcoxon_test(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> PairedTestResult:
    """Two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped).

    ``statistic`` is scipy's (the smaller of the positive/negative rank sums); ``n`` counts all pairs.
    """
    d = _pair(a, b)
    if (res := _degenerate("wilcoxon", d)) is not None:
        return res
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample / ties notes
        out = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return PairedTestResult("wilcoxon", float(out.statistic), float(out.pvalue), float(d.mean()), int(d.size))


def paired_tests(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> dict[str, PairedTestResult]:
    """Both tests: ``{"ttest": ..., "wilcoxon": ...}``."""
    return {"ttest": paired_ttest(a, b), "wilcoxon": wilcoxon_test(a, b)}


def compare_seeds(
    runs_a: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    runs_b: Sequence[np.ndarray] | Mapping[int, np.ndarray],
    *,
    level: Literal["user", "seed"] = "user",
) -> dict[str, PairedTestResult]:
    """Compare two methods each run with several seeds.

    ``runs_a`` / ``runs_b``: per-seed per-user metric arrays (same users, same order everywhere), as lists
    or as ``{seed: array}``; mappings are paired by seed and must hold the same seeds.

    - ``level="user"``: average each user's value over the seeds of each method, then paired tests over users.
    - ``level="seed"``: each seed's mean over users, then paired tests over seeds (pairs seed i of A with
      seed i of B: same seed, same data order).
    """
    if isinstance(runs_a, Mapping) != isinstance(runs_b, Mapping):
        raise SymcereError("runs_a and runs_b must both be sequences or both mappings")
    if isinstance(runs_a, Mapping) and isinstance(runs_b, Mapping):
        if set(runs_a) != set(runs_b):
            raise SymcereError(f"seed sets differ: {sorted(runs_a)} vs {sorted(runs_b)}")
        seeds = sorted(runs_a)
        list_a = [runs_a[s] for s in seeds]
        list_b = [runs_b[s] for s in seeds]
    else:
        list_a, list_b = list(runs_a), list(runs_b)
    if not list_a or not list_b:
        raise SymcereError("compare_seeds needs at least one run per method")
    try:
        mat_a = np.stack([np.asarray(r, dtype=np.float64).reshape(-1) for r in list_a])
        mat_b = np.stack([np.asarray(r, dtype=np.float64).reshape(-1) for r in list_b])
    except ValueError as e:
        raise SymcereError(f"all runs must hold the same users: {e}") from None
    if mat_a.shape[1] != mat_b.shape[1]:
        raise SymcereError(f"runs cover different numbers of users: {mat_a.shape[1]} vs {mat_b.shape[1]}")
    if level == "user":
        return paired_tests(mat_a.mean(axis=0), mat_b.mean(axis=0))
    if level == "seed":
        if mat_a.shape[0] != mat_b.shape[0]:
            raise SymcereError(f"level='seed' needs equal seed counts: {mat_a.shape[0]} vs {mat_b.shape[0]}")
        return paired_tests(mat_a.mean(axis=1), mat_b.mean(axis=1))
    raise SymcereError(f"level must be 'user' or 'seed', got {level!r}")
