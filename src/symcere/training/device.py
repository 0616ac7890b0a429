"""The training device: ``train.device`` = auto | cpu | cuda | cuda:N (auto = cuda when available)."""

from __future__ import annotations

import re

import torch

from symcere.errors import ConfigError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` that ``spec`` names; a CUDA device this machine does not have is a ``ConfigError``."""
    text = str(spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"train.device={text}: this machine has no CUDA device (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}); use train.device=cpu or auto"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"train.device={text}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device("cuda", index)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A training batch moved to ``device`` once (pinned, asynchronous copies on CUDA)."""
    if device.type == "cpu":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
