"""Train a model from a resolved configuration, and load a trained run back (the CLI's and the experiment
runner's entry points; ``symcere.api`` is the same for Python users)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from symcere.training.trainer import RunResult, Trainer


def train_model(
    dataset: Any,
    cfg: dict[str, Any],
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    test: bool = True,
) -> tuple[torch.nn.Module, RunResult]:
    """Build the model named in ``cfg`` (seeded), train it into ``run_dir``; the model keeps its best weights.
    ``on_epoch``, ``test``: see ``Trainer`` (the experiment runner shows ``on_epoch`` on its plan-wide progress
    bar and trains tuning trials with ``test=False``)."""
    from symcere.models import build_model
    from symcere.training.seeding import seed_everything

    seed_everything(int(cfg["seed"]))
    model = build_model(dataset, cfg, progress=progress)
    result = Trainer(model, dataset, cfg, run_dir, progress=progress, on_epoch=on_epoch, test=test).fit(resume=resume)
    return model, result


def train(dataset: Any, cfg: dict[str, Any], run_dir: str | Path, **options: Any) -> RunResult:
    """``train_model`` (same keyword options) without the model: the run's summary."""
    return train_model(dataset, cfg, run_dir, **options)[1]


def load_run(run_dir: str | Path, data: Any = None, *, device: str = "auto"):
    """A finished run: ``(model with its best weights on device, dataset, cfg, metrics)``. ``data``: the dataset
    (a ``Dataset`` or its directory) when it moved since training; the config is migrated to today's keys."""
    import json
    import pickle

    import yaml

    from symcere.config import migrate
    from symcere.data import Dataset
    from symcere.errors import SymcereError
    from symcere.models import build_model
    from symcere.training.checkpoint import load_checkpoint
    from symcere.training.device import resolve_device
    from symcere.training.seeding import seed_everything

    run_dir = Path(run_dir)
    cfg_path, env_path = run_dir / "config.yaml", run_dir / "env.json"
    if not cfg_path.exists():
        raise SymcereError(f"{run_dir} is not a symcere run directory (no config.yaml)")
    cfg = migrate(yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}, str(cfg_path))
    if data is None or isinstance(data, str | Path):
        env = json.loads(env_path.read_text(encoding="utf-8")) if env_path.exists() else {}
        where = Path(data) if data is not None else Path(env.get("dataset", ""))
        if data is None and not (where / "dataset.json").exists():
            raise SymcereError(f"the dataset of run {run_dir} ({where}) is not available; pass --data DIR")
        data = Dataset.load(where)
    weights = run_dir / "best.pt"
    if not weights.exists():
        raise SymcereError(f"{run_dir} has no best.pt: the run never reached a validation")
    seed_everything(int(cfg["seed"]))
    model = build_model(data, cfg, progress=False)
    try:
        state = load_checkpoint(weights)["model"]
    except pickle.UnpicklingError as exc:
        raise SymcereError(
            f"refused to load {weights}: it holds objects other than tensors, so it was not written by symcere "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise SymcereError(f"cannot load {weights} ({str(exc)[:200]}); it is damaged") from None
    model.load_state_dict(state)
    model.to(resolve_device(device)).eval()
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
    return model, data, cfg, metrics
