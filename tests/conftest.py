"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder: ``$SYMCERE_SHARED_DATA`` or ``<repo>/../shared/data``; skips when absent."""
    env = os.environ.get("SYMCERE_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder not found: {path}")
    return path


# -- tiny datasets for the training, model and CLI tests (see tests/helpers.py) ------------------------------
@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory) -> Path:
    """A ~30 users x 41 items clustered dataset directory (k_core=0), built once per session; do not modify."""
    from helpers import build_tiny_dataset

    out = tmp_path_factory.mktemp("tiny") / "data"
    build_tiny_dataset(out)
    return out


@pytest.fixture()
def tiny_dataset(tiny_dataset_dir):
    """The session's tiny dataset, freshly loaded (tests may not share mutable state)."""
    from symcere.data import Dataset

    return Dataset.load(tiny_dataset_dir)
