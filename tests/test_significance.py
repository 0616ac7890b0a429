import math

import numpy as np
import pytest

from symcere.errors import SymcereError
from symcere.evaluation.significance import compare_seeds, paired_tests, paired_ttest, wilcoxon_test


def test_known_case() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.zeros(5)
    t = paired_ttest(a, b)
    # d = 1..5: mean 3, sd sqrt(2.5), t = 3 / sqrt(2.5 / 5) = 4.242640687
    assert t.statistic == pytest.approx(3 / math.sqrt(0.5))
    assert t.p_value == pytest.approx(0.013236, abs=1e-5)  # two-sided, df = 4
    assert (t.mean_diff, t.n, t.test) == (3.0, 5, "ttest")
    w = wilcoxon_test(a, b)
    # all 5 differences positive: W = 0, exact two-sided p = 2 / 2**5
    assert w.statistic == 0.0
    assert w.p_value == pytest.approx(0.0625)
    assert w.to_dict()["test"] == "wilcoxon"


def test_all_zero_differences() -> None:
    a = np.array([0.1, 0.0, 0.5])
    for res in paired_tests(a, a.copy()).values():
        assert (res.statistic, res.p_value, res.mean_diff, res.n) == (0.0, 1.0, 0.0, 3)


def test_constant_difference_and_single_pair() -> None:
    t = paired_ttest([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert t.statistic == math.inf and t.p_value == 0.0
    assert math.isnan(paired_ttest([1.0], [0.0]).p_value)
    assert 0.0 <= wilcoxon_test([1.0, 2.0, 3.0], [0.5, 1.5, 2.5]).p_value <= 1.0


def test_bad_inputs() -> None:
    with pytest.raises(SymcereError):
        paired_ttest([1.0, 2.0], [1.0])
    with pytest.raises(SymcereError):
        wilcoxon_test([1.0, float("nan")], [1.0, 2.0])


def test_compare_seeds() -> None:
    rng = np.random.default_rng(0)
    runs_a = [rng.random(20) for _ in range(3)]
    runs_b = [rng.random(20) for _ in range(3)]
    user = compare_seeds(runs_a, runs_b, level="user")
    ref = paired_tests(np.mean(runs_a, axis=0), np.mean(runs_b, axis=0))
    assert user["ttest"] == ref["ttest"]
    by_seed = compare_seeds(dict(enumerate(runs_a)), {2: runs_b[2], 0: runs_b[0], 1: runs_b[1]}, level="seed")
    assert by_seed["ttest"].n == 3
    assert by_seed["ttest"].mean_diff == pytest.approx(np.mean(runs_a) - np.mean(runs_b))
    with pytest.raises(SymcereError):
        compare_seeds({0: runs_a[0]}, {1: runs_b[0]})
