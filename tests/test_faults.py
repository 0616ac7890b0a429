"""Faults: locks and concurrent writers, kills at awkward moments, full / read-only disks, memory limits,
determinism, untrusted files. The seeded SIGKILL trials (prepare, train with checkpoint and text-cache writes,
experiment, analyze) are marked slow; ``benchmarks/fault_injection.py`` runs >= 20 of them and writes the table."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import small_config, tiny_reviews

from symcere.cli import main
from symcere.data import build_dataset
from symcere.errors import SymcereError
from symcere.locks import LockBusy, LockInfo, PathLock, lock_path, locked
from symcere.training.run import train
from symcere.training.seeding import seed_everything
from symcere.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _child(code: str) -> subprocess.Popen:
    """A Python child process running ``code``; it prints 'ready' once set up."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _hold_lock(target: Path, what: str = "directory") -> subprocess.Popen:
    proc = _child(
        f"""
        import sys, time
        from symcere.locks import PathLock
        PathLock({str(target)!r}, {what!r}).acquire()
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


def _metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {k: m[k] for k in ("status", "valid", "test", "epochs", "steps", "best_epoch", "best_step")}


def _weights(run: Path, name: str = "best.pt") -> dict[str, torch.Tensor]:
    return torch.load(run / name, weights_only=True)["model"]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ locks
def test_lock_file_names_its_holder_and_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    target = tmp_path / "run"
    holder = _hold_lock(target, "run directory")
    try:
        info = json.loads(lock_path(target).read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        with pytest.raises(LockBusy, match=rf"run directory .*run is in use by pid {holder.pid} on host"):
            PathLock(target, "run directory").acquire()
    finally:
        _kill(holder)  # SIGKILL: the lock file stays behind, stale
    assert lock_path(target).exists()
    lock = PathLock(target, "run directory").acquire()
    assert lock.took_over is not None and lock.took_over.pid == holder.pid
    lock.release()
    assert not lock_path(target).exists() and not target.exists()


def test_lock_is_reentrant_in_a_process_and_waits_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "d"
    with locked(target) as outer, locked(target):
        assert lock_path(target).exists() and outer.took_over is None
    assert not lock_path(target).exists()
    holder = _hold_lock(target)
    try:
        t0 = time.monotonic()
        with pytest.raises(LockBusy):
            PathLock(target).acquire(wait=0.3)
        assert time.monotonic() - t0 >= 0.3
    finally:
        _kill(holder)


def test_stale_detection_without_flock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import symcere.locks as locks

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "no locks available")

    monkeypatch.setattr(locks.fcntl, "flock", no_flock)
    target = tmp_path / "d"
    path = lock_path(target)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    cases = [
        (LockInfo(int(dead.stdout), host), None),  # the pid is gone: stale
        (LockInfo(os.getppid(), host, start_ticks=1), None),  # the pid was reused by a later process: stale
        (LockInfo(os.getppid(), host, start_ticks=locks._start_ticks(os.getppid())), "in use by pid"),
        (LockInfo(1, "elsewhere.example"), "delete"),  # another host: cannot know, say how to remove it
    ]
    for info, busy in cases:
        path.write_text(json.dumps(info.__dict__))
        if busy:
            with pytest.raises(LockBusy, match=busy):
                PathLock(target).acquire()
        else:
            lock = PathLock(target).acquire()
            assert lock.took_over == info
            lock.release()
    path.unlink(missing_ok=True)


def test_an_unwritable_location_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import symcere.locks as locks

    real = os.open

    def read_only(path, flags, *a):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, flags, *a)

    monkeypatch.setattr(locks.os, "open", read_only)
    with pytest.raises(SymcereError, match="read-only"):
        build_dataset(tiny_reviews(), tmp_path / "out" / "d", name="d")
    assert not (tmp_path / "out").exists()  # the directories made for the lock are removed again


# ------------------------------------------------------------------------------------------------ concurrency
TRAIN = ["--model", "lightgcn", "--quiet", "--set", "model.dim=8", "--set", "train.threads=1"]


def test_two_trainings_on_one_run_dir(tiny_dataset_dir: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_dataset_dir), "--out", str(run), *TRAIN]
    first = subprocess.Popen(
        [sys.executable, "-m", "symcere.cli", *args, "--set", "train.max_epochs=100000"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        end = time.time() + 600  # a bound, not a timing: a loaded machine can take minutes to start torch
        while not (run / "checkpoint.pt").exists() and time.time() < end and first.poll() is None:
            time.sleep(0.05)
        assert (run / "checkpoint.pt").exists(), first.stderr.read().decode()[-2000:]
        before = (run / "config.yaml").read_bytes()
        assert main([*args, "--set", "train.max_epochs=100000"]) == 2
        err = capsys.readouterr().err
        assert f"in use by pid {first.pid}" in err and "symcere allows one writer" in err
        assert main([*args, "--set", "train.max_epochs=100000", "--resume"]) == 2
        assert (run / "config.yaml").read_bytes() == before
    finally:
        _kill(first)
    # the loser changed nothing; the winner's run (killed) resumes
    assert load_ok(run / "checkpoint.pt")


def load_ok(path: Path) -> bool:
    torch.load(path, weights_only=True)
    return True


def test_two_prepares_on_one_dataset_dir(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "r.json"
    raw.write_text(
        "".join(
            json.dumps({"reviewerID": r.user, "asin": r.item, "overall": 4, "unixReviewTime": r.timestamp}) + "\n"
            for r in tiny_reviews()
        )
    )
    out = tmp_path / "data"
    holder = _hold_lock(out, "dataset directory")
    try:
        assert main(["prepare", "--input", str(raw), "--out", str(out), "--k-core", "0"]) == 2
        assert f"dataset directory {out} is in use by pid {holder.pid}" in capsys.readouterr().err
        assert not out.exists()
    finally:
        _kill(holder)
    assert main(["prepare", "--input", str(raw), "--out", str(out), "--k-core", "0"]) == 0  # stale lock taken over
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "r.json"]


def test_text_cache_writers_take_turns_and_lose_no_rows(tmp_path: Path) -> None:
    """Two processes growing one per-review store at the same time: every row of both ends up in the file."""
    code = """
        import sys, torch
        from symcere.text.cache import ReviewStore
        who = int(sys.argv[1])
        for k in range(15):
            store = ReviewStore(sys.argv[2], "k" * 64)
            d = torch.full((1, 16), 0, dtype=torch.uint8); d[0, 0] = who; d[0, 1] = k
            store._add(d, torch.full((1, 4), float(who * 100 + k)))
    """
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(w), str(tmp_path)], env=ENV) for w in (1, 2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    from symcere.text.cache import ReviewStore

    store = ReviewStore(tmp_path, "k" * 64)
    assert len(store) == 30
    assert sorted(float(x) for x in store.emb[:, 0]) == sorted(w * 100 + k for w in (1, 2) for k in range(15))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"reviews_{'k' * 32}.pt"]  # no temp or lock file


def test_a_busy_text_cache_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import symcere.text.cache as cache

    monkeypatch.setattr(cache, "CACHE_LOCK_WAIT", 0.2)
    target = tmp_path / f"reviews_{'k' * 32}.pt"
    holder = _hold_lock(target, "text cache file")
    try:
        store = cache.ReviewStore(tmp_path, "k" * 64)
        with pytest.raises(LockBusy, match=rf"text cache file .* in use by pid {holder.pid}"):
            store._add(torch.zeros(1, 16, dtype=torch.uint8), torch.zeros(1, 4))
        assert not target.exists()
    finally:
        _kill(holder)


# ------------------------------------------------------------------------------------------------ kills, restarts
def _interrupt_at(trainer: Trainer, epoch: int) -> None:
    hook = trainer.model.on_epoch_start

    def on_epoch_start(e):
        if e == epoch:
            raise KeyboardInterrupt
        hook(e)

    trainer.model.on_epoch_start = on_epoch_start


def _trainer(ds, cfg, run):
    from symcere.models.lightgcn import LightGCN

    seed_everything(int(cfg["seed"]))
    return Trainer(LightGCN(ds, cfg), ds, cfg, run, progress=False)


def test_a_run_killed_before_its_first_checkpoint_resumes_or_restarts(tiny_dataset, tmp_path: Path) -> None:
    cfg = small_config("lightgcn", "train.max_epochs=3")
    full = _trainer(tiny_dataset, cfg, tmp_path / "full").fit()
    for mode in ("resume", "restart"):
        run = tmp_path / mode
        cut = _trainer(tiny_dataset, cfg, run)
        _interrupt_at(cut, 1)  # after config.yaml and env.json, before any checkpoint
        with pytest.raises(KeyboardInterrupt):
            cut.fit()
        assert {p.name for p in run.iterdir()} == {"config.yaml", "env.json"}
        (run / ".checkpoint.pt.abc12345.tmp").write_bytes(b"torn")  # a write the kill cut short
        again = _trainer(tiny_dataset, cfg, run).fit(resume=mode == "resume")
        assert again.valid == full.valid and again.test == full.test and again.steps == full.steps
        assert _same_weights(_weights(run), _weights(tmp_path / "full"))
        assert not list(run.glob(".*")) and not lock_path(run).exists()
    # an empty run dir (killed right after creating it) resumes from the start too
    (tmp_path / "empty").mkdir()
    assert _trainer(tiny_dataset, cfg, tmp_path / "empty").fit(resume=True).test == full.test
    # a scratch run of another configuration: --resume refuses (the config differs), a plain start restarts
    other = small_config("lightgcn", "train.max_epochs=3", "train.lr=0.05")
    cut = _trainer(tiny_dataset, other, tmp_path / "other")
    _interrupt_at(cut, 1)
    with pytest.raises(KeyboardInterrupt):
        cut.fit()
    with pytest.raises(SymcereError, match=r"differs .*train\.lr"):
        _trainer(tiny_dataset, cfg, tmp_path / "other").fit(resume=True)
    assert _trainer(tiny_dataset, cfg, tmp_path / "other").fit().test == full.test
    # a finished run is never restarted
    with pytest.raises(SymcereError, match="finished run"):
        _trainer(tiny_dataset, cfg, tmp_path / "other").fit()


def test_a_run_killed_while_scoring_after_its_early_stop_resumes_identically(
    tiny_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config("lightgcn", "train.max_epochs=50", "train.patience_steps=8", "train.eval_every_steps=2")
    full = _trainer(tiny_dataset, cfg, tmp_path / "full").fit()
    assert full.message == "early stop" and full.epochs < 50
    real = Trainer._finish
    calls = {"n": 0}

    def killed_in_finish(self, *a):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # e.g. SIGKILL while the test split is scored
        return real(self, *a)

    monkeypatch.setattr(Trainer, "_finish", killed_in_finish)
    with pytest.raises(KeyboardInterrupt):
        _trainer(tiny_dataset, cfg, tmp_path / "cut").fit()
    resumed = _trainer(tiny_dataset, cfg, tmp_path / "cut").fit(resume=True)
    assert (resumed.epochs, resumed.steps, resumed.message) == (full.epochs, full.steps, "early stop")
    assert resumed.valid == full.valid and resumed.test == full.test


def test_an_interrupted_dataset_swap_is_rolled_back(tmp_path: Path) -> None:
    out = build_dataset(tiny_reviews(), tmp_path / "d", name="first", k_core=0)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    # what a kill between the two renames of the atomic swap leaves: the old dataset aside, the new one complete
    old = tmp_path / ".d.old-x1"
    old.mkdir()
    os.replace(out, old / "d")
    (tmp_path / ".d.tmp-y2").mkdir()
    (tmp_path / ".d.tmp-y2" / "interactions.parquet").write_bytes(b"half")
    with pytest.raises(SymcereError, match="already exists"):  # the old dataset is back: not overwritten silently
        build_dataset(tiny_reviews(n_users=12), tmp_path / "d", name="second", k_core=0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# ------------------------------------------------------------------------------------------------ disks
def test_a_full_disk_during_training_stops_cleanly_and_resumes(
    tiny_dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import symcere.training.checkpoint as ck

    args = ["train", "--data", str(tiny_dataset_dir), *TRAIN, "--set", "train.max_epochs=4", "--seed", "2"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    real, calls = ck.atomic_write, {"n": 0}

    def full_disk(path, write):
        calls["n"] += 1
        if calls["n"] == 4:  # the 2nd epoch's checkpoint (best.pt, checkpoint.pt per epoch)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(ck, "atomic_write", full_disk)
    run = tmp_path / "cut"
    assert main([*args, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    assert torch.load(run / "checkpoint.pt", weights_only=True)["state"]["epoch"] >= 1  # the old one, complete
    assert not list(run.glob(".*.tmp")) and not lock_path(run).exists()
    monkeypatch.setattr(ck, "atomic_write", real)
    assert main([*args, "--out", str(run), "--resume"]) == 0
    assert _metrics(run) == _metrics(tmp_path / "full")


def test_a_full_disk_during_prepare_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import symcere.data.preprocess as pre

    raw = tmp_path / "r.json"
    raw.write_text(
        "".join(
            json.dumps({"reviewerID": r.user, "asin": r.item, "overall": 4, "unixReviewTime": r.timestamp}) + "\n"
            for r in tiny_reviews()
        )
    )

    def full(table, where, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pre.pq, "write_table", full)
    assert (
        main(
            [
                "prepare",
                "--input",
                str(raw),
                "--out",
                str(tmp_path / "outs" / "d"),
                "--k-core",
                "0",
                "--engine",
                "pandas",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "No space left on device" in err and "interactions.parquet" in err and "nothing was written" in err
    assert not (tmp_path / "outs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


# ------------------------------------------------------------------------------------------------ memory
def test_a_configuration_that_cannot_fit_memory_is_refused_before_the_run(
    tiny_dataset_dir: Path, tiny_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import symcere.resources as res

    cfg = small_config("lightgcn")
    need = res.estimate_memory(cfg, tiny_dataset)
    assert set(need) >= {"evaluation score block", "embeddings and optimizer", "graph"}
    # the evaluation block follows eval.max_batch_elements (users per batch x items)
    big = res.estimate_memory(small_config("lightgcn", "eval.max_batch_elements=1000000000"), tiny_dataset)
    assert big["evaluation score block"] == tiny_dataset.n_users * tiny_dataset.n_items * res.EVAL_BYTES_PER_ELEMENT
    with pytest.raises(res.MemoryTooSmall, match=r"needs about .* GiB .* only 0\.0 GiB is available"):
        res.check_memory(cfg, tiny_dataset, available=1000)
    # a LoRA step grows with the batch; the message names the setting to lower
    lora = small_config("symcere", "text.mode=lora", "train.batch_size=4096", "text.max_tokens=512")
    est = res.estimate_memory(lora, tiny_dataset)
    assert (
        est["text training step"]
        > res.estimate_memory(small_config("symcere", "text.mode=lora"), tiny_dataset)["text training step"]
    )
    with pytest.raises(res.MemoryTooSmall, match="lower train.batch_size or text.max_tokens"):
        res.check_memory(lora, tiny_dataset, available=est["text training step"] // 2)
    # through the CLI: exit 2 before anything is created; --no-memory-check starts anyway
    monkeypatch.setattr(res, "available_memory", lambda: 1000)
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_dataset_dir), "--out", str(run), *TRAIN, "--set", "train.max_epochs=1"]
    assert main(args) == 2
    assert "nothing was started" in capsys.readouterr().err and not run.exists()
    assert main([*args, "--no-memory-check"]) == 0


def test_the_memory_estimate_of_this_machine_is_sane() -> None:
    from symcere.resources import available_memory

    avail = available_memory()
    assert avail is None or avail > 0


# ------------------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("model", ["lightgcn", "sgl", "neumf"])
def test_same_seed_same_metrics_and_weights(tiny_dataset, tmp_path: Path, model: str) -> None:
    cfg = small_config(model, "train.max_epochs=3")
    a = train(tiny_dataset, cfg, tmp_path / "a", progress=False)
    b = train(tiny_dataset, cfg, tmp_path / "b", progress=False)
    assert a.valid == b.valid and a.test == b.test
    assert _same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert _same_weights(_weights(tmp_path / "a", "checkpoint.pt"), _weights(tmp_path / "b", "checkpoint.pt"))
    # and across the evaluation batch size (the evaluator's results do not depend on it)
    small = train(tiny_dataset, small_config(model, "train.max_epochs=3", "eval.max_batch_elements=7"), tmp_path / "c")
    assert small.valid == a.valid and small.test == a.test
    assert _same_weights(_weights(tmp_path / "c"), _weights(tmp_path / "a"))


def test_thread_count_on_a_small_problem(tiny_dataset, tmp_path: Path) -> None:
    """On the tiny problem one and two threads give the same weights bit for bit; on larger ones the parallel
    reductions may differ in the last bits (docs/RELIABILITY.md)."""
    one = train(tiny_dataset, small_config("lightgcn", "train.threads=1"), tmp_path / "t1", progress=False)
    two = train(tiny_dataset, small_config("lightgcn", "train.threads=2"), tmp_path / "t2", progress=False)
    assert one.valid == two.valid and one.test == two.test
    assert _same_weights(_weights(tmp_path / "t1"), _weights(tmp_path / "t2"))


def test_ties_rank_the_same_in_every_batch_size() -> None:
    import scipy.sparse as sp

    from symcere.evaluation.evaluator import evaluate

    rng = np.random.default_rng(0)
    n_users, n_items = 40, 30
    scores = torch.from_numpy(rng.integers(0, 3, size=(n_users, n_items)).astype(np.float32))  # many ties
    train_m = sp.random(n_users, n_items, density=0.2, random_state=1, format="csr")
    held = sp.random(n_users, n_items, density=0.1, random_state=2, format="csr")
    results = [
        evaluate(lambda u: scores[u], train_m, held, ks=(5, 10), max_batch_elements=m) for m in (1, 31, 95, 10**6)
    ]
    for r in results[1:]:
        assert r.metrics == results[0].metrics
        assert all(np.array_equal(r.per_user[k], results[0].per_user[k]) for k in r.per_user)


# ------------------------------------------------------------------------------------------------ untrusted files
def test_no_unsafe_loader_anywhere_in_the_code() -> None:
    import re

    for path in (ROOT / "src" / "symcere").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for call in re.finditer(r"torch\.load\(", text):
            args = text[call.end() : call.end() + 300].split("\n\n")[0]
            assert "weights_only=True" in args, f"{path}: torch.load({args[:80]}"
        assert not re.search(r"\bpickle\.loads?\(|allow_pickle=True|read_pickle|to_pickle|yaml\.unsafe_load", text), (
            path
        )
        for call in re.finditer(r"yaml\.load\(([^)]*)\)", text):
            assert "Loader=_Loader" in call.group(1), f"{path}: {call.group(0)}"
        assert not re.search(r"(?<![\w.`])(eval|exec)\((?!\))", text), path  # builtins (not Module.eval())


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('SYMCERE_PWNED', '/nonexistent/x')}",))


def test_a_checkpoint_with_code_is_refused(tiny_dataset_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    flag = tmp_path / "PWNED"
    monkeypatch.setenv("SYMCERE_PWNED", str(flag))
    run = tmp_path / "run"
    args = ["train", "--data", str(tiny_dataset_dir), "--out", str(run), *TRAIN, "--set", "train.max_epochs=2"]
    assert main(args) == 0
    (run / "metrics.json").unlink()  # make it look interrupted
    torch.save({"model": _Payload()}, run / "checkpoint.pt")
    assert main([*args, "--resume"]) == 2
    assert "refused to load" in capsys.readouterr().err
    torch.save({"model": _Payload()}, run / "best.pt")
    assert main(["evaluate", str(run)]) == 2  # refused with a message, no traceback
    assert "refused to load" in capsys.readouterr().err
    assert not flag.exists()


def test_no_pickle_in_a_run_directory(tiny_dataset, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_dataset, small_config("lightgcn", "train.max_epochs=2"), run, progress=False)
    for p in run.iterdir():
        if p.suffix == ".pt":
            torch.load(p, weights_only=True)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                assert all(z[k].dtype != object for k in z.files)
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            [json.loads(ln) for ln in p.read_text().splitlines() if ln]
        elif p.suffix == ".yaml":
            yaml.safe_load(p.read_text())
        else:
            pytest.fail(f"unexpected file {p.name}")


def test_plan_names_cannot_write_outside_the_output_dir(tmp_path: Path) -> None:
    from symcere.experiments.plan import load_plan
    from symcere.experiments.runner import run_plan

    plan = tmp_path / "p.yaml"
    plan.write_text(
        "out: out\ndatasets:\n  '..': {synthetic: {preset: tiny}}\nmodels:\n  '..': {model: mf}\n", encoding="utf-8"
    )
    with pytest.raises(SymcereError, match="not inside the output directory"):
        run_plan(load_plan(plan), quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    plan.write_text("out: mine\ndatasets:\n  t: {synthetic: {preset: tiny}}\nmodels:\n  mf: {}\n", encoding="utf-8")
    with pytest.raises(SymcereError, match="not a plan's output"):
        run_plan(load_plan(plan), quiet=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    plan.write_text("datasets: !!python/object/apply:os.system ['touch PWNED']\nmodels: {}\n", encoding="utf-8")
    with pytest.raises(SymcereError, match="not valid YAML"):
        load_plan(plan)
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


# ------------------------------------------------------------------------------------------------ SIGKILL trials
@pytest.mark.slow
def test_seeded_sigkill_trials(tmp_path: Path) -> None:
    """A bounded, seeded set of kills of every command (the benchmark runs >= 20): files complete after each
    kill, continuing gives bit-identical metrics and weights (byte-identical data for prepare)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fault_injection as fi

    out = fi.run(8, seed=5, root=tmp_path, progress=False)
    trials = out["trials"]
    assert len(trials) == 8 and sum(t.killed for t in trials) >= 4
    for t in trials:
        assert not t.incomplete, t
        assert t.identical, t
        assert not t.leftovers_after_rerun, t
