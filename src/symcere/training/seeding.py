"""Seeding and CPU thread settings."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator for the caller's own sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


#: below this many training interactions a model of embedding tables and sparse propagation (MF, LightGCN,
#: SGL) runs on one thread: its per-step kernels are too small to pay for waking a second OpenMP worker
SMALL_GRAPH_INTERACTIONS = 50_000


def cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(model: torch.nn.Module | None = None, n_train: int | None = None, kind: str = "graph") -> int:
    """Torch threads when ``train.threads`` is null, chosen by measurement (benchmarks/results/threads.md):

    - ``kind="text"`` (a text encoder's forward) and models with dense layers (SymCERE's text side, NGCF,
      NeuMF, DGCLR): every core; their matrix products scale with threads;
    - a model of embedding tables and sparse propagation only (MF, LightGCN, SGL) trained on fewer than
      ``SMALL_GRAPH_INTERACTIONS`` interactions: one thread (on 2 cores LightGCN's epoch on Musical Instruments
      is 1.6x faster on one thread than on two); larger graphs: every core.

    Evaluation always runs on every core unless ``train.threads`` is set (``Trainer.evaluate``).
    """
    if kind == "text":
        return cores()
    dense = model is not None and any(isinstance(m, torch.nn.Linear) for m in model.modules())
    if not dense and n_train is not None and n_train < SMALL_GRAPH_INTERACTIONS:
        return 1
    return cores()


def configure_threads(
    threads: int | None, *, model: torch.nn.Module | None = None, n_train: int | None = None, kind: str = "graph"
) -> int:
    """Use ``threads`` torch threads (default: ``default_threads(model, n_train, kind)``).

    Oversubscription is what slows CPU training most on small machines: OpenMP workers that spin-wait
    compete with the main thread. ``OMP_WAIT_POLICY=PASSIVE`` must be set before the OpenMP runtime starts,
    so the ``symcere`` command sets it at start-up; here we only fix the intra-op thread count and keep
    inter-op parallelism at one thread.
    """
    if not threads:
        threads = default_threads(model, n_train, kind)
    n = max(1, int(threads or 1))
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return n


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (no-op for None); restores it on exit."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)
