"""Data sub-commands: ``symcere prepare``, ``symcere data stats``, ``symcere data export-recbole``.

Extending ``symcere data``: :func:`register` stores the ``data`` sub-parsers object in
:data:`DATA_SUBPARSERS`. Another module adds a sub-command with :func:`add_data_subcommand` (returns the
new parser; set ``func`` on it), either by calling it from a hook registered with
:func:`register_data_command` (``fn(add_data_subcommand)``, run now if the parser exists, else when it is
built), or by being listed in :data:`DATA_EXTENSION_MODULES`: each such module, when importable, must define
``register_data(add_data_subcommand)``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from symcere.errors import SymcereError

DATA_SUBPARSERS: Any = None  # argparse sub-parsers action of ``symcere data`` (set by register)
DATA_EXTENSION_MODULES: tuple[str, ...] = ("symcere.cli.synth_cmds",)
_HOOKS: list[Callable[[Callable[..., argparse.ArgumentParser]], None]] = []
_PROGRESS_BYTES = 20_000_000  # show a progress bar when the inputs are larger than this


def add_data_subcommand(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Add ``symcere data NAME``; returns its parser (the caller sets ``func`` via ``set_defaults``)."""
    if DATA_SUBPARSERS is None:
        raise RuntimeError("symcere.cli.data_cmds.register() has not built the `data` parser yet")
    return DATA_SUBPARSERS.add_parser(name, help=help, description=help, **kwargs)


def register_data_command(fn: Callable[[Callable[..., argparse.ArgumentParser]], None]) -> Callable[..., None]:
    """Register ``fn(add_data_subcommand)`` to add ``data`` sub-commands (usable as a decorator)."""
    _HOOKS.append(fn)
    if DATA_SUBPARSERS is not None:
        fn(add_data_subcommand)
    return fn


def register(subparsers: Any) -> None:
    """Add ``prepare`` and ``data {stats,export-recbole,...}`` to the top-level ``symcere`` parser."""
    global DATA_SUBPARSERS
    from symcere.data.readers import FORMATS

    p = subparsers.add_parser(
        "prepare", help="raw review files -> dataset directory", description="Preprocess raw review files."
    )
    p.add_argument("--input", nargs="+", required=True, metavar="FILE", help="input files (.gz / .zip ok)")
    p.add_argument("--format", default="auto", choices=FORMATS, help="source format (default: auto)")
    p.add_argument("--columns", help="table mapping, e.g. user=uid,item=iid,time=ts,rating=r,text=body,title=t")
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--name", help="dataset name (default: the --out directory name)")
    p.add_argument("--k-core", type=int, default=5, help="k for users and items, 0 = off (default 5)")
    p.add_argument("--user-k", type=int, help="k for users (default: --k-core)")
    p.add_argument("--item-k", type=int, help="k for items (default: --k-core)")
    p.add_argument("--ratios", default="0.8,0.1,0.1", help="train,valid,test ratios (default 0.8,0.1,0.1)")
    p.add_argument("--text-budget", type=int, default=4000, help="item text length cap in chars, 0 = none")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    p.set_defaults(func=cmd_prepare)

    data = subparsers.add_parser("data", help="inspect and export dataset directories")
    DATA_SUBPARSERS = data.add_subparsers(dest="data_command", required=True)

    s = add_data_subcommand("stats", "print the statistics (Table 1) of a dataset directory")
    s.add_argument("dir", help="dataset directory")
    s.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    s.set_defaults(func=cmd_stats)

    e = add_data_subcommand("export-recbole", "write RecBole NAME.{train,valid,test}.inter files")
    e.add_argument("dir", help="dataset directory")
    e.add_argument("out", help="output directory")
    e.add_argument("--name", help="file name stem (default: the dataset name)")
    e.add_argument("--force", action="store_true", help="overwrite differing existing files")
    e.set_defaults(func=cmd_export_recbole)

    for module_name in DATA_EXTENSION_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register_data(add_data_subcommand)
    for hook in _HOOKS:
        hook(add_data_subcommand)


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


def _parse_ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise SymcereError(f"--ratios: expected three numbers like 0.8,0.1,0.1, got {text!r}")
    return values  # type: ignore[return-value]


def cmd_prepare(args: argparse.Namespace) -> int:
    from symcere.data.preprocess import build_dataset
    from symcere.data.readers import parse_columns, read_reviews

    columns = parse_columns(args.columns) if args.columns else None
    name = args.name or Path(args.out).name
    records = _progress(read_reviews(args.input, args.format, columns), args.input)
    out = build_dataset(
        records,
        args.out,
        name=name,
        k_core=args.k_core,
        user_k=args.user_k,
        item_k=args.item_k,
        ratios=_parse_ratios(args.ratios),
        text_budget=args.text_budget,
        extra_meta={
            "source": {"inputs": [Path(p).name for p in args.input], "format": args.format, "columns": columns}
        },
        overwrite=args.overwrite,
    )
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


def cmd_export_recbole(args: argparse.Namespace) -> int:
    from symcere.data.export import export_recbole

    for path in export_recbole(args.dir, args.out, args.name, force=args.force):
        print(path)
    return 0
