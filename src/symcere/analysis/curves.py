"""Training curves of runs: each loss term of Eq. 13 per epoch and, for runs trained with
``train.grad_share=true``, each term's gradient norm on the graph parameters and its share of their sum.

``training_curves(run_dir)`` reads a run's ``log.jsonl``; ``curves_summary`` condenses runs into one row per
(run, term); ``write_curves`` writes ``curves.csv``, ``curves.md`` and ``curves.png`` (``symcere curves``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from symcere.errors import SymcereError
from symcere.io import write_text
from symcere.tables import csv_table, markdown_table

__all__ = ["curves_summary", "training_curves", "write_curves"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def training_curves(run_dir: str | Path) -> pd.DataFrame:
    """One row per logged epoch: ``epoch``, ``step``, ``loss.<term>``, ``grad.<term>``, ``share.<term>``
    (the term's gradient norm over the sum of all terms' norms) and ``valid.<metric>`` where validated.
    A last line cut short (a run killed mid-write, or still running) is skipped; any other bad line is an
    error naming the file and line."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise SymcereError(f"{run_dir}: no log.jsonl (not a run directory written by symcere train)")
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        unfinished = n == len(lines)  # no newline after it yet
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if unfinished:
                continue
            raise SymcereError(f"{path}, line {n}: not a JSON record ({exc})") from None
        if not isinstance(rec, dict):
            raise SymcereError(f"{path}, line {n}: expected a JSON object, got {type(rec).__name__}")
        if "loss" not in rec:  # e.g. a 'diverged' record
            continue
        grads = rec.get("grad_norm") or {}
        valid = rec.get("valid") or {}
        parts = {"loss": rec["loss"], "grad_norm": grads, "valid": valid}
        for field, value in parts.items():
            if not isinstance(value, dict) or not all(_number(v) for v in value.values()):
                raise SymcereError(f"{path}, line {n}: field {field!r} must map names to numbers, got {value!r}")
        if not isinstance(rec.get("epoch"), int):
            raise SymcereError(f"{path}, line {n}: field 'epoch' must be an integer, got {rec.get('epoch')!r}")
        row: dict[str, Any] = {"epoch": rec["epoch"], "step": rec.get("step")}
        row.update({f"loss.{k}": v for k, v in rec["loss"].items()})
        total = sum(grads.values())
        for k, v in grads.items():
            row[f"grad.{k}"] = v
            row[f"share.{k}"] = v / total if total > 0 else 0.0
        row.update({f"valid.{k}": v for k, v in valid.items()})
        rows.append(row)
    if not rows:
        raise SymcereError(f"{path}: no finished epoch logged")
    return pd.DataFrame(rows)


def _terms(frame: pd.DataFrame, prefix: str) -> list[str]:
    return [c[len(prefix) :] for c in frame.columns if c.startswith(prefix) and c != f"{prefix}total"]


def curves_summary(frames: Mapping[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Per run and loss term: the term at the first and the last epoch and, where logged, its mean gradient
    norm and mean gradient share over the epochs."""
    out: list[dict[str, Any]] = []
    for label, f in frames.items():
        for term in _terms(f, "loss."):
            row: dict[str, Any] = {
                "run": label,
                "term": term,
                "epochs": len(f),
                "loss first epoch": float(f[f"loss.{term}"].iloc[0]),
                "loss last epoch": float(f[f"loss.{term}"].iloc[-1]),
            }
            if f"grad.{term}" in f:
                row["mean grad norm"] = float(f[f"grad.{term}"].mean())
                row["mean grad share"] = float(f[f"share.{term}"].mean())
            out.append(row)
    return out


def write_curves(run_dirs: Sequence[str | Path], out: str | Path, labels: Sequence[str] | None = None) -> list[Path]:
    """``curves.csv`` (every epoch of every run), ``curves.md`` (the summary) and ``curves.png`` in ``out``."""
    from symcere.analysis.plots import plot_training_curves

    labels = list(labels) if labels else [Path(r).resolve().name or str(r) for r in run_dirs]
    if len(labels) != len(run_dirs):
        raise SymcereError(f"{len(labels)} labels for {len(run_dirs)} runs")
    if not labels:
        raise SymcereError("no run directories given")
    if len(set(labels)) != len(labels):
        twice = sorted({x for x in labels if labels.count(x) > 1})
        raise SymcereError(f"two runs share the label {twice[0]!r}: give each run its own with --labels")
    frames = {label: training_curves(r) for label, r in zip(labels, run_dirs, strict=True)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    every = pd.concat([f.assign(run=label) for label, f in frames.items()], ignore_index=True)
    rows = every.to_dict("records")
    columns = ["run", *[c for c in every.columns if c != "run"]]
    summary = curves_summary(frames)
    summary_columns = list(dict.fromkeys(k for row in summary for k in row))
    return [
        write_text(out / "curves.csv", csv_table(rows, columns)),
        write_text(out / "curves.md", "# Training curves\n\n" + markdown_table(summary, summary_columns, digits=5) + "\n"),
        plot_training_curves(frames, out / "curves.png"),
    ]
