"""Contrastive losses computed the short way vs their definition: symmetric InfoNCE from one similarity
matrix (forward + backward, and the DGCLR epoch that spends most of its step in it) and the in-batch sampled
softmax over the batch's distinct positives (the LightGCN-SSM and NGCF-SSM epochs).

    flock /tmp/symcere-heavy.lock python benchmarks/bench_contrastive.py [--data DATASET_DIR]
        [--rounds 5] [--device cpu] [--out benchmarks/results/contrastive.md]

``symcere.losses.symmetric_info_nce`` (DGCLR's two contrastive terms over its K channels at once, and what
``cross_modal_loss("infonce", ...)`` runs: SymCERE's user-profile term and its "MM w/ InfoNCE" ablation) against
``0.5 * (info_nce(a, b) + info_nce(b, a))``, the definition it replaces (two matrix products, two exps and
autograd through both, one channel at a time). Rounds alternate the two in one process; the kernel rows use
L2-normalised random (B, d) or (K, B, d) inputs, tau 0.2; the DGCLR row trains one epoch of DGCLR (its defaults, seeded random review features
so no text encoder is timed) on ``--data`` with each implementation patched in. The SSM rows train one epoch
of LightGCN and NGCF with ``loss.rec=ssm`` (defaults otherwise) with ``sampled_softmax_items`` ((B, U) over
the distinct positives) and with ``sampled_softmax`` on the (B, B) batch and the same-item mask.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, stats, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="a dataset directory for the DGCLR epoch row (optional)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "contrastive.md"))
    args = ap.parse_args()
    import torch

    from symcere import losses
    from symcere.training.seeding import default_threads

    device = torch.device(args.device)
    torch.set_num_threads(default_threads())

    def definition(a: torch.Tensor, b: torch.Tensor, tau: float, reduction: str = "mean") -> torch.Tensor:
        """Eq. 4 both ways, one (B, d) problem at a time (a leading dimension, e.g. DGCLR's channels, looped)."""
        flat = zip(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]), strict=True)
        rows = [0.5 * (losses.info_nce(x, y, tau, "none") + losses.info_nce(y, x, tau, "none")) for x, y in flat]
        per_row = torch.stack(rows).reshape(a.shape[:-1])
        return per_row if reduction == "none" else per_row.mean() if reduction == "mean" else per_row.sum()

    sides = {"definition": definition, "one matrix": losses.symmetric_info_nce}
    rows, data = [], {"kernel": [], "dgclr": None, "threads": torch.get_num_threads()}
    for k, b, d in ((1, 512, 64), (1, 2048, 16), (1, 2048, 64), (4, 2048, 16)):  # K: DGCLR's channels
        gen = torch.Generator().manual_seed(0)
        shape = (b, d) if k == 1 else (k, b, d)
        x = losses.l2_normalize(torch.randn(*shape, generator=gen)).to(device).requires_grad_(True)
        y = losses.l2_normalize(torch.randn(*shape, generator=gen)).to(device).requires_grad_(True)
        times: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.rounds):
            for name, fn in sides.items():
                fn(x, y, 0.2).backward()  # warm-up
                start = time.perf_counter()
                for _ in range(5):
                    fn(x, y, 0.2).backward()
                times[name].append((time.perf_counter() - start) / 5)
        ratios = [n / o for n, o in zip(times["one matrix"], times["definition"], strict=True)]
        data["kernel"].append({"K": k, "B": b, "d": d, **times, "ratio": ratios})
        rows.append(f"| {'' if k == 1 else f'{k} x '}{b} x {d} | {stats(times['definition'])} | {stats(times['one matrix'])} | {stats(ratios, 3)} |")
    body = "\n".join([
        "| (K x) B x d | definition s | one matrix s | ratio per round, median (min-max) |", "|---|---|---|---|", *rows])
    sections = [("forward + backward", body + f"\n\n{args.rounds} rounds x 5 calls, threads {data['threads']}.")]

    if args.data:
        from symcere.config import load_config
        from symcere.data import Dataset

        ds = Dataset.load(args.data)
        cfg = load_config("dgclr", overrides=["model.text_features=random", f"train.device={args.device}"])
        shipped = losses.symmetric_info_nce
        patched = {"definition": definition, "one matrix": shipped}
        epoch: dict[str, list[float]] = {k: [] for k in patched}
        try:
            for _ in range(args.rounds):
                for name, fn in patched.items():
                    losses.symmetric_info_nce = fn
                    epoch[name].append(_train_epoch(ds, cfg, args.device))
        finally:
            losses.symmetric_info_nce = shipped
        ratios = [n / o for n, o in zip(epoch["one matrix"], epoch["definition"], strict=True)]
        data["dgclr"] = {"data": args.data, "n_users": ds.n_users, "n_items": ds.n_items, **epoch, "ratio": ratios}
        sections.append(("DGCLR training epoch", "\n".join([
            "| definition s/epoch | one matrix s/epoch | ratio per round, median (min-max) |", "|---|---|---|",
            f"| {stats(epoch['definition'])} | {stats(epoch['one matrix'])} | {stats(ratios, 3)} |", "",
            f"`{args.data}`: {ds.n_users} users, {ds.n_items} items, batch {cfg['train']['batch_size']}, "
            f"{-(-len(ds.split_arrays('train')[0]) // int(cfg['train']['batch_size']))} steps per epoch, {args.rounds} rounds; median ratio {median(ratios):.3f}."])))
        sections.append(("SSM training epoch", _ssm_epochs(args, ds, data)))
    write_results(Path(args.out), "Contrastive losses: the short way vs the definition", sections, data)


def _ssm_epochs(args: argparse.Namespace, ds: object, data: dict) -> str:
    import torch

    from symcere import losses
    from symcere.config import load_config

    shipped = losses.sampled_softmax_items

    def batch_form(u, t, item_of, tau, *, mask_copies=True, reduction="mean"):  # the (B, B) definition
        mask = losses.same_item_mask(item_of) if mask_copies else None
        return losses.sampled_softmax(u, t[item_of], tau, exclude_mask=mask, normalize=False, reduction=reduction)

    lines = ["| model | (B, B) batch s/epoch | distinct items s/epoch | ratio per round, median (min-max) |",
             "|---|---|---|---|"]
    data["ssm"] = {}
    try:
        for model in ("lightgcn", "ngcf"):
            cfg = load_config(model, overrides=["loss.rec=ssm", f"train.device={args.device}"])
            epoch: dict[str, list[float]] = {"batch": [], "distinct": []}
            for _ in range(args.rounds):
                for name, fn in (("batch", batch_form), ("distinct", shipped)):
                    losses.sampled_softmax_items = fn
                    epoch[name].append(_train_epoch(ds, cfg, args.device))
            ratios = [d / b for d, b in zip(epoch["distinct"], epoch["batch"], strict=True)]
            data["ssm"][model] = {**epoch, "ratio": ratios}
            lines.append(f"| {model} | {stats(epoch['batch'])} | {stats(epoch['distinct'])} | {stats(ratios, 3)} |")
    finally:
        losses.sampled_softmax_items = shipped
    return "\n".join(lines) + f"\n\nbatch 2048, threads {torch.get_num_threads()}, {args.rounds} rounds."


def _train_epoch(ds: object, cfg: dict, device: str) -> float:
    """Seconds of one seeded training epoch of ``cfg``'s model on ``ds`` (batches built before timing)."""
    import numpy as np
    import torch

    from symcere.models import build_model
    from symcere.training.sampler import InteractionSampler

    torch.manual_seed(0)
    model = build_model(ds, cfg, progress=False).to(device).train()
    sampler = InteractionSampler(ds.matrix("train"), int(cfg["train"]["batch_size"]), 1)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["train"]["lr"]))
    batches = [{k: v.to(device) for k, v in b.items()} for b in sampler.epoch(np.random.default_rng(0))]
    start = time.perf_counter()
    for b in batches:
        opt.zero_grad()
        model.loss(b)["total"].backward()
        opt.step()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
