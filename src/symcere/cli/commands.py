"""One function per ``symcere`` sub-command, in pipeline order: each takes the parsed arguments
(:mod:`symcere.cli.parser`), calls library code, prints the result and returns the exit status.

Heavy modules (torch, the models, the trainers) are imported inside the functions, so building the parser
stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from symcere.errors import SymcereError

_PROGRESS_BYTES = 20_000_000  # `prepare` shows a progress bar when the inputs are larger than this


# --------------------------------------------------------------------------------------------------- data


def stats_markdown(stats: dict[str, Any], name: str = "") -> str:
    """Table-1 statistics as a two-column Markdown table."""
    splits = stats.get("splits", {})
    no_train = stats.get("users_without_train", {})
    rows: list[tuple[str, str]] = [
        ("dataset", name),
        ("records read", f"{stats['records_read']:,}"),
        ("duplicates removed", f"{stats['duplicates_removed']:,}"),
        ("removed by k-core", f"{stats['removed_by_kcore']:,}"),
        ("users", f"{stats['users']:,}"),
        ("items", f"{stats['items']:,}"),
        ("interactions", f"{stats['interactions']:,}"),
        ("density", f"{100 * stats['density']:.3f} %"),
        ("train / valid / test", " / ".join(f"{splits.get(s, 0):,}" for s in ("train", "valid", "test"))),
        ("empty review texts", f"{stats['empty_texts']:,}"),
        ("mean review length (chars)", f"{stats['mean_review_length']:.1f}"),
        ("users without training item", f"{no_train.get('count', 0):,}"),
        ("items without training item", f"{stats.get('items_without_train', 0):,}"),
    ]
    if no_train.get("count"):
        more = " ..." if no_train["count"] > len(no_train.get("ids", [])) else ""
        rows.append(("  their ids", ", ".join(no_train.get("ids", [])) + more))
    lines = ["| statistic | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows if v != ""]
    return "\n".join(lines)


def _progress(records: Iterator[Any], paths: list[str]) -> Iterator[Any]:
    size = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    if size < _PROGRESS_BYTES:
        return records
    from tqdm import tqdm

    return iter(tqdm(records, desc="reading", unit=" reviews", file=sys.stderr, mininterval=1.0))


def cmd_prepare(args: argparse.Namespace) -> int:
    from symcere.data.preprocess import build_dataset
    from symcere.data.readers import ReadReport, parse_columns, read_reviews
    from symcere.resources import disk_errors

    columns = parse_columns(args.columns) if args.columns else None
    name = args.name or Path(args.out).name
    report = ReadReport()
    on_bad = getattr(args, "on_bad_record", "error")
    records = _progress(read_reviews(args.input, args.format, columns, on_bad_record=on_bad, report=report), args.input)
    with disk_errors("prepare", f"nothing was written at {args.out}"):
        out = build_dataset(
            records,
            args.out,
            name=name,
            k_core=args.k_core,
            user_k=args.user_k,
            item_k=args.item_k,
            ratios=args.ratios,
            text_budget=args.text_budget,
            extra_meta={
                "source": {
                    "inputs": [Path(p).name for p in args.input],
                    "format": args.format,
                    "columns": columns,
                    "on_bad_record": on_bad,
                }
            },
            overwrite=args.overwrite,
            report=report,
            engine=getattr(args, "engine", "auto"),
            memory_limit=getattr(args, "memory_limit", None),
        )
    for note in report.notes:
        print(f"symcere: note: {note}", file=sys.stderr)
    if report.skipped:
        print(f"symcere: {report.summary()}", file=sys.stderr)
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    print(f"wrote {out}\n")
    print(stats_markdown(meta["stats"], name))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from symcere.data.dataset import read_meta

    meta = read_meta(args.dir)
    if args.json:
        print(json.dumps(meta["stats"], indent=2))
    else:
        print(stats_markdown(meta["stats"], meta.get("name", "")))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    from symcere.data.synthetic import SynthConfig, make_synthetic_dataset, parse_overrides

    base = SynthConfig.tiny() if args.preset == "tiny" else SynthConfig()
    cfg = parse_overrides(args.set, base)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    t0 = time.time()
    out = make_synthetic_dataset(
        args.out, cfg, overwrite=args.overwrite, name=args.name or Path(args.out).name, k_core=args.k_core
    )
    stats = json.loads((out / "dataset.json").read_text(encoding="utf-8"))["stats"]
    splits = stats["splits"]
    print(
        f"wrote {out} in {time.time() - t0:.1f}s: {stats['users']:,} users, {stats['items']:,} items, "
        f"{stats['interactions']:,} interactions (train/valid/test "
        f"{splits['train']:,}/{splits['valid']:,}/{splits['test']:,})"
    )
    return 0


def cmd_export_recbole(args: argparse.Namespace) -> int:
    from symcere.data.export import export_recbole

    for path in export_recbole(args.dir, args.out, args.name, force=args.force):
        print(path)
    return 0


# --------------------------------------------------------------------- train, evaluate, recommend, quickstart


def _summary_rows(name: str, result) -> dict:
    row = {"model": name, "status": result.status}
    for split, metrics in (("valid", result.valid), ("test", result.test)):
        for key in ("hr@10", "ndcg@10"):
            row[f"{split} {key}"] = metrics.get(key)
    row.update({"epochs": result.epochs, "s/epoch": result.seconds_per_epoch})
    return row


def cmd_config(args: argparse.Namespace) -> int:
    from symcere.config import describe, dump, load_config

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(args.model, preset=args.preset, files=args.config, overrides=overrides)
    print(dump(cfg) if args.yaml else describe(cfg), end="")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from symcere.api import fit
    from symcere.config import as_layer, load_config
    from symcere.data import Dataset
    from symcere.resources import check_memory, disk_errors
    from symcere.tables import markdown_table

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    dataset = Dataset.load(args.data)
    if not getattr(args, "no_memory_check", False):
        check_memory(
            load_config(args.model, preset=args.preset, files=args.config, overrides=as_layer(overrides)), dataset
        )
    with disk_errors("training", f"resume the run with `symcere train --resume --out {args.out} ...`"):
        run = fit(
            dataset,
            args.model,
            preset=args.preset,
            config=overrides,
            files=args.config,
            out=args.out,
            resume=args.resume,
            progress=not args.quiet,
        )
    result = run.result
    from symcere.training import distributed

    if not distributed.is_main():  # torchrun: rank 0 reports for every rank
        return 3 if result.status == "diverged" else 0
    print(markdown_table([_summary_rows(args.model, result)]))
    if result.status == "diverged":
        print(
            f"symcere: training diverged: {result.message}; recorded in {Path(args.out) / 'metrics.json'}",
            file=sys.stderr,
        )
        return 3
    if result.warning:
        print(f"symcere: warning: {result.warning}", file=sys.stderr)
    print(f"run saved in {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from symcere.api import Run
    from symcere.tables import markdown_table

    metrics = Run.load(args.run_dir, args.data).evaluate(args.split, ks=args.k, progress=True)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(markdown_table([{"metric": k, args.split: v} for k, v in metrics.items()]))
    return 0


def _read_user_ids(path: str) -> list[tuple[int, str]]:
    """``(line number, original user id)`` per non-blank line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SymcereError(f"cannot read the --users file {path}: {exc}") from None
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def cmd_recommend(args: argparse.Namespace) -> int:
    from symcere.api import Run
    from symcere.data.records import printable
    from symcere.io import write_text

    out = Path(args.out)
    if out.exists() and not args.force:
        raise SymcereError(f"{out} exists; pass --force to overwrite it")
    run = Run.load(args.run_dir, args.data)
    users = None
    if args.users:
        numbered = _read_user_ids(args.users)
        known = set(run.dataset.user_ids)
        unknown = [f"{printable(u)} (line {n})" for n, u in numbered if u not in known]
        if unknown:
            raise SymcereError(
                f"{args.users}: unknown user ids: {', '.join(unknown[:5])}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            )
        users = [u for _, u in numbered]
    recs = run.recommend(users, k=args.k, exclude=args.exclude_seen)
    lines = ["user\titem\trank\tscore\n"]
    lines += [f"{u}\t{i}\t{r}\t{s:.6f}\n" for u, i, r, s in recs.itertuples(index=False)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, "".join(lines))
    n_users = run.dataset.n_users if users is None else len(users)
    print(f"wrote top-{args.k} lists for {n_users} users to {out}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from symcere.api import Run
    from symcere.extras import require
    from symcere.serving import Service
    from symcere.serving.app import serve

    require("fastapi", "symcere serve")
    require("uvicorn", "symcere serve")
    if not 0 <= args.port <= 65535:
        raise SymcereError(f"--port must be in [0, 65535], got {args.port}")
    run = Run.load(args.run_dir, args.data, device=args.device)
    service = Service(run, ann_threshold=args.ann_threshold, ann_kind=args.ann_index)
    serve(service, host=args.host, port=args.port)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from symcere.api import Run

    run = Run.load(args.run_dir, args.data)
    written = run.export_embeddings(args.out, args.format, force=args.force)
    print(f"wrote {len(written)} files to {args.out}: {', '.join(p.name for p in written)}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from symcere.experiments.quickstart import run_quickstart

    return run_quickstart(Path(args.workdir), args.models, progress=not args.quiet)


# ------------------------------------------------------------------------------------------- experiments


def _print_tables(written: list) -> None:
    for path in written:
        if path.name == "table2.md":
            print(path.read_text(encoding="utf-8"))
    print("\n".join(f"wrote {p}" for p in written))


def cmd_experiment(args: argparse.Namespace) -> int:
    from symcere.experiments.plan import load_plan

    plan = load_plan(args.plan, args.out)
    if args.tables_only:
        from symcere.experiments.report_tables import write_tables
        from symcere.io import write_json

        summary = plan.out / "plan.json"
        try:
            saved = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else {}
        except (OSError, ValueError):
            saved = {}
        if isinstance(saved, dict) and saved.get("plan_file") == str(plan.file):  # the same plan, as written now
            write_json(summary, plan.summary())
        _print_tables(write_tables(plan.out, show_std=args.std))
        return 0
    from symcere.experiments.runner import run_plan
    from symcere.resources import disk_errors

    with disk_errors("the experiment", "run the same command again to continue (finished runs are kept)"):
        summary = run_plan(
            plan,
            only_datasets=args.only_datasets,
            only_models=args.only_models,
            dry_run=args.dry_run,
            quiet=args.quiet,
            show_std=args.std,
        )
    if args.dry_run:
        return 0
    if not args.quiet:
        _print_tables(summary["tables"])
    if summary["failed"]:
        print(f"symcere: {len(summary['failed'])} runs failed: {', '.join(summary['failed'])}", file=sys.stderr)
        return 1
    return 0


def cmd_experiment_tables(args: argparse.Namespace) -> int:
    from symcere.experiments.report_tables import write_tables

    _print_tables(write_tables(args.out, show_std=args.std))
    if args.archive:
        from symcere.experiments.archive import archive

        files = archive(args.out, args.archive)
        print(f"archived {len(files)} files to {args.archive}")
    return 0


# ------------------------------------------------------------------------------------------------ analyze


def cmd_curves(args: argparse.Namespace) -> int:
    from symcere.analysis.curves import write_curves

    for path in write_curves(args.run_dirs, args.out, args.labels):
        print(path)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from symcere.analysis.report import AnalyzeOptions, analyze

    if args.lime_samples < 0 or args.lime_perturbations < 2 or args.pairs < 1:
        raise SymcereError("--lime-samples must be >= 0, --lime-perturbations >= 2 and --pairs >= 1")
    opts = AnalyzeOptions(
        seed=args.seed,
        n_pairs=args.pairs,
        lime=not args.no_lime,
        lime_samples=args.lime_samples,
        lime_perturbations=args.lime_perturbations,
        projection=args.projection,
        data_dir=args.data,
        progress=not args.quiet,
    )
    from symcere.locks import locked, remove_leftovers, temp_leftovers
    from symcere.resources import disk_errors

    with disk_errors("analyze"), locked(args.out, "analysis directory"):
        remove_leftovers(temp_leftovers(args.out))  # what a killed analyze left half-written
        res = analyze(args.run_dirs, args.out, opts)
    print(f"report: {res['report_md']}")
    print(f"        {res['report_html']}")
    for r in res["runs"]:
        if r.anchoring is not None:
            a = r.anchoring
            print(f"LIME {r.label}: {a['n']} interactions x {a['perturbations']} perturbations in {a['seconds']:.1f} s")
    print(f"total {res['seconds']:.1f} s")
    return 0
