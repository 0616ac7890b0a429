"""Full-ranking evaluation: metrics, batched evaluator, popularity groups, paired significance tests."""

from symcere.evaluation.evaluator import EvalResult, evaluate, evaluate_split, rank_scores, topk_items
from symcere.evaluation.metrics import METRICS
from symcere.evaluation.popularity import group_contributions, group_summary, popularity_groups
from symcere.evaluation.significance import (
    PairedTestResult,
    compare_seeds,
    paired_tests,
    paired_ttest,
    wilcoxon_test,
)

__all__ = [
    "METRICS",
    "EvalResult",
    "PairedTestResult",
    "compare_seeds",
    "evaluate",
    "evaluate_split",
    "group_contributions",
    "group_summary",
    "paired_tests",
    "paired_ttest",
    "popularity_groups",
    "rank_scores",
    "topk_items",
    "wilcoxon_test",
]
