"""The records behind a plan's tables, without checkpoints: a few hundred KB a study instead of the run folders'
hundreds of MB, small enough to keep beside the paper (or in git) and to carry to another machine.

``archive(out, dest)`` copies ``plan.json``, ``tables/``, every study's ``tuning/DATASET/LABEL.json`` and, of
every run and tuning trial, ``metrics.json``, ``config.yaml``, ``env.json`` and ``per_user.npz`` (the paired
tests need it), the paths those records name inside ``out`` made relative to it, and ``ARCHIVE.json`` naming the
source by its folder name. ``dest`` is a plan output dir itself: ``symcere experiment-tables dest`` writes the same
tables, and copied into a new output dir its runs and trials count as finished, so a study goes on where it stopped on
another machine (``symcere experiment PLAN --out new``) and later tables pair new runs with archived ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from symcere.errors import SymcereError
from symcere.experiments.plan import STALE
from symcere.io import write_bytes, write_json

RUN_FILES = ("metrics.json", "config.yaml", "env.json", "per_user.npz")
MARKER = "ARCHIVE.json"


def _portable_record(path: Path, out: Path) -> dict | None:
    """A run's ``metrics.json`` / ``env.json`` with the paths it names inside ``out`` made relative to ``out``
    (POSIX), or None for any other file (copied as it is): an archive is committed and moved, and a machine's
    absolute path means nothing there."""
    if path.name not in ("metrics.json", "env.json"):
        return None
    try:
        record = json.loads(path.read_bytes())
    except ValueError:
        return None  # not ours to repair: copied as it is
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("run_dir"), str):  # a record's run dir is where it lives, wherever it was trained
        record["run_dir"] = path.parent.relative_to(out).as_posix()
    value = record.get("dataset")
    if isinstance(value, str) and Path(value).is_absolute() and Path(value).resolve().is_relative_to(out):
        record["dataset"] = Path(value).resolve().relative_to(out).as_posix()
    return record


def archive(out: str | Path, dest: str | Path) -> list[Path]:
    """Copy the records of plan output dir ``out`` into ``dest`` (see the module docstring); returns the files.

    ``dest`` must be new, empty or an earlier archive (it holds ``ARCHIVE.json``): files of an earlier archive
    are replaced by the newer records, nothing else in ``dest`` is touched."""
    out, dest = Path(out).resolve(), Path(dest).resolve()
    if not (out / "plan.json").is_file():
        raise SymcereError(f"{out} is not a plan output dir (no plan.json); run `symcere experiment PLAN` first")
    if dest == out or out in dest.parents:
        raise SymcereError(f"--archive {dest} lies inside the output dir {out}; choose a folder outside it")
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / MARKER).is_file())):
        raise SymcereError(f"--archive {dest} exists and is not an earlier symcere archive (no {MARKER}); "
                           "choose a new or empty folder")
    sources = [out / "plan.json", *sorted((out / "tables").glob("*")), *sorted((out / "tuning").glob("*/*.json"))]
    for folder in ("runs", "tuning"):
        for name in RUN_FILES:
            sources += [p for p in sorted((out / folder).glob(f"**/{name}")) if STALE not in p.parent.name]
    written = []
    for path in sources:
        if path.is_file():
            target = dest / path.relative_to(out)
            target.parent.mkdir(parents=True, exist_ok=True)
            record = _portable_record(path, out)
            written.append(write_bytes(target, path.read_bytes()) if record is None else write_json(target, record))
    runs = sum(1 for p in written if p.name == "metrics.json")
    dest.mkdir(parents=True, exist_ok=True)
    write_json(dest / MARKER, {"source": out.name, "files": len(written), "runs": runs}, indent=1)
    return [*written, dest / MARKER]

