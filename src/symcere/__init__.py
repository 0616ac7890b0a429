"""symcere: review-enhanced top-K recommendation with SymCERE (symmetric SINCERE on the hypersphere).

The public API (``symcere.api``), loaded on first use so that ``import symcere`` stays light::

    Dataset          a dataset: ``Dataset.load(dir)`` or ``Dataset.from_frame(frame, ...)``
    fit, load, Run   train a model / load a run; ``run.evaluate()``, ``run.recommend()``
    Experiment       models x seeds on one dataset -> the Table-2 frame
    load_config      a model's resolved configuration (defaults -> preset -> files -> overrides)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "Dataset": "symcere.data",
    "fit": "symcere.api",
    "load": "symcere.api",
    "Run": "symcere.api",
    "Experiment": "symcere.api",
    "load_config": "symcere.config",
    "SymcereError": "symcere.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'symcere' has no attribute {name!r}")
