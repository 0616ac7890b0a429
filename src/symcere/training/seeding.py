"""Seeding and CPU thread settings."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator for the caller's own sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def configure_threads(threads: int | None) -> int:
    """Use ``threads`` torch threads (default: the CPU cores this process may use).

    Oversubscription is what slows CPU training most on small machines: OpenMP workers that spin-wait
    compete with the main thread. ``OMP_WAIT_POLICY=PASSIVE`` must be set before the OpenMP runtime starts,
    so the ``symcere`` command sets it at start-up; here we only fix the intra-op thread count and keep
    inter-op parallelism at one thread.
    """
    if not threads:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, int(threads or 1))
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return n
