"""Raw reviews -> dataset directory -> :class:`Dataset`, or a pandas frame -> :meth:`Dataset.from_frame` (same
protocol, in memory; see docs/ARCHITECTURE.md for the contract)."""

from symcere.data.dataset import Dataset
from symcere.data.preprocess import build_dataset
from symcere.data.readers import read_reviews
from symcere.data.records import Review

__all__ = ["Dataset", "Review", "build_dataset", "read_reviews"]
