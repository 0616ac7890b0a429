"""SymCERE with a frozen text encoder vs LightGCN: seconds per training epoch on the same data and batch size.

    flock /tmp/symcere-heavy.lock python benchmarks/bench_symcere_epoch.py --data DATASET_DIR [--data ...]
        [--rounds 5] [--epochs 3] [--device cpu] [--profile] [--out benchmarks/results/symcere_epoch.md]

Both models are built once per dataset in this process (SymCERE's default preset, its text cache computed
beforehand and not timed); rounds alternate LightGCN and SymCERE, ``--epochs`` epochs each, with the same
sampler, batch size (SymCERE's 2048) and number of layers (3); each model runs on its default threads
(``symcere.training.seeding.default_threads``) and, as a second row, both on every core. ``--profile`` adds
the operators that take SymCERE's step time (torch.profiler, one epoch).

The floor: SymCERE's step is LightGCN's step plus the cross-modal term, whose (B, U) similarity matrix over the
batch's B interactions and U distinct items costs at least one matrix product forward, two backward and one
exp, whatever the implementation; the bench times exactly those four operations on an epoch's batches (the
same sizes as the training epochs') at SymCERE's threads and reports (LightGCN + floor) / LightGCN: a lower
bound on the ratio as long as LightGCN's own part of SymCERE's step is no faster at SymCERE's threads than
LightGCN at its own (true when the thread defaults are the faster setting, as measured in threads.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, stats, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "symcere_epoch.md"))
    args = ap.parse_args()
    import numpy as np
    import torch

    from symcere.config import load_config
    from symcere.data import Dataset
    from symcere.models import build_model
    from symcere.training.sampler import InteractionSampler
    from symcere.training.seeding import cores, default_threads

    sections, raw = [], {}
    for data in args.data:
        ds = Dataset.load(data)
        n_train = len(ds.split_arrays("train")[0])
        models, threads = {}, {}
        for name, sets in (("lightgcn", ["train.batch_size=2048", "model.layers=3"]), ("symcere", ["text.bf16=true"])):
            cfg = load_config(name, overrides=[*sets, f"train.device={args.device}"])
            torch.manual_seed(0)
            m = build_model(ds, cfg, progress=False).to(args.device)
            opt = torch.optim.Adam(m.parameters(), lr=float(cfg["train"]["lr"]))
            sampler = InteractionSampler(ds.matrix("train"), 2048, m.num_negatives)
            models[name] = (m, opt, sampler)
            threads[name] = default_threads(m, n_train)

        def epoch(name: str, rng: np.random.Generator, ep: int, models: dict = models) -> float:
            m, opt, sampler = models[name]
            m.train()
            t0 = time.perf_counter()
            m.on_epoch_start(ep)
            for batch in sampler.epoch(rng):
                batch = {k: v.to(args.device) for k, v in batch.items()}
                terms = m.loss(batch)
                opt.zero_grad(set_to_none=True)
                terms["total"].backward()
                opt.step()
                for v in terms.values():
                    float(v.detach())
            return time.perf_counter() - t0

        def sync() -> None:
            if torch.device(args.device).type == "cuda":
                torch.cuda.synchronize()

        def floor(rng: np.random.Generator, models: dict = models) -> float:
            """Seconds of the cross-modal term's irreducible arithmetic over one epoch's batches."""
            m, _, sampler = models["symcere"]
            total = 0.0
            for batch in sampler.epoch(rng):
                b, u = len(batch["pos"]), int(torch.unique(batch["pos"]).numel())
                g, t = torch.randn(b, m.encoder.out_dim, device=args.device), torch.randn(u, m.encoder.out_dim, device=args.device)
                sync()
                t0 = time.perf_counter()
                s = torch.mm(g, t.T).exp_()
                torch.mm(s, t), torch.mm(s.T, g)
                sync()
                total += time.perf_counter() - t0
            return total

        rows: dict[str, list[float]] = {}
        rng = np.random.default_rng(0)
        for setting in ("default threads", f"{cores()} threads both"):
            for r in range(args.rounds):
                for name in models:
                    torch.set_num_threads(threads[name] if setting == "default threads" else cores())
                    times = [epoch(name, rng, r * args.epochs + e + 1) for e in range(args.epochs)]
                    rows.setdefault(f"{setting}|{name}", []).append(median(times))
                torch.set_num_threads(threads["symcere"] if setting == "default threads" else cores())
                rows.setdefault(f"{setting}|floor", []).append(median([floor(rng) for _ in range(args.epochs)]))
        lines = ["| threads | LightGCN s/epoch | SymCERE s/epoch | ratio per round, median (min-max) | cross-modal "
                 "floor s/epoch | lower bound on the ratio |", "|---|---|---|---|---|---|"]
        for setting in ("default threads", f"{cores()} threads both"):
            a, b, f = rows[f"{setting}|lightgcn"], rows[f"{setting}|symcere"], rows[f"{setting}|floor"]
            ratios = [y / x for x, y in zip(a, b, strict=True)]
            bounds = [(x + z) / x for x, z in zip(a, f, strict=True)]
            label = setting if setting != "default threads" else (
                f"default (LightGCN {threads['lightgcn']}, SymCERE {threads['symcere']})")
            lines.append(f"| {label} | {stats(a)} | {stats(b)} | {stats(ratios, 2)} | {stats(f)} | {stats(bounds, 2)} |")
        body = "\n".join(lines) + (f"\n\n{ds.n_users} users, {ds.n_items} items, {n_train} training interactions, "
                                   f"batch 2048 ({len(models['symcere'][2])} steps per epoch), {args.rounds} rounds "
                                   f"x {args.epochs} epochs per model.")
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            torch.set_num_threads(threads["symcere"])
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                epoch("symcere", rng, 10_000)
            body += "\n\nSymCERE, one epoch under torch.profiler (self CPU time):\n\n```\n" + prof.key_averages().table(
                sort_by="self_cpu_time_total", row_limit=15) + "\n```"
        sections.append((Path(data).name, body))
        raw[data] = {"rounds": rows, "threads": threads}
        print(json.dumps({k: median(v) for k, v in rows.items()}), flush=True)
    write_results(Path(args.out), "SymCERE (frozen text) vs LightGCN: training epoch", sections,
                  {"args": vars(args), "results": raw})


if __name__ == "__main__":
    main()
