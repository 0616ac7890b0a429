"""Data-parallel training under torchrun (training/distributed.py), with 2 CPU processes on gloo.

The multi-process tests start ``python -m torch.distributed.run`` (torchrun) as a subprocess: on this very file
(``__main__`` below is the worker of the evaluation test) or on ``-m symcere train``. Each is bounded (tiny data,
a timeout) and needs only localhost.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from symcere.training.sampler import InteractionSampler

TIMEOUT = 240  # seconds, per torchrun launch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *args,
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish within {TIMEOUT}s:\n{out[-3000:]}")
    return proc.returncode, out


# -- the sharded sampler -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n_users", "n_items", "batch", "world"), [(40, 30, 64, 2), (37, 23, 50, 3), (5, 9, 7, 2)])
def test_sharded_sampler_covers_every_interaction_once_per_epoch(n_users, n_items, batch, world) -> None:
    rng = np.random.default_rng(0)
    dense = rng.random((n_users, n_items)) < 0.3
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    train = sp.csr_matrix(dense.astype(np.float32))
    samplers = [InteractionSampler(train, batch, 2, shard=(r, world)) for r in range(world)]
    full = InteractionSampler(train, batch, 2)
    everything = sorted(zip(full.users.tolist(), full.items.tolist(), strict=True))
    gens = [np.random.default_rng(5) for _ in range(world)]  # every rank: the same seed
    epochs = []
    for _ in range(3):
        per_rank = [list(s.epoch(g)) for s, g in zip(samplers, gens, strict=True)]
        steps = {len(batches) for batches in per_rank}
        assert steps == {len(samplers[0])}, "every rank takes the same number of steps"
        seen = []
        for batches in per_rank:
            for b in batches:
                assert len(b["users"]) > 0
                assert not full.interacted(b["users"].numpy().repeat(2), b["neg"].numpy().ravel()).any()
                seen += list(zip(b["users"].tolist(), b["pos"].tolist(), strict=True))
        assert sorted(seen) == everything, "each interaction exactly once per epoch across the ranks"
        for step in range(len(samplers[0])):  # a global step sees about batch_size interactions
            sizes = [len(per_rank[r][step]["users"]) for r in range(world)]
            assert max(sizes) - min(sizes) <= 1
        epochs.append([b["pos"].tolist() for b in per_rank[0]])
    assert epochs[0] != epochs[1], "a new permutation every epoch"
    # a single process is the unsharded sampler, unchanged
    a, b = list(full.epoch(np.random.default_rng(1))), list(InteractionSampler(train, batch, 2).epoch(np.random.default_rng(1)))
    assert all(torch.equal(x["pos"], y["pos"]) and torch.equal(x["neg"], y["neg"]) for x, y in zip(a, b, strict=True))


def test_user_shard_deals_whole_batches() -> None:
    from symcere.evaluation.evaluator import user_shard

    users = np.arange(100, 123)
    parts = [user_shard(users, 5, r, 2) for r in range(2)]
    assert parts[0].tolist() == [*range(100, 105), *range(110, 115), *range(120, 123)]
    assert sorted(np.concatenate(parts).tolist()) == users.tolist()
    assert user_shard(users, 50, 1, 2).size == 0  # more ranks than batches: an empty shard


# -- exact sharded evaluation (2 processes) -----------------------------------------------------------------
def _eval_worker(data: str, out: str) -> None:
    """torchrun worker: the sharded evaluation of a seeded LightGCN, gathered; rank 0 writes it to ``out``."""
    from symcere.config import load_config
    from symcere.data import Dataset
    from symcere.evaluation.evaluator import evaluate_split
    from symcere.models import build_model
    from symcere.training import distributed
    from symcere.training.seeding import seed_everything

    assert distributed.setup() and distributed.world_size() == 2
    torch.set_num_threads(1)
    dataset = Dataset.load(data)
    seed_everything(3)
    model = build_model(dataset, load_config("lightgcn", overrides=["model.dim=16", "model.layers=2"])).eval()
    results = {}
    for split in ("valid", "test"):
        part = evaluate_split(
            model.score, dataset, split, ks=(5, 10), max_batch_elements=7 * dataset.n_items, shard=distributed.shard()
        )
        res = distributed.gather_eval(part)
        results[split] = {"metrics": res.metrics, "users": res.users, "per_user": res.per_user, "n": res.n_users}
        results[split]["shard_users"] = part.n_users
    if distributed.is_main():
        torch.save(results, out)


def test_two_process_evaluation_equals_one_process_bit_for_bit(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    from symcere.config import load_config
    from symcere.data import Dataset
    from symcere.evaluation.evaluator import evaluate_split
    from symcere.models import build_model
    from symcere.training.seeding import seed_everything

    out = tmp_path / "gathered.pt"
    code, log = finish(torchrun([__file__, "eval", str(tiny_dataset_dir), str(out)]))
    assert code == 0, log[-3000:]
    gathered = torch.load(out, weights_only=False)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = Dataset.load(tiny_dataset_dir)
        seed_everything(3)
        model = build_model(dataset, load_config("lightgcn", overrides=["model.dim=16", "model.layers=2"])).eval()
        for split in ("valid", "test"):
            one = evaluate_split(model.score, dataset, split, ks=(5, 10), max_batch_elements=7 * dataset.n_items)
            two = gathered[split]
            assert two["n"] == one.n_users and np.array_equal(two["users"], one.users), "every user once"
            assert 0 < two["shard_users"] < one.n_users, "both ranks evaluated a part"
            assert two["metrics"] == one.metrics  # exact float equality, every metric
            assert list(two["metrics"]) == list(one.metrics)
            for key, values in one.per_user.items():
                assert two["per_user"][key].dtype == values.dtype and np.array_equal(two["per_user"][key], values)
    finally:
        torch.set_num_threads(threads)


# -- a 2-process LightGCN run: one rank killed, --resume continues to the uninterrupted result ----------------
TRAIN = [
    "--model",
    "lightgcn",
    "--quiet",
    "--set",
    "model.dim=16",
    "--set",
    "model.layers=2",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.max_epochs=40",
    "--set",
    "train.eval_every_steps=1",
    "--set",
    "train.patience_steps=100000",
    "--set",
    "train.threads=1",
]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _rank_of(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"RANK="):
            return int(item[5:])
    return None


def _log_epochs(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_two_process_lightgcn_resumes_after_a_rank_is_killed(tiny_dataset_dir: Path, tmp_path: Path) -> None:
    data = ["--data", str(tiny_dataset_dir)]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    code, log = finish(torchrun(["-m", "symcere", "train", *data, "--out", str(whole), *TRAIN]))
    assert code == 0, log[-3000:]
    reference = json.loads((whole / "metrics.json").read_text())
    assert reference["status"] == "finished" and reference["world_size"] == 2 and reference["epochs"] == 40
    assert json.loads((whole / "env.json").read_text())["world_size"] == 2

    proc = torchrun(["-m", "symcere", "train", *data, "--out", str(broken), *TRAIN])
    deadline = time.time() + TIMEOUT
    victim = None
    while time.time() < deadline and proc.poll() is None:
        if len(_log_epochs(broken)) >= 3 and (broken / "checkpoint.pt").exists():
            victim = next((p for p in _children(proc.pid) if _rank_of(p) == 1), None)
            if victim is not None:
                os.kill(victim, signal.SIGKILL)
                break
        time.sleep(0.01)
    code, log = finish(proc)
    assert victim is not None, f"rank 1 was not found running:\n{log[-3000:]}"
    assert code != 0, "the job stops when one rank dies"
    assert not (broken / "metrics.json").exists()
    killed_at = len(_log_epochs(broken))
    assert 3 <= killed_at < 40

    code, log = finish(torchrun(["-m", "symcere", "train", *data, "--out", str(broken), "--resume", *TRAIN]))
    assert code == 0, log[-3000:]
    resumed = json.loads((broken / "metrics.json").read_text())
    assert resumed["test"] == reference["test"] and resumed["valid"] == reference["valid"]
    strip = ("seconds", "eval_seconds", "peak_rss_mb")
    epochs_a = [{k: v for k, v in r.items() if k not in strip} for r in _log_epochs(whole)]
    epochs_b = [{k: v for k, v in r.items() if k not in strip} for r in _log_epochs(broken)]
    assert epochs_b == epochs_a, "the resumed run repeats the uninterrupted one, epoch by epoch"
    assert log.count("| lightgcn | finished") == 1, "only rank 0 prints"


if __name__ == "__main__":  # the torchrun worker of the evaluation test
    if sys.argv[1] == "eval":
        _eval_worker(sys.argv[2], sys.argv[3])
