"""symcere: review-enhanced top-K recommendation with SymCERE (symmetric SINCERE on the hypersphere)."""

__version__ = "0.1.0"
