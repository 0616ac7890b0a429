"""``symcere experiment PLAN.yaml`` (datasets x models x seeds, tuning, tables) and ``symcere experiment-tables``."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="run an experiment plan (datasets x models x seeds, fair tuning, paper tables); resumable",
        description="Run every run of a plan file, skipping finished ones, then write out/tables/.",
    )
    p.add_argument("plan", help="plan YAML file (see experiments/*.yaml)")
    p.add_argument("--out", default=None, help="output dir (default: the plan's 'out', else runs/<name>)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; train nothing")
    p.add_argument("--only-datasets", nargs="+", metavar="NAME", help="run only these datasets of the plan")
    p.add_argument("--only-models", nargs="+", metavar="LABEL", help="run only these model labels of the plan")
    p.add_argument("--tables-only", action="store_true", help="only re-write the tables from finished runs")
    p.add_argument("--std", action="store_true", help="show mean ± std in the Markdown / LaTeX tables")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(func=cmd_experiment)

    t = sub.add_parser("experiment-tables", help="re-write the tables of a plan's output dir from its finished runs")
    t.add_argument("out", help="the plan's output dir (holds plan.json and runs/)")
    t.add_argument("--std", action="store_true", help="show mean ± std in the Markdown / LaTeX tables")
    t.set_defaults(func=cmd_tables)


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

        _print_tables(write_tables(plan.out, show_std=args.std))
        return 0
    from symcere.experiments.runner import run_plan

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


def cmd_tables(args: argparse.Namespace) -> int:
    from symcere.experiments.report_tables import write_tables

    _print_tables(write_tables(args.out, show_std=args.std))
    return 0
