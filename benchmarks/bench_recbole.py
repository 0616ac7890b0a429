"""symcere vs RecBole 1.2.1: LightGCN train epoch, full-ranking validation and peak RSS on the identical split.

    flock /tmp/symcere-heavy.lock python benchmarks/bench_recbole.py [--data DATASET_DIR ...] [--generated]
        [--rounds 3] [--epochs 5] [--device cpu] [--venv DIR] [--out benchmarks/results/recbole.md]

RecBole is installed (once) into its own virtual environment ``--venv`` (default
``$SYMCERE_CACHE/bench/recbole-1.2.1``): the same torch version as symcere's, recbole==1.2.1 without its
optional dependencies (ray, plotly), pandas < 3 (in pandas 3 its in-place ``fillna`` silently does nothing);
benchmarks/recbole_side.py applies the numpy 2 / scipy 1.13 / torch 2.6 shims. Each dataset is exported with
``symcere.data.export.export_recbole`` (the identical split). Settings of both sides: LightGCN, 64-d,
2 layers, batch 2048, 1 uniform negative, Adam 1e-3, L2 1e-4, full-sort validation every epoch (HR, NDCG,
Recall, Precision, MRR at 10 and 20), a score block of 16,777,216 elements, ``--epochs`` epochs.

Rounds alternate the two sides (symcere, RecBole, symcere, RecBole, ...), each side in its own child process
(its own peak RSS); symcere runs with its default threads, RecBole with torch's default. Reported per round:
median epoch seconds (epochs 2..n: the first epoch warms up), median validation seconds, peak RSS, whole
process seconds, and the symcere / RecBole ratios; then the median and min-max of the ratios over rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, run_child, stats, write_results  # noqa: E402

SIDE = Path(__file__).resolve().parent / "recbole_side.py"

SYMCERE_CHILD = """
import json, sys, tempfile, time
t_start = time.perf_counter()
import symcere
from symcere.data import Dataset
from symcere.training.trainer import Trainer
from symcere.config import load_config
from symcere.models import build_model
data, epochs, device = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ds = Dataset.load(data)
cfg = load_config("lightgcn", overrides=[
    "model.layers=2", "model.dim=64", "train.batch_size=2048", "train.lr=0.001", "train.reg=0.0001",
    "train.num_negatives=1", f"train.max_epochs={epochs}", "train.eval_every_steps=1",
    "train.patience_steps=1000000", f"train.device={device}", "eval.max_batch_elements=16777216"])
from symcere.training.seeding import seed_everything
with tempfile.TemporaryDirectory() as tmp:
    seed_everything(int(cfg["seed"]))  # as symcere train does: the reported validation NDCG is reproducible
    model = build_model(ds, cfg, progress=False)
    trainer = Trainer(model, ds, cfg, tmp + "/run", progress=False)
    res = trainer.fit()
    log = [json.loads(l) for l in open(tmp + "/run/log.jsonl")]
import torch
print(json.dumps({"side": "symcere", "epoch_seconds": [r["seconds"] for r in log],
                  "eval_seconds": [r["eval_seconds"] for r in log], "valid": log[-1]["valid"],
                  "threads": torch.get_num_threads(), "n_users": ds.n_users, "n_items": ds.n_items}))
"""


def recbole_python(venv: Path) -> Path:
    """The RecBole environment's interpreter, installed on first use."""
    py = venv / "bin" / "python"
    if py.exists():
        return py
    import torch

    torch_version = torch.__version__.split("+")[0]
    print(f"installing RecBole 1.2.1 into {venv} (torch {torch_version}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"torch=={torch_version}"], check=True)
    subprocess.run([*pip, "--no-deps", "recbole==1.2.1"], check=True)
    deps = ["numpy<3", "scipy", "pandas<3", "tqdm", "colorlog==4.7.2", "colorama==0.4.4", "scikit-learn", "pyyaml",
            "tabulate", "texttable", "psutil", "thop", "tensorboard"]
    subprocess.run([*pip, *deps], check=True)
    return py


def bench_dataset(data: str, rb_python: Path, rounds: int, epochs: int, device: str, work: Path) -> dict:
    from symcere.data import Dataset
    from symcere.data.export import export_recbole

    ds = Dataset.load(data)
    name = "bench"
    export_recbole(data, work / name, name, force=True)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    out = {"data": data, "stats": ds.meta["stats"], "rounds": []}
    for _ in range(rounds):
        ours = run_child([sys.executable, "-c", SYMCERE_CHILD, data, str(epochs), device], env=env)
        theirs = run_child([str(rb_python), str(SIDE), str(work), name, "--epochs", str(epochs), "--device", device],
                           env=env, cwd=str(work))
        row = {}
        for key, side in (("symcere", ours), ("recbole", theirs)):
            row[key] = {
                "epoch_s": median(side["epoch_seconds"][1:] or side["epoch_seconds"]),
                "eval_s": median(side["eval_seconds"][1:] or side["eval_seconds"]),
                "peak_rss_mb": side["peak_rss_mb"],
                "process_s": side["process_seconds"],
                "threads": side["threads"],
                "valid_ndcg@10": side["valid"].get("ndcg@10"),
                "raw": side,
            }
        for k in ("epoch_s", "eval_s", "peak_rss_mb", "process_s"):
            row[f"ratio {k}"] = row["symcere"][k] / row["recbole"][k]
        out["rounds"].append(row)
        print({k: round(v, 3) for k, v in row.items() if k.startswith("ratio")}, flush=True)
    return out


def render(result: dict) -> str:
    s = result["stats"]
    lines = [f"`{result['data']}`: {s['users']} users, {s['items']} items, {s['interactions']} interactions "
             f"({s['splits']['train']} train)", "",
             "| round | symcere epoch s | RecBole epoch s | ratio | symcere eval s | RecBole eval s | ratio "
             "| symcere RSS MB | RecBole RSS MB | ratio | process ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(result["rounds"], 1):
        a, b = r["symcere"], r["recbole"]
        lines.append(f"| {i} | {a['epoch_s']:.4f} | {b['epoch_s']:.4f} | {r['ratio epoch_s']:.2f} | {a['eval_s']:.4f} "
                     f"| {b['eval_s']:.4f} | {r['ratio eval_s']:.2f} | {a['peak_rss_mb']:.0f} | {b['peak_rss_mb']:.0f} "
                     f"| {r['ratio peak_rss_mb']:.2f} | {r['ratio process_s']:.2f} |")
    for k in ("epoch_s", "eval_s", "peak_rss_mb", "process_s"):
        lines.append(f"\nratio {k} (symcere / RecBole), median (min-max) over rounds: "
                     f"{stats([r[f'ratio {k}'] for r in result['rounds']], 3)}")
    r0 = result["rounds"][0]
    lines.append(f"\nthreads: symcere {r0['symcere']['threads']}, RecBole {r0['recbole']['threads']}; validation "
                 f"NDCG@10 after the last epoch: symcere {r0['symcere']['valid_ndcg@10']:.4f}, RecBole "
                 f"{r0['recbole']['valid_ndcg@10']:.4f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="*", default=[], help="dataset directories (symcere prepare)")
    ap.add_argument("--generated", action="store_true", help="also the generated Amazon-Beauty-scale set")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--venv", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "recbole.md"))
    args = ap.parse_args()
    from symcere.text.models import default_cache_dir

    venv = Path(args.venv or Path(default_cache_dir()) / "bench" / "recbole-1.2.1")
    rb = recbole_python(venv)
    work = Path(tempfile.mkdtemp(prefix="symcere-recbole-"))
    datasets = list(args.data)
    if args.generated:
        from gen_data import build

        datasets.append(str(build(str(work / "generated"), 24000, 13000, 160000)))
    results = [bench_dataset(d, rb, args.rounds, args.epochs, args.device, work) for d in datasets]
    sections = [(Path(r["data"]).name, render(r)) for r in results]
    write_results(Path(args.out), "LightGCN: symcere vs RecBole 1.2.1", sections,
                  {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
