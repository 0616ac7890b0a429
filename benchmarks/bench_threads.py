"""Seconds per epoch of LightGCN under different CPU thread settings (issue: oversubscription on 2 cores).

Each setting runs in a fresh process (OMP_WAIT_POLICY only acts before the OpenMP runtime starts):

    python benchmarks/bench_threads.py --data DATASET_DIR [--epochs 20] [--out benchmarks/results/threads.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = [
    {"OMP_WAIT_POLICY": "PASSIVE", "threads": 1},
    {"OMP_WAIT_POLICY": "PASSIVE", "threads": 2},
    {"OMP_WAIT_POLICY": "ACTIVE", "threads": 2},
    {"OMP_WAIT_POLICY": "ACTIVE", "threads": 4},
]


def run(data: str, epochs: int, setting: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_WAIT_POLICY": setting["OMP_WAIT_POLICY"]}
        cmd = [sys.executable, "-m", "symcere.cli", "train", "--model", "lightgcn", "--data", data,
               "--out", f"{tmp}/run", "--quiet", "--set", f"train.max_epochs={epochs}",
               "--set", f"train.threads={setting['threads']}", "--set", "train.eval_every_steps=100000"]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        metrics = json.loads(Path(f"{tmp}/run/metrics.json").read_text())
    return {**setting, "seconds_per_epoch": metrics["seconds_per_epoch"], "peak_memory_mb": metrics["peak_memory_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from symcere.tables import markdown_table

    rows = [run(args.data, args.epochs, s) for s in SETTINGS]
    table = markdown_table(rows)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(f"LightGCN on {args.data}, {args.epochs} epochs, {os.cpu_count()} CPUs\n\n{table}\n")


if __name__ == "__main__":
    main()
