"""Scaling of LightGCN's training step, epoch and full-ranking validation with the number of interactions.

    flock /tmp/symcere-heavy.lock python benchmarks/bench_scaling.py [--sizes 100000 1000000 5000000]
        [--items 20000] [--steps 20] [--budget 16777216] [--device cpu] [--out benchmarks/results/scaling.md]

Generated data (benchmarks/gen_data.py): a fixed catalogue of ``--items`` items, one user per 20 interactions
on average (at least 5 each), 5-core, chronological split. Each size runs in a child process (its own peak
RSS): ``--steps`` timed training steps after two warm-up steps (2 layers, 64-d, batch 2048); the epoch time is
steps per epoch x the median step (every LightGCN step propagates the whole graph, so the epoch grows with
interactions squared at a fixed batch size, the step linearly); then one full-ranking validation with the
score block bounded by ``--budget`` elements (``eval.max_batch_elements``: no users x items matrix is held).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_child, write_results  # noqa: E402

CHILD = """
import json, sys, time, numpy as np, torch
from symcere.config import load_config
from symcere.data import Dataset
from symcere.evaluation.evaluator import evaluate_split
from symcere.models import build_model
from symcere.training.sampler import InteractionSampler
from symcere.training.seeding import configure_threads
data, steps, budget, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ds = Dataset.load(data)
cfg = load_config("lightgcn", overrides=["model.layers=2", f"train.device={device}"])
model = build_model(ds, cfg, progress=False).to(device)
threads = configure_threads(None, model=model, n_train=int(ds.matrix("train").nnz))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
sampler = InteractionSampler(ds.matrix("train"), 2048, 1)
it = sampler.epoch(np.random.default_rng(0))
times = []
for i in range(steps + 2):
    batch = {k: v.to(device) for k, v in next(it).items()}
    t0 = time.perf_counter()
    loss = model.loss(batch)["total"]
    opt.zero_grad(); loss.backward(); opt.step(); float(loss)
    if i >= 2:
        times.append(time.perf_counter() - t0)
model.eval()
t0 = time.perf_counter()
res = evaluate_split(model.score, ds, "valid", ks=(10, 20), max_batch_elements=budget, device=device)
ev = time.perf_counter() - t0
print(json.dumps({"step_s": float(np.median(times)), "steps_per_epoch": len(sampler), "eval_s": ev,
                  "users": ds.n_users, "items": ds.n_items, "train": int(ds.matrix("train").nnz),
                  "eval_users": res.n_users, "threads": threads}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000, 5_000_000])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--budget", type=int, default=16_777_216)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default=None, help="where the generated datasets are kept (default: a temp dir)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.md"))
    args = ap.parse_args()
    from gen_data import build

    work = Path(args.work or tempfile.mkdtemp(prefix="symcere-scaling-"))
    rows = []
    for n in args.sizes:
        path = build(str(work / f"gen_{n}"), max(1000, n // 20), args.items, n)
        res = run_child([sys.executable, "-c", CHILD, str(path), str(args.steps), str(args.budget), args.device])
        res["interactions"] = n
        res["epoch_s"] = res["step_s"] * res["steps_per_epoch"]
        rows.append(res)
        print(res, flush=True)
    lines = ["| generated interactions | users | items | train | step s | steps/epoch | epoch s (steps x step) "
             "| validation s | eval users | peak RSS MB | threads |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['interactions']:,} | {r['users']:,} | {r['items']:,} | {r['train']:,} | {r['step_s']:.4f} "
                     f"| {r['steps_per_epoch']} | {r['epoch_s']:.1f} | {r['eval_s']:.2f} | {r['eval_users']:,} "
                     f"| {r['peak_rss_mb']:.0f} | {r['threads']} |")
    base = rows[0]
    growth = [f"x{r['interactions'] / base['interactions']:.0f} interactions: step x{r['step_s'] / base['step_s']:.1f}, "
              f"validation x{r['eval_s'] / base['eval_s']:.1f}, RSS x{r['peak_rss_mb'] / base['peak_rss_mb']:.1f}"
              for r in rows[1:]]
    body = "\n".join(lines) + "\n\n" + "; ".join(growth) + (
        f"\n\nScore block: {args.budget:,} elements ({args.budget * 4 / 2**20:.0f} MiB of float32 scores) per batch "
        f"of users; median of {args.steps} steps.")
    write_results(Path(args.out), "Scaling with the number of interactions (LightGCN, generated data)",
                  [("Training step, epoch, validation, memory", body)], {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
