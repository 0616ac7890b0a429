"""Recommenders, by name. Imported lazily so that ``symcere --help`` stays fast."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from symcere.errors import ConfigError

MODELS: dict[str, str] = {
    "mf": "symcere.models.mf:MF",
    "lightgcn": "symcere.models.lightgcn:LightGCN",
    "ngcf": "symcere.models.ngcf:NGCF",
    "neumf": "symcere.models.neumf:NeuMF",
    "sgl": "symcere.models.sgl:SGL",
    "dgclr": "symcere.models.dgclr:DGCLR",
    "symcere": "symcere.models.symcere:SymCERE",
}


def build_model(dataset: Any, cfg: dict[str, Any], *, progress: bool = True):
    """Instantiate the model named by ``cfg['model']['name']``; ``progress=False`` silences models that show
    progress while they build (text encoding)."""
    name = cfg["model"]["name"]
    module, cls = MODELS[name].split(":")
    klass = getattr(importlib.import_module(module), cls)
    kwargs = {"progress": progress} if "progress" in inspect.signature(klass).parameters else {}
    try:
        return klass(dataset, cfg, **kwargs)
    except ValueError as exc:  # invalid option combinations are user errors, not crashes
        raise ConfigError(f"cannot build model '{name}': {exc}") from exc
