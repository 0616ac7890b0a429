"""Checkpoint I/O: plain tensors and Python scalars only (``torch.load(weights_only=True)`` works), written
atomically (``symcere.io``) so a crash never leaves a corrupt file; loaded onto the CPU, whatever device saved
them (``load_state_dict`` then copies into the model's device)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from symcere.io import atomic_write


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
