"""Run a plan: datasets x models x seeds (after fair tuning), resumable, with one progress bar for the plan.

Layout of ``out/``: ``plan.json`` (what the tables need), ``datasets/NAME`` (generated / prepared data),
``tuning/DATASET/LABEL/trialN`` and ``tuning/DATASET/LABEL.json`` (chosen settings),
``runs/DATASET/LABEL/seedN`` (final runs), ``tables/``. A run dir whose ``env.json`` holds the same config
hash (or whose ``config.yaml``, completed with the keys added since by :func:`symcere.config.migrate`, equals
the plan's) and whose ``metrics.json`` exists is finished and skipped; one with ``checkpoint.pt`` is resumed; one
trained with another config (the plan changed) is moved aside to ``seedN.stale-HASH``, never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from symcere.config import Config, changed_keys, config_hash
from symcere.data.preprocess import recover_dataset_dir
from symcere.errors import SymcereError
from symcere.experiments.plan import STALE, Plan, dataset_status, ensure_dataset, run_dir_of, safe_name
from symcere.io import write_json, write_text
from symcere.locks import locked, temp_leftovers
from symcere.resources import DISK_ERRNOS, check_memory
from symcere.training.run import train

_SCRATCH = {"config.yaml", "env.json", "log.jsonl", "best.pt"}  # a run killed before its first checkpoint


def _names(run_dir: Path) -> set[str]:
    """The files of a run dir, without the temporary files a killed write left (the trainer removes them)."""
    leftovers = {p.name for p in temp_leftovers(run_dir)}
    return {p.name for p in run_dir.iterdir()} - leftovers


@dataclass
class Outcome:
    """What a run reports back to the plan. Deliberately holds validation metrics only (no test)."""

    status: str  # finished | diverged | failed
    valid: dict[str, float] = field(default_factory=dict)
    trained: bool = False  # False: reused a finished run
    message: str = ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def same_config(run_dir: Path, cfg: Config) -> bool:
    """True when the run in ``run_dir`` was trained with ``cfg``: the same config hash, or a config saved
    before options were added whose migration (today's keys and defaults) equals ``cfg``."""
    if _read_json(run_dir / "env.json").get("config_hash") == config_hash(cfg):
        return True
    path = run_dir / "config.yaml"
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        return isinstance(saved, dict) and not changed_keys(saved, cfg, source=str(path))
    except (OSError, ValueError, yaml.YAMLError, SymcereError):
        return False


def run_state(run_dir: Path, cfg: Config) -> str:
    """``done`` | ``resume`` | ``new`` | ``stale`` (trained with another config) | ``scratch`` (no progress)."""
    if not run_dir.exists() or not _names(run_dir):
        return "new"
    if not same_config(run_dir, cfg):
        names = _names(run_dir)
        return "scratch" if names <= _SCRATCH - {"best.pt"} else "stale"
    status = _read_json(run_dir / "metrics.json").get("status")
    if status in ("finished", "diverged"):
        return "done"
    if (run_dir / "checkpoint.pt").exists():
        return "resume"
    names = _names(run_dir)
    return "scratch" if names <= _SCRATCH | {"metrics.json", "error.txt"} else "stale"


def _clear(run_dir: Path, state: str) -> str:
    """Make room for a fresh run; returns a note for the user (empty if nothing worth saying)."""
    if state == "scratch":
        shutil.rmtree(run_dir)
    elif state == "stale":
        old = safe_name(str(_read_json(run_dir / "env.json").get("config_hash", "unknown")))[:64]
        target = run_dir.with_name(f"{run_dir.name}{STALE}{old}")
        n = 1
        while target.exists():
            target, n = run_dir.with_name(f"{run_dir.name}{STALE}{old}-{n}"), n + 1
        run_dir.rename(target)
        return f"{run_dir} was trained with another configuration; moved it to {target.name}"
    elif state == "resume":
        (run_dir / "error.txt").unlink(missing_ok=True)
    return ""


class PlanRunner:
    """Trains (or reuses) runs one after another, advancing a single progress bar."""

    def __init__(self, total: int, quiet: bool = False):
        self.quiet = quiet
        self._interval = 0.5 if sys.stderr.isatty() else 30.0  # a log file gets a line per 30 s at most
        self.bar = tqdm(
            total=total,
            unit="run",
            disable=quiet,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=self._interval,
        )
        self.trained = self.reused = 0
        self.failed: list[str] = []
        self._shown = 0.0  # when the bar last showed the current run's epoch

    def say(self, text: str) -> None:
        if not self.quiet:
            self.bar.write(text, file=sys.stderr)

    def run(self, name: str, dataset: Any, cfg: Config, run_dir: Path, *, test: bool = True) -> Outcome:
        """Train ``cfg`` into ``run_dir`` unless that run is finished already; ``test=False`` (tuning trials):
        never evaluated on the test split."""
        self.bar.set_description_str(name)
        try:
            return self._run(name, dataset, cfg, run_dir, test)
        finally:
            self.bar.update(1)

    def _run(self, name: str, dataset: Any, cfg: Config, run_dir: Path, test: bool) -> Outcome:
        state = run_state(run_dir, cfg)
        if state == "done":
            self.reused += 1
            metrics = _read_json(run_dir / "metrics.json")
            return Outcome(metrics["status"], dict(metrics.get("valid", {})), False, metrics.get("message", ""))
        if note := _clear(run_dir, state):
            self.say(note)
        try:
            check_memory(cfg, dataset)
            self.bar.set_postfix_str("building the model (a new text corpus is encoded once, then cached)")
            result = train(dataset, cfg, run_dir, resume=state == "resume", progress=False, on_epoch=self._epoch,
                           test=test)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one broken run must not stop a long plan
            if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
                raise  # a full or read-only disk stops every later run too: stop the plan (resumable)
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text(run_dir / "error.txt", traceback.format_exc())
            self.failed.append(name)
            self.say(f"{name}: FAILED ({type(exc).__name__}: {exc}); traceback in {run_dir / 'error.txt'}")
            return Outcome("failed", message=str(exc))
        self.trained += 1
        if result.status != "finished":
            self.say(f"{name}: {result.status} ({result.message})")
        elif result.warning:
            self.say(f"{name}: warning: {result.warning}")
        return Outcome(result.status, dict(result.valid), True, result.message)

    def _epoch(self, e: dict[str, Any]) -> None:
        """The current run's epoch on the plan's bar (at most every ``mininterval`` seconds)."""
        if self.quiet:
            return
        self.bar.set_postfix_str(f"epoch {e['epoch']}/{e['max_epochs']} step {e['step']} best {e['best']:.4f}", refresh=False)
        if time.monotonic() - self._shown >= self._interval:
            self._shown = time.monotonic()
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _select(names: list[str], only: list[str] | None, what: str, plan: Plan) -> list[str]:
    if not only:
        return names
    unknown = [n for n in only if n not in names]
    if unknown:
        raise SymcereError(f"--only-{what}: {', '.join(unknown)} not in plan {plan.file} (it has {', '.join(names)})")
    return [n for n in names if n in only]


def run_plan(
    plan: Plan,
    *,
    only_datasets: list[str] | None = None,
    only_models: list[str] | None = None,
    dry_run: bool = False,
    quiet: bool = False,
    show_std: bool = False,
) -> dict[str, Any]:
    """Run (or with ``dry_run`` list) the plan's runs, then write the tables. Returns a summary dict. The output
    directory is locked while the plan runs (``symcere.locks``)."""
    datasets = _select(list(plan.datasets), only_datasets, "datasets", plan)
    labels = _select(list(plan.models), only_models, "models", plan)
    if dry_run:
        return _dry_run(plan, datasets, labels)
    _check_out(plan, datasets, labels)
    with locked(plan.out, "experiment directory"):
        return _run_locked(plan, datasets, labels, quiet, show_std)


def _check_out(plan: Plan, datasets: list[str], labels: list[str]) -> None:
    """Refuse a plan that would write outside its output directory, or into a directory it did not create."""
    out = Path(os.path.normpath(plan.out))
    for name in datasets:
        for label in labels:
            for seed in plan.seeds_of(label):
                for where, target in (
                    (f"datasets.{name}", out / "datasets" / safe_name(name)),
                    (f"models.{label}", run_dir_of(out, name, label, seed)),
                    (f"models.{label}", out / "tuning" / safe_name(name) / safe_name(label)),
                ):
                    parts = target.relative_to(out).parts
                    if any(p in (".", "..") for p in parts) or os.path.normpath(target) == str(out):
                        raise SymcereError(
                            f"plan {plan.file}: {where}: the name maps to the directory {'/'.join(parts)}, which is "
                            f"not inside the output directory {out}; rename it"
                        )
    summary = plan.out / "plan.json"
    if plan.out.is_dir() and any(plan.out.iterdir()) and "plan_file" not in _read_json(summary):
        raise SymcereError(
            f"plan {plan.file}: the output directory {plan.out} is not empty and is not a plan's output (no symcere "
            "plan.json); choose another 'out' (symcere never writes into a directory it did not create)"
        )


def _run_locked(plan: Plan, datasets: list[str], labels: list[str], quiet: bool, show_std: bool) -> dict[str, Any]:
    from symcere.experiments import tuning

    plan.out.mkdir(parents=True, exist_ok=True)
    write_json(plan.out / "plan.json", plan.summary())
    ready = {}
    for name in datasets:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status = dataset_status(plan.datasets[name], plan.out)[0]
            if status in ("generate", "prepare") and not quiet:
                print(f"{'generating' if status == 'generate' else 'preparing'} dataset {name} ...", file=sys.stderr)
            path = ensure_dataset(plan.datasets[name], plan.out)
        for w in caught:
            print(f"symcere: warning: {w.message}", file=sys.stderr)
        if path is not None:
            if plan.out in path.parents:  # built by a plan run that may have been killed: clean up after it
                recover_dataset_dir(path)
            ready[name] = path
    pending = sum(tuning.pending_trials(plan, d, lab) for d in ready for lab in tuning.tuned_labels(plan, labels))
    runner = PlanRunner(pending + len(ready) * sum(len(plan.seeds_of(lab)) for lab in labels), quiet)
    try:
        from symcere.data import Dataset

        for name, path in ready.items():
            dataset = Dataset.load(path)
            for label in labels:
                extra = tuning.tuned_overrides(plan, name, label, dataset, runner)
                for seed in plan.seeds_of(label):
                    cfg = plan.models[label].config(seed, extra)
                    runner.run(f"{name}/{label}/seed{seed}", dataset, cfg, run_dir_of(plan.out, name, label, seed))
    finally:
        runner.close()
    from symcere.experiments.report_tables import write_tables

    written = write_tables(plan.out, show_std=show_std)
    summary = {"trained": runner.trained, "reused": runner.reused, "failed": runner.failed, "tables": written}
    if not quiet:
        print(
            f"{runner.trained} runs trained, {runner.reused} reused, {len(runner.failed)} failed; "
            f"tables in {plan.out / 'tables'}",
            file=sys.stderr,
        )
    return summary


def _dry_run(plan: Plan, datasets: list[str], labels: list[str]) -> dict[str, Any]:
    from symcere.experiments import tuning
    from symcere.tables import markdown_table

    rows = []
    for name in datasets:
        status, _ = dataset_status(plan.datasets[name], plan.out)
        if status == "missing":
            rows.append({"dataset": name, "model": "*", "seed": "*", "state": "skip: dataset not found"})
            continue
        for label in tuning.tuned_labels(plan, labels):
            if n := tuning.pending_trials(plan, name, label):
                rows.append({"dataset": name, "model": label, "seed": "*", "state": f"tune: {n} trials"})
        for label in labels:
            extra = tuning.saved_overrides(plan, name, label)
            for seed in plan.seeds_of(label):
                run_dir = run_dir_of(plan.out, name, label, seed)
                state = (
                    "train (after tuning)"
                    if extra is None
                    else run_state(run_dir, plan.models[label].config(seed, extra))
                )
                state = {"new": "train", "scratch": "train", "stale": "train (config changed)"}.get(state, state)
                rows.append({"dataset": name, "model": label, "seed": seed, "state": state})
    print(f"plan {plan.name} -> {plan.out}\n")
    print(markdown_table(rows))
    todo = sum(r["state"] != "done" and not str(r["state"]).startswith(("skip", "tune")) for r in rows)
    print(f"\n{todo} runs to train, {sum(r['state'] == 'done' for r in rows)} finished")
    return {"rows": rows}
