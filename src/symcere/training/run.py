"""Train a model from a configuration, and load a trained run back (for evaluate / recommend / analyze)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from symcere.errors import SymcereError
from symcere.models import build_model
from symcere.training.checkpoint import load_checkpoint
from symcere.training.seeding import seed_everything
from symcere.training.trainer import RunResult, Trainer


def train(
    dataset: Any, cfg: dict[str, Any], run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> RunResult:
    """Build the model named in ``cfg`` (seeded), train it into ``run_dir`` and return its result."""
    seed_everything(int(cfg["seed"]))
    model = build_model(dataset, cfg, progress=progress)
    return Trainer(model, dataset, cfg, run_dir, progress=progress).fit(resume=resume)


def load_run(run_dir: str | Path, data_dir: str | Path | None = None):
    """Load a finished run: ``(model with its best weights, dataset, cfg, metrics)``."""
    from symcere.data import Dataset

    run_dir = Path(run_dir)
    cfg_path, env_path = run_dir / "config.yaml", run_dir / "env.json"
    if not cfg_path.exists():
        raise SymcereError(f"{run_dir} is not a symcere run directory (no config.yaml)")
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.exists() else {}
    data = Path(data_dir) if data_dir else Path(env.get("dataset", ""))
    if not data_dir and not (data / "dataset.json").exists():
        raise SymcereError(f"the dataset of run {run_dir} ({data}) is not available; pass --data DIR")
    dataset = Dataset.load(data)
    weights = run_dir / "best.pt"
    if not weights.exists():
        raise SymcereError(f"{run_dir} has no best.pt: the run never reached a validation")
    seed_everything(int(cfg["seed"]))
    model = build_model(dataset, cfg)
    model.load_state_dict(load_checkpoint(weights)["model"])
    model.eval()
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return model, dataset, cfg, metrics
