"""Fault injection: SIGKILL ``symcere prepare | train | experiment | analyze`` at seeded random moments, then
check every file on disk and continue; plus the bad-input corpus of tests/test_bad_inputs.py.

For each command an uninterrupted reference run is made first. A trial starts the same command in a fresh
work directory, kills it with SIGKILL after a seeded random delay (or, for the *targeted* trials, the moment
a checkpoint or text-cache file is being replaced: a start-up shim slows ``os.replace`` of those files so the
kill lands between the temporary file and its rename), then

1. checks that every file on disk is complete (each parses as its type; temporary files of a killed write are
   listed as leftovers, never read);
2. continues: ``train --resume``, the ``experiment`` command again, ``prepare`` again, ``analyze`` again;
3. compares with the reference: train and experiment metrics (valid and test) and the best weights must be
   bit-identical, a re-run of prepare byte-identical, analyze complete; no leftover may survive step 2.

    python benchmarks/fault_injection.py [--trials 24] [--seed 0]  # writes benchmarks/results/fault_injection.md

Run it under ``flock /tmp/symcere-heavy.lock`` (it trains). ``tests/test_faults.py`` runs a few trials.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fault_injection.md"
TRAIN_ARGS = [
    "--model",
    "lightgcn",
    "--quiet",
    "--set",
    "model.dim=16",
    "--set",
    "model.layers=2",
    "--set",
    "train.threads=1",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.max_epochs=25",
    "--set",
    "train.eval_every_steps=20",
    "--set",
    "train.patience_steps=60",
    "--seed",
    "3",
]
TEXT_ARGS = [
    "--model",
    "symcere",
    "--quiet",
    "--set",
    "model.dim=16",
    "--set",
    "model.layers=1",
    "--set",
    "train.threads=1",
    "--set",
    "train.batch_size=64",
    "--set",
    "train.max_epochs=3",
    "--set",
    "train.eval_every_steps=1",
    "--set",
    "text.max_tokens=16",
    "--set",
    "text.n_views=1",
    "--seed",
    "1",
]
PLAN = """\
name: faults
out: out
seeds: [0]
datasets:
  tiny: {synthetic: {preset: tiny, seed: 0}}
models:
  mf: {set: [model.dim=8, train.max_epochs=6, train.eval_every_steps=1, train.threads=1]}
  lightgcn: {set: [model.dim=8, model.layers=1, train.max_epochs=6, train.eval_every_steps=1, train.threads=1]}
"""
# start-up shim of the targeted trials: os.replace of a checkpoint / text-cache file waits, so a kill lands there
SHIM = """\
import os, re, time
_replace = os.replace
_pattern = re.compile(os.environ.get("SYMCERE_FAULT_SLOW", "^$"))
def _slow_replace(src, dst, *a, **k):
    if _pattern.search(os.path.basename(str(dst))):
        time.sleep(float(os.environ.get("SYMCERE_FAULT_DELAY", "0.5")))
    return _replace(src, dst, *a, **k)
os.replace = _slow_replace
"""


# ------------------------------------------------------------------------------------------ setup helpers
def _env(extra: dict[str, str] | None = None, shim: Path | None = None) -> dict[str, str]:
    paths = [str(shim)] if shim else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(ROOT / "src"), *sys.path])}
    env.setdefault("OMP_NUM_THREADS", "1")
    return {**env, **(extra or {})}


def symcere(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "symcere.cli", *args],
        cwd=cwd,
        env=env or _env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"symcere {' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return proc.returncode, proc.stderr


def make_inputs(base: Path) -> dict[str, Path]:
    """The shared inputs of every trial: a raw review file (prepare) and a tiny dataset (train / analyze)."""
    base.mkdir(parents=True, exist_ok=True)
    raw = base / "reviews.json.gz"
    if not raw.exists():
        rng = random.Random(0)
        lines = []
        for k in range(60_000):
            u, i = rng.randrange(3000), rng.randrange(800)
            rec = {
                "reviewerID": f"U{u}",
                "asin": f"I{i}",
                "overall": float(rng.randint(1, 5)),
                "unixReviewTime": 1_300_000_000 + 37 * k,
                "reviewText": " ".join(rng.choice(("good", "bad", "sound", "string", "loud")) for _ in range(12)),
                "summary": f"title {k}",
            }
            lines.append(json.dumps(rec))
        raw.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    data = base / "tiny"
    if not (data / "dataset.json").exists():
        symcere(["data", "synth", "--out", str(data), "--preset", "tiny", "--seed", "0"], base)
    return {"raw": raw, "data": data}


# ------------------------------------------------------------------------------------------ file checks
LEFTOVER_MARKERS = (".tmp", ".lock", ".tmp-", ".old-")


def is_leftover(name: str) -> bool:
    """A temporary file / directory or lock file of a symcere write (``.NAME.*.tmp``, ``.NAME.lock``, ...)."""
    return name.startswith(".") and any(m in name for m in LEFTOVER_MARKERS)


def check_complete(path: Path) -> str | None:
    """None when ``path`` is a complete file of its type, else why not."""
    import numpy as np

    suffix = path.suffix.lower()
    try:
        data = path.read_bytes()
        if suffix == ".json":
            json.loads(data)
        elif suffix == ".jsonl":
            lines = data.decode().splitlines()
            for ln in lines[:-1] if not data.endswith(b"\n") else lines:  # an append log may end in a torn line
                json.loads(ln)
        elif suffix in (".yaml", ".yml"):
            import yaml

            yaml.safe_load(data)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_table(path)
        elif suffix == ".pt":
            import torch

            torch.load(path, map_location="cpu", weights_only=True)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                for k in z.files:
                    z[k]
        elif suffix == ".png":
            if not (data.startswith(b"\x89PNG") and data.rstrip().endswith(b"IEND\xaeB`\x82")):
                return "not a complete PNG"
        elif suffix == ".csv":
            list(csv.reader(data.decode().splitlines()))
        elif suffix == ".html":
            if b"</html>" not in data[-200:]:
                return "HTML without its end"
        elif suffix in (".md", ".txt", ".tex") and not data:
            return "empty"
    except Exception as exc:  # any parse error is a torn file
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    return None


def scan(root: Path) -> tuple[list[str], list[str]]:
    """(incomplete files with the reason, leftover temporary / lock files) under ``root``."""
    bad, leftovers = [], []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(is_leftover(part) for part in rel.parts[:-1]):
            continue  # inside a leftover directory
        if is_leftover(p.name):
            leftovers.append(str(rel))
        elif p.is_file():
            why = check_complete(p)
            if why:
                bad.append(f"{rel}: {why}")
    return bad, leftovers


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_metrics(run: Path) -> dict[str, Any]:
    import torch

    m = json.loads((run / "metrics.json").read_text())
    best = torch.load(run / "best.pt", weights_only=True)["model"]
    digest = hashlib.sha256(b"".join(best[k].numpy().tobytes() for k in sorted(best))).hexdigest()
    return {k: m[k] for k in ("status", "valid", "test", "epochs", "steps", "best_epoch")} | {"weights": digest}


# ------------------------------------------------------------------------------------------ the commands
@dataclass
class Job:
    """One command: how to start it in a work dir, how to continue after a kill, what to compare."""

    name: str
    start: list[str]
    again: list[str]
    outcome: Any  # (work dir) -> comparable result
    target: str = "out"  # the directory checked after a kill
    slow: str = ""  # targeted trials: regex of file names whose replacement is slowed
    env: dict[str, str] = field(default_factory=dict)


def jobs(inputs: dict[str, Path], cache: Path) -> dict[str, Job]:
    raw, data = str(inputs["raw"]), str(inputs["data"])

    def experiment(w: Path) -> Any:
        runs = sorted((w / "out" / "runs").rglob("metrics.json"))
        with open(w / "out" / "tables" / "results.csv", encoding="utf-8") as fh:  # metric columns (not timings)
            table = [
                {
                    k: v
                    for k, v in row.items()
                    if k.split(" ")[0] in ("dataset", "model", "seed", "status", "valid", "test")
                }
                for row in csv.DictReader(fh)
            ]
        return {str(p.parent.relative_to(w)): run_metrics(p.parent) for p in runs} | {"results.csv": table}

    def analyze(w: Path) -> Any:
        return sorted(p.name for p in (w / "out").iterdir() if not is_leftover(p.name))

    train = ["train", "--data", data, "--out", "out", *TRAIN_ARGS]
    text = ["train", "--data", data, "--out", "out", *TEXT_ARGS]
    return {
        "prepare": Job(
            "prepare",
            ["prepare", "--input", raw, "--out", "out", "--k-core", "5"],
            ["prepare", "--input", raw, "--out", "out", "--k-core", "5", "--overwrite"],
            lambda w: tree_digest(w / "out"),
        ),
        "train": Job("train", train, [*train, "--resume"], lambda w: run_metrics(w / "out"), slow=r"checkpoint\.pt$"),
        "train+text": Job(
            "train+text",
            text,
            [*text, "--resume"],
            lambda w: run_metrics(w / "out"),
            slow=r"^(text|reviews)_.*\.pt$",
            env={"SYMCERE_CACHE": str(cache)},
        ),
        "experiment": Job("experiment", ["experiment", "plan.yaml"], ["experiment", "plan.yaml"], experiment),
        "analyze": Job(
            "analyze",
            ["analyze", str(inputs["run"]), "--out", "out", "--no-lime", "--pairs", "2000", "--quiet"],
            ["analyze", str(inputs["run"]), "--out", "out", "--no-lime", "--pairs", "2000", "--quiet"],
            analyze,
        ),
    }


@dataclass
class Trial:
    job: str
    mode: str  # random | targeted
    delay: float
    killed: bool = False
    incomplete: list[str] = field(default_factory=list)
    leftovers_after_kill: int = 0
    leftovers_after_rerun: list[str] = field(default_factory=list)
    identical: bool = False
    note: str = ""


def fresh_workdir(root: Path, job: Job, k: int) -> Path:
    w = root / f"{job.name}-{k}"
    if w.exists():
        shutil.rmtree(w)
    w.mkdir(parents=True)
    (w / "plan.yaml").write_text(PLAN)
    return w


def run_trial(job: Job, w: Path, delay: float, targeted: bool, shim: Path, cache: Path, reference: Any) -> Trial:
    """Start ``job`` in ``w``, SIGKILL it, check the files, continue, compare with ``reference``."""
    trial = Trial(job.name, "targeted" if targeted else "random", round(delay, 2))
    extra = dict(job.env)
    if "SYMCERE_CACHE" in extra:  # each text trial starts from an empty cache (the write is what is killed)
        if cache.exists():
            shutil.rmtree(cache)
        cache.mkdir(parents=True)
    if targeted:
        extra |= {"SYMCERE_FAULT_SLOW": job.slow, "SYMCERE_FAULT_DELAY": "2.0"}
    env = _env(extra, shim if targeted else None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "symcere.cli", *job.start],
        cwd=w,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.time() + (120 if targeted else delay)
    watch = [w / job.target, cache] if targeted else []
    while time.time() < end and proc.poll() is None:
        if targeted and any(p.is_file() and p.name.endswith(".tmp") for d in watch if d.exists() for p in d.iterdir()):
            time.sleep(0.2)  # the temporary file is written; os.replace is waiting
            break
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        trial.killed = True
    proc.wait()
    bad, leftovers = scan(w)
    if "SYMCERE_CACHE" in job.env:
        cbad, cleft = scan(cache)
        bad += [f"cache/{b}" for b in cbad]
        leftovers += cleft
    trial.incomplete, trial.leftovers_after_kill = bad, len(leftovers)
    # train: --resume when the run dir exists (a run killed before its first checkpoint restarts), else anew
    again = job.again if (w / job.target).exists() or not job.name.startswith("train") else job.start
    if job.name.startswith("train") and (w / job.target / "metrics.json").exists():
        trial.note, rc = "the run had ended before the kill (metrics.json written)", 0
    else:
        rc, err = symcere(again, w, _env(job.env), False)
    if rc != 0:
        trial.note = f"continuing failed with exit {rc}: {err.strip()[-300:]}"
        return trial
    _, after = scan(w)
    if "SYMCERE_CACHE" in job.env:
        after += scan(cache)[1]
    trial.leftovers_after_rerun = after
    try:
        trial.identical = job.outcome(w) == reference
    except Exception as exc:
        trial.note = f"cannot compare: {type(exc).__name__}: {exc}"
    if not trial.identical:
        trial.note = (trial.note + "; " if trial.note else "") + "result differs from the uninterrupted run"
    return trial


def run(trials: int, seed: int, root: Path, names: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Reference runs, then ``trials`` kill trials spread over the jobs (every 3rd targeted where possible)."""
    rng = random.Random(seed)
    inputs = make_inputs(root / "inputs")
    cache = root / "cache"
    shim = root / "shim"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "sitecustomize.py").write_text(SHIM)
    ref_run = root / "inputs" / "run"
    if not (ref_run / "metrics.json").exists():
        symcere(["train", "--data", str(inputs["data"]), "--out", str(ref_run), *TRAIN_ARGS], root)
    inputs["run"] = ref_run
    all_jobs = jobs(inputs, cache)
    selected = [all_jobs[n] for n in (names or list(all_jobs))]
    references, durations = {}, {}
    for job in selected:
        w = fresh_workdir(root / "ref", job, 0)
        if "SYMCERE_CACHE" in job.env:
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True)
        t0 = time.time()
        symcere(job.start, w, _env(job.env))
        durations[job.name] = time.time() - t0
        references[job.name] = job.outcome(w)
        if progress:
            print(f"reference {job.name}: {durations[job.name]:.1f} s", file=sys.stderr)
    results = []
    for k in range(trials):
        job = selected[k % len(selected)]
        targeted = bool(job.slow) and k % 3 == 2
        delay = rng.uniform(0.3, durations[job.name])
        w = fresh_workdir(root / "trials", job, k)
        trial = run_trial(job, w, delay, targeted, shim, cache, references[job.name])
        results.append(trial)
        if progress:
            state = "identical" if trial.identical else f"DIFFERENT ({trial.note})"
            print(
                f"trial {k + 1}/{trials} {job.name} {trial.mode} kill@{trial.delay}s killed={trial.killed}: {state}",
                file=sys.stderr,
            )
        shutil.rmtree(w, ignore_errors=True)
    return {"trials": results, "durations": durations}


# ------------------------------------------------------------------------------------------ the corpus
def corpus_figures(root: Path) -> dict[str, Any]:
    """Run every case of tests/test_bad_inputs.py through ``symcere prepare`` in-process: tried / handled."""
    import contextlib
    import io

    sys.path.insert(0, str(ROOT / "tests"))
    import test_bad_inputs as tb

    from symcere.cli import main

    handled, failures = 0, []
    for k, case in enumerate(tb.CASES):
        w = root / f"case{k}"
        shutil.rmtree(w, ignore_errors=True)
        inputs, _ = tb.write_case(case, w)
        (w / "outs").mkdir()
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = main(["prepare", "--input", *inputs, "--out", str(w / "outs" / "data"), *case.args])
        except BaseException as exc:  # a traceback: not handled
            failures.append(f"{case.name}: {type(exc).__name__}: {exc}")
            continue
        want = 0 if case.expect is None else 2
        msg = err.getvalue()
        if rc == want and "Traceback" not in msg and (want == 0 or not (w / "outs" / "data").exists()):
            handled += 1
        else:
            failures.append(f"{case.name}: exit {rc} (expected {want}): {msg.strip()[:200]}")
        shutil.rmtree(w, ignore_errors=True)
    n_ok = sum(c.expect is None for c in tb.CASES)
    return {
        "tried": len(tb.CASES),
        "handled": handled,
        "valid": n_ok,
        "errors": len(tb.CASES) - n_ok,
        "failures": failures,
    }


def write_report(corpus: dict[str, Any], kills: dict[str, Any], args: argparse.Namespace) -> str:
    trials: list[Trial] = kills["trials"]
    lines = [
        "# Fault injection",
        "",
        f"`python benchmarks/fault_injection.py --trials {args.trials} --seed {args.seed}` on {os.cpu_count()} CPU "
        f"cores ({sys.platform}, Python {sys.version.split()[0]}), run alone under the heavy-job lock.",
        "",
        "## Bad-input corpus (tests/test_bad_inputs.py)",
        "",
        "| cases tried | handled | odd-but-valid (accepted) | defects (exit 2, one precise message, nothing written) |",
        "|---|---|---|---|",
        f"| {corpus['tried']} | {corpus['handled']} | {corpus['valid']} | {corpus['errors']} |",
        "",
    ]
    if corpus["failures"]:
        lines += ["Not handled:", "", *[f"- {f}" for f in corpus["failures"]], ""]
    lines += [
        "## SIGKILL at seeded random moments",
        "",
        "Reference (uninterrupted) durations: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in kills["durations"].items())
        + ". *random*: killed after a seeded delay in [0.3 s, the reference duration]; *targeted*: killed while a "
        "checkpoint / text-cache file was being replaced (temporary file written, rename pending).",
        "",
        "| command | kills tried | killed mid-run | files incomplete after the kill | leftovers after the kill (temp / lock) "
        "| continued identically | leftovers after continuing |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(t.job for t in trials):
        ts = [t for t in trials if t.job == name]
        lines.append(
            f"| {name} | {len(ts)} ({sum(t.mode == 'targeted' for t in ts)} targeted) | {sum(t.killed for t in ts)} "
            f"| {sum(bool(t.incomplete) for t in ts)} | {sum(t.leftovers_after_kill for t in ts)} "
            f"| {sum(t.identical for t in ts)} | {sum(bool(t.leftovers_after_rerun) for t in ts)} |"
        )
    total = len(trials)
    lines += [
        f"| **all** | {total} | {sum(t.killed for t in trials)} | {sum(bool(t.incomplete) for t in trials)} "
        f"| {sum(t.leftovers_after_kill for t in trials)} | {sum(t.identical for t in trials)} "
        f"| {sum(bool(t.leftovers_after_rerun) for t in trials)} |",
        "",
        "Continuing: `train --resume` (train), the same `experiment` command, `prepare` again (compared byte for "
        "byte with the reference dataset directory), `analyze` again (the same files). Identical = valid and test "
        "metrics, epochs, steps and the SHA-256 of the best weights equal to the uninterrupted run's.",
        "",
    ]
    problems = [t for t in trials if t.incomplete or not t.identical or t.leftovers_after_rerun]
    lines += ["Not handled:", ""] + (
        [
            f"- {t.job} ({t.mode}, kill at {t.delay} s): {t.note} {t.incomplete} {t.leftovers_after_rerun}"
            for t in problems
        ]
        or ["- none"]
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", nargs="+", default=None, help="prepare train train+text experiment analyze")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="symcere-faults-"))
    try:
        corpus = corpus_figures(root / "corpus")
        print(f"corpus: {corpus['handled']}/{corpus['tried']} handled", file=sys.stderr)
        kills = run(args.trials, args.seed, root, args.jobs)
        text = write_report(corpus, kills, args)
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    from symcere.io import write_text

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
