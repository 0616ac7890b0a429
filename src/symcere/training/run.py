"""Train a model from a resolved configuration, and load a trained run back (the CLI's and the experiment
runner's entry points; ``symcere.api`` is the same for Python users)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from symcere.training.trainer import RunResult, Trainer


def train_model(
    dataset: Any, cfg: dict[str, Any], run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> tuple[torch.nn.Module, RunResult]:
    """Build the model named in ``cfg`` (seeded), train it into ``run_dir``; the model keeps its best weights."""
    from symcere.models import build_model
    from symcere.training.seeding import seed_everything

    seed_everything(int(cfg["seed"]))
    model = build_model(dataset, cfg, progress=progress)
    result = Trainer(model, dataset, cfg, run_dir, progress=progress).fit(resume=resume)
    return model, result


def train(
    dataset: Any, cfg: dict[str, Any], run_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> RunResult:
    """``train_model`` without the model: the run's summary."""
    return train_model(dataset, cfg, run_dir, resume=resume, progress=progress)[1]


def load_run(run_dir: str | Path, data_dir: str | Path | None = None, *, device: str = "auto"):
    """A finished run: ``(model with its best weights, dataset, cfg, metrics)`` (see ``symcere.api.Run.load``)."""
    from symcere.api import Run

    run = Run.load(run_dir, data_dir, device=device)
    return run.model, run.dataset, run.config, run.result or {}
