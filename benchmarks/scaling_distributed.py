"""Beyond one machine: 1 vs 2 processes (torchrun, gloo), and out-of-core preparation (DuckDB).

    python benchmarks/scaling_distributed.py metrics --workdir W   # LightGCN / SymCERE test metrics, 3 seeds, 1 vs 2 procs
    python benchmarks/scaling_distributed.py prepare --workdir W   # generated 0.1M / 1M / 10M-review files -> prepare
    python benchmarks/scaling_distributed.py train --workdir W     # train step, epoch, evaluation, communication

Every measurement runs in its own process (``prepare``: one ``symcere prepare`` per row, peak RSS from
``wait4``; ``train``: one torchrun job per row). Results go to ``benchmarks/results/scaling_*.{md,json}``
(``--results`` to change). Run it under ``flock /tmp/symcere-heavy.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SIZES = {"0.1M": 100_000, "1M": 1_000_000, "10M": 10_000_000}
EXTRA_SIZES = {"2M": 2_000_000}  # prepare only: both engines past one parquet row group (1 Mi rows)
ENV = {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {load:.2f} at start"


def write_results(stem: str, title: str, rows: list[dict[str, Any]], notes: list[str], results: Path) -> None:
    from symcere.io import write_json, write_text
    from symcere.tables import markdown_table

    results.mkdir(parents=True, exist_ok=True)
    write_json(results / f"{stem}.json", {"title": title, "machine": machine(), "rows": rows, "notes": notes})
    body = f"# {title}\n\n{machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
    body += markdown_table(rows) + "\n\n" + "".join(f"- {n}\n" for n in notes)
    write_text(results / f"{stem}.md", body)
    print(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(args: list[str], procs: int) -> list[str]:
    """The command line of ``args`` (a python -m / script invocation) in ``procs`` processes."""
    if procs == 1:
        return [sys.executable, *args]
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args,
    ]  # fmt: skip


def run_measured(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """Run ``cmd``; (exit status, wall seconds, peak RSS in MB of the process itself, from wait4)."""
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env={**os.environ, **ENV}, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.time() - t0, usage.ru_maxrss / 1024.0


# -- 1 vs 2 processes: test metrics ---------------------------------------------------------------------------
MODELS = {"lightgcn": [], "symcere": ["--set", "text.bf16=true"]}


def cmd_metrics(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    data = work / "synthetic"
    if not (data / "dataset.json").exists():
        subprocess.run([sys.executable, "-m", "symcere", "data", "synth", "--out", str(data)], check=True, env={**os.environ, **ENV})
    rows = []
    for model, extra in MODELS.items():
        for procs in (1, 2):
            for seed in args.seeds:
                out = work / "runs" / f"{model}_p{procs}_s{seed}"
                if not (out / "metrics.json").exists():
                    resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
                    train = ["-m", "symcere", "train", "--model", model, "--data", str(data), "--out", str(out)]
                    cmd = launch([*train, "--quiet", "--seed", str(seed), *extra, *resume], procs)
                    code, seconds, _ = run_measured(cmd, work / f"{out.name}.log")
                    if code != 0:
                        raise SystemExit(f"{out.name} failed (exit {code}); see {work / (out.name + '.log')}")
                m = json.loads((out / "metrics.json").read_text())
                rows.append(
                    {
                        "model": model, "processes": procs, "seed": seed,
                        "test ndcg@10": m["test"]["ndcg@10"], "test recall@10": m["test"]["recall@10"],
                        "test hr@10": m["test"]["hr@10"], "epochs": m["epochs"], "s/epoch": m["seconds_per_epoch"],
                        "train s": m["train_seconds"],
                    }
                )  # fmt: skip
    summary = []
    for model in MODELS:
        for procs in (1, 2):
            sel = [r for r in rows if r["model"] == model and r["processes"] == procs]
            row: dict[str, Any] = {"model": model, "processes": procs, "seeds": len(sel)}
            for key in ("test ndcg@10", "test recall@10", "test hr@10", "epochs", "s/epoch"):
                v = np.array([r[key] for r in sel], dtype=float)
                row[key] = f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"
            summary.append(row)
    notes = [
        "built-in dataset (`symcere data synth`, default size); default configuration of each model "
        "(SymCERE: the default preset, `text.bf16=true`); seeds " + ", ".join(map(str, args.seeds)),
        "1 process: `symcere train` (2 torch threads); 2 processes: `torchrun --nproc_per_node 2 -m symcere train` "
        "(gloo, 1 thread each); the global batch is train.batch_size in both, split across the ranks",
        "mean ± sample std over seeds; per-seed rows in scaling_metrics.json",
    ]
    results = Path(args.results)
    write_results("scaling_metrics", "1 vs 2 processes: test metrics", summary, notes, results)
    from symcere.io import write_json, write_text
    from symcere.tables import markdown_table

    md = (results / "scaling_metrics.md").read_text(encoding="utf-8")
    write_text(results / "scaling_metrics.md", md + "\n## Per seed\n\n" + markdown_table(rows) + "\n")
    write_json(results / "scaling_metrics.json", {"summary": summary, "rows": rows, "notes": notes, "machine": machine()})


# -- out-of-core preparation ----------------------------------------------------------------------------------
def generate_reviews(path: Path, n: int, seed: int = 0) -> None:
    """``n`` Amazon-2023-style JSON-lines reviews: Zipf item popularity, log-normal user activity, short texts."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n // 20, 50), max(n // 80, 50)
    activity = rng.lognormal(0.0, 0.8, n_users)
    users = rng.choice(n_users, size=n, p=activity / activity.sum())
    pop = (np.arange(n_items) + 10.0) ** -0.8
    items = rng.choice(n_items, size=n, p=pop / pop.sum())
    times = 1_400_000_000_000 + rng.integers(0, 8 * 365 * 86_400, size=n) * 1000
    ratings = rng.integers(1, 6, size=n)
    vocab = np.array(
        "good great sound string guitar cable strap tuner pedal amp nice cheap broke works price quality "
        "bright warm loud quiet solid light heavy fits easy hard tone clear noise recommend return".split()
    )
    words = rng.integers(0, len(vocab), size=(n, 12))
    lengths = rng.integers(3, 13, size=n)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        for start in range(0, n, 100_000):
            lines = []
            for k in range(start, min(start + 100_000, n)):
                text = " ".join(vocab[words[k, : lengths[k]]])
                lines.append(
                    f'{{"user_id": "U{users[k]:07d}", "parent_asin": "B{items[k]:07d}", "timestamp": {times[k]}, '
                    f'"rating": {ratings[k]}.0, "title": "{vocab[words[k, 0]]}", "text": "{text}"}}\n'
                )
            fh.write("".join(lines))
    os.replace(tmp, path)


def cmd_prepare(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for label in args.sizes:
        n = {**SIZES, **EXTRA_SIZES}[label]
        src = work / f"reviews_{label}.jsonl"
        if not src.exists():
            t0 = time.time()
            generate_reviews(src, n)
            print(f"generated {src} ({src.stat().st_size / 1e6:.0f} MB) in {time.time() - t0:.0f} s", flush=True)
        engines = ["duckdb"] if n > args.pandas_max else ["pandas", "duckdb"]
        for engine in engines:
            out = work / f"data_{label}" if engine == "duckdb" else work / f"data_{label}_pandas"
            cmd = [sys.executable, "-m", "symcere", "prepare", "--input", str(src), "--out", str(out), "--overwrite",
                   "--format", "amazon2023", "--engine", engine]  # fmt: skip
            if engine == "duckdb":
                cmd += ["--memory-limit", args.memory_limit]
            code, seconds, rss = run_measured(cmd, work / f"prepare_{label}_{engine}.log")
            if code != 0:
                raise SystemExit(f"prepare {label} {engine} failed; see {work / f'prepare_{label}_{engine}.log'}")
            stats = json.loads((out / "dataset.json").read_text())["stats"]
            rows.append(
                {
                    "reviews": f"{n:,}", "engine": engine,
                    "memory limit": args.memory_limit if engine == "duckdb" else "-",
                    "seconds": round(seconds, 1), "reviews/s": f"{n / seconds:,.0f}", "peak RSS MB": round(rss),
                    "interactions": f"{stats['interactions']:,}", "users": f"{stats['users']:,}",
                    "items": f"{stats['items']:,}", "input MB": round(src.stat().st_size / 1e6),
                }
            )  # fmt: skip
            print(rows[-1], flush=True)
        if len(engines) == 2:
            same = all(
                (work / f"data_{label}" / f).read_bytes() == (work / f"data_{label}_pandas" / f).read_bytes()
                for f in ("interactions.parquet", "users.parquet", "items.parquet")
            )
            rows[-1]["same bytes as pandas"] = same
            rows[-2]["same bytes as pandas"] = "-"
    notes = [
        "input: generated Amazon-2023 JSON lines (`generate_reviews`: Zipf items, log-normal users, 3-12 word texts); "
        "`symcere prepare --format amazon2023` with the 5-core, 0.8/0.1/0.1 split and the 4000-character text budget",
        "seconds: wall time of the whole command (reading and validating every record in Python, the protocol, "
        "writing); peak RSS: the command's own process (wait4), including DuckDB's memory",
        f"the pandas engine holds everything in memory; it is run up to {args.pandas_max:,} reviews",
    ]
    stem = "scaling_prepare" if args.sizes == list(SIZES) else "scaling_prepare_" + "_".join(args.sizes)
    write_results(stem, "Out-of-core preparation (DuckDB) vs in-memory (pandas)", rows, notes, Path(args.results))


# -- train step, epoch, evaluation, communication ----------------------------------------------------------
def worker(data: str, steps: int, eval_users: int, out: str) -> None:
    """One job (single process or torchrun): LightGCN train steps, sharded evaluation, an all-reduce probe."""
    import resource
    import tempfile

    import scipy.sparse as sp
    import torch

    from symcere.config import load_config
    from symcere.data import Dataset
    from symcere.evaluation.evaluator import evaluate
    from symcere.models import build_model
    from symcere.training import distributed
    from symcere.training.seeding import configure_threads, seed_everything
    from symcere.training.trainer import Trainer

    distributed.setup()
    world = distributed.world_size()
    t0 = time.perf_counter()
    dataset = Dataset.load(data)
    load_s = time.perf_counter() - t0
    cfg = load_config("lightgcn", overrides=["train.device=cpu"])
    threads = configure_threads(distributed.default_threads())
    seed_everything(0)
    t0 = time.perf_counter()
    model = build_model(dataset, cfg, progress=False)
    trainer = Trainer(model, dataset, cfg, tempfile.mkdtemp(), progress=False)  # sampler shard + DDP, no files
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    batches = trainer.sampler.epoch(rng)
    times, comm = [], []
    model.train()
    for _ in range(steps + 1):  # the first step warms up (and records DDP's static graph)
        batch = next(batches)
        distributed.barrier()
        t0 = time.perf_counter()
        terms = trainer.train_step(batch)
        distributed.loss_values(terms)
        trainer.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        trainer.optimizer.step()
        times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if world > 1:  # the gradient all-reduce of one step, alone: the parameters' size in float32
        flat = torch.zeros(n_params)
        for _ in range(4):
            distributed.barrier()
            t0 = time.perf_counter()
            torch.distributed.all_reduce(flat)
            comm.append(time.perf_counter() - t0)
        comm = comm[1:]
    # evaluation of the validation split, bounded to its first `eval_users` users
    model.eval()
    heldout = dataset.matrix("valid").tocsr()
    users = np.flatnonzero(np.diff(heldout.indptr) > 0)
    cut = users[min(eval_users, len(users)) - 1] + 1
    bounded = sp.vstack([heldout[:cut], sp.csr_matrix((heldout.shape[0] - cut, heldout.shape[1]))]).tocsr()
    distributed.barrier()
    t0 = time.perf_counter()
    with torch.no_grad():
        model.score(torch.zeros(1, dtype=torch.long))  # propagation, once per rank (the eval cache)
        prop_s = time.perf_counter() - t0
        part = evaluate(
            model.score, dataset.matrix("train"), bounded, ks=(10, 20), shard=distributed.shard() if world > 1 else None
        )
    eval_s = time.perf_counter() - t0
    distributed.barrier()
    t0 = time.perf_counter()
    res = distributed.gather_eval(part)
    gather_s = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    peaks = [rss]
    if world > 1:
        peaks = [None] * world
        torch.distributed.all_gather_object(peaks, rss)
    if distributed.is_main():
        step = float(np.mean(times[1:]))
        record = {
            "processes": world, "threads per process": threads, "interactions": int(dataset.meta["stats"]["interactions"]),
            "train interactions": int(dataset.matrix("train").nnz), "users": dataset.n_users, "items": dataset.n_items,
            "parameters": int(n_params), "load s": load_s, "build s": build_s, "steps measured": steps,
            "step s": step, "steps/epoch": len(trainer.sampler), "epoch s (est.)": step * len(trainer.sampler),
            "all-reduce s/step": float(np.mean(comm)) if comm else 0.0,
            "eval users": int(res.n_users), "propagation s": prop_s, "eval s": eval_s, "gather s": gather_s,
            "eval users/s": res.n_users / eval_s, "valid users": int(len(users)),
            "valid eval s (est.)": prop_s + (eval_s - prop_s) * len(users) / max(res.n_users, 1),
            "peak RSS MB per process": [round(p) for p in peaks],
        }  # fmt: skip
        Path(out).write_text(json.dumps(record, indent=2))


def cmd_train(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    records = []
    for label in args.sizes:
        data = work / f"data_{label}"
        if not (data / "dataset.json").exists():
            raise SystemExit(f"{data} is missing: run the prepare step first")
        for procs in (1, 2):
            out = work / f"train_{label}_p{procs}.json"
            if not out.exists() or args.again:
                steps = {"0.1M": 20, "1M": 6, "10M": 3}[label]
                eval_users = {"0.1M": 100_000, "1M": 20_000, "10M": 4_000}[label]
                cmd = launch([__file__, "worker", str(data), str(steps), str(eval_users), str(out)], procs)
                code, seconds, _ = run_measured(cmd, work / f"train_{label}_p{procs}.log")
                if code != 0:
                    raise SystemExit(f"train {label} p{procs} failed; see {work / f'train_{label}_p{procs}.log'}")
            records.append({"size": label, **json.loads(out.read_text())})
    prep = {}
    prep_file = Path(args.results) / "scaling_prepare.json"
    if prep_file.exists():
        for r in json.loads(prep_file.read_text())["rows"]:
            if r["engine"] == "duckdb":
                prep[r["reviews"]] = r
    rows = []
    for r in records:
        p = prep.get(f"{SIZES[r['size']]:,}", {})
        rows.append(
            {
                "size": r["size"], "interactions": f"{r['interactions']:,}", "processes": r["processes"],
                "prepare s (duckdb)": p.get("seconds", "-") if r["processes"] == 1 else "-",
                "train step s": round(r["step s"], 4), "steps/epoch": r["steps/epoch"],
                "epoch s (est.)": round(r["epoch s (est.)"], 1),
                "all-reduce s/step": round(r["all-reduce s/step"], 4),
                "all-reduce share": f"{100 * r['all-reduce s/step'] / r['step s']:.0f} %" if r["processes"] > 1 else "-",
                "valid eval s (est.)": round(r["valid eval s (est.)"], 1),
                "propagation s": round(r["propagation s"], 2), "gather s": round(r["gather s"], 4),
                "peak RSS MB / process": max(r["peak RSS MB per process"]),
            }
        )  # fmt: skip
    notes = [
        "LightGCN, default configuration (dim 64, 3 layers, batch 2048, BPR), CPU, gloo; 2 processes: torchrun "
        "`--nproc_per_node 2`, one torch thread each (1 process: 2 threads)",
        "train step s: mean wall time of one optimizer step (forward, backward with DDP's gradient all-reduce, "
        "Adam) after one warm-up step; epoch s (est.) = step s x steps/epoch (the global batch is the same for 1 "
        "and 2 processes, so is the number of steps); steps measured: 0.1M 20, 1M 6, 10M 3",
        "all-reduce s/step: one all-reduce of a float32 buffer of the model's parameter count, timed alone: "
        "the communication DDP adds to each step (the embedding tables' gradients are dense)",
        "valid eval s (est.): propagation once per rank plus scoring and ranking; measured on the first 100k / 20k / "
        "4k validation users and extrapolated to all of them; gather s: the exact all-gather of per-user metrics",
        "prepare: the DuckDB engine on the generated review file of that size (scaling_prepare.md), one process",
    ]
    write_results("scaling_train", "Scaling: prepare, train epoch and evaluation, 1 vs 2 processes", rows, notes, Path(args.results))
    from symcere.io import write_json

    write_json(Path(args.results) / "scaling_train_raw.json", records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("metrics", "prepare", "train"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", required=True)
        p.add_argument("--results", default=str(RESULTS))
        p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=[*SIZES, *EXTRA_SIZES])
        p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
        p.add_argument("--memory-limit", default="1GB")
        p.add_argument("--pandas-max", type=int, default=1_000_000)
        p.add_argument("--again", action="store_true")
    w = sub.add_parser("worker")
    for name in ("data", "steps", "eval_users", "out"):
        w.add_argument(name)
    args = ap.parse_args()
    if args.cmd == "worker":
        worker(args.data, int(args.steps), int(args.eval_users), args.out)
    else:
        {"metrics": cmd_metrics, "prepare": cmd_prepare, "train": cmd_train}[args.cmd](args)


if __name__ == "__main__":
    main()
