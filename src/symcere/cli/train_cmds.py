"""``symcere train | evaluate | recommend | quickstart``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from symcere.errors import SymcereError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML config file(s)")
    p.add_argument("--preset", default=None, help="a shipped preset of the model (e.g. 'paper')")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="dotted override, e.g. --set train.lr=5e-4 (repeatable)",
    )
    p.add_argument("--seed", type=int, default=None, help="shortcut for --set seed=N")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a dataset directory")
    p.add_argument("--model", required=True, help="mf, lightgcn, ngcf, neumf, sgl, dgclr, symcere")
    p.add_argument("--data", required=True, help="dataset directory (symcere prepare / data synth)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="re-evaluate a saved run")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20])
    p.add_argument("--data", default=None, help="dataset directory if it moved since training")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("recommend", help="write top-K recommendations of a trained run")
    p.add_argument("run_dir")
    p.add_argument("--k", type=int, default=10)
    who = p.add_mutually_exclusive_group()
    who.add_argument("--users", default=None, help="file with one ORIGINAL user id per line")
    who.add_argument("--all", action="store_true", help="every user (the default)")
    p.add_argument(
        "--exclude-seen",
        choices=("train", "train+valid", "all"),
        default="train+valid",
        help="interactions never recommended again (default: what the model trained or validated on)",
    )
    p.add_argument("--out", required=True, help="output TSV (user, item, rank, score)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--data", default=None, help="dataset directory if it moved since training")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("quickstart", help="the main job: built-in dataset, LightGCN vs SymCERE, results table")
    p.add_argument("--workdir", default="symcere-quickstart", help="where data and runs go")
    p.add_argument("--models", nargs="+", default=["lightgcn", "symcere"])
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_quickstart)


def _resolve(args: argparse.Namespace, model: str):
    from symcere.config import load_config

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    return load_config(model, preset=args.preset, files=args.config, overrides=overrides)


def _summary_rows(name: str, result) -> dict:
    row = {"model": name, "status": result.status}
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        for key in ("hr@10", "ndcg@10"):
            row[f"{split} {key}"] = metrics.get(key)
    row.update({"epochs": result.epochs, "s/epoch": result.seconds_per_epoch})
    return row


def cmd_train(args: argparse.Namespace) -> int:
    from symcere.data import Dataset
    from symcere.tables import markdown_table
    from symcere.training.run import train

    cfg = _resolve(args, args.model)
    dataset = Dataset.load(args.data)
    result = train(dataset, cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(markdown_table([_summary_rows(args.model, result)]))
    if result.status == "diverged":
        print(
            f"symcere: training diverged: {result.message}; recorded in {Path(args.out) / 'metrics.json'}",
            file=sys.stderr,
        )
        return 3
    print(f"run saved in {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    import torch

    from symcere.evaluation.evaluator import evaluate_split
    from symcere.tables import markdown_table
    from symcere.training.run import load_run

    model, dataset, cfg, _ = load_run(args.run_dir, args.data)
    with torch.no_grad():
        res = evaluate_split(
            model.score,
            dataset,
            args.split,
            ks=tuple(args.k),
            max_batch_elements=int(cfg["eval"]["max_batch_elements"]),
            progress=True,
        )
    if args.json:
        print(json.dumps(res.metrics, indent=2))
    else:
        print(markdown_table([{"metric": k, args.split: v} for k, v in res.metrics.items()]))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from symcere.evaluation.evaluator import topk_items
    from symcere.training.run import load_run

    out = Path(args.out)
    if out.exists() and not args.force:
        raise SymcereError(f"{out} exists; pass --force to overwrite it")
    model, dataset, cfg, _ = load_run(args.run_dir, args.data)
    splits = {"train": ["train"], "train+valid": ["train", "valid"], "all": ["train", "valid", "test"]}
    seen = sum(dataset.matrix(s) for s in splits[args.exclude_seen])
    if args.users:
        index = {u: i for i, u in enumerate(dataset.user_ids)}
        wanted, unknown = [], []
        try:
            lines = Path(args.users).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SymcereError(f"cannot read the --users file {args.users}: {exc}") from None
        for n, line in enumerate(lines, 1):
            uid = line.strip()
            if uid:
                (wanted.append(index[uid]) if uid in index else unknown.append(f"{uid} (line {n})"))
        if unknown:
            raise SymcereError(
                f"{args.users}: unknown user ids: {', '.join(unknown[:5])}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            )
        users = np.array(wanted, dtype=np.int64)
    else:
        users = np.arange(dataset.n_users, dtype=np.int64)
    with torch.no_grad():
        items, scores = topk_items(
            model.score,
            seen.tocsr(),
            torch.from_numpy(users),
            args.k,
            max_batch_elements=int(cfg["eval"]["max_batch_elements"]),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("user\titem\trank\tscore\n")
        for row, u in enumerate(users):
            for rank in range(items.shape[1]):
                s = float(scores[row, rank])
                if s == float("-inf"):
                    continue  # fewer than k candidates left for this user
                fh.write(f"{dataset.user_ids[u]}\t{dataset.item_ids[int(items[row, rank])]}\t{rank + 1}\t{s:.6f}\n")
    tmp.replace(out)
    print(f"wrote top-{args.k} lists for {len(users)} users to {out}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from symcere.experiments.quickstart import run_quickstart

    return run_quickstart(Path(args.workdir), args.models, progress=not args.quiet)
