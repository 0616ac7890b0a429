"""The whole ``symcere`` argument tree, every sub-command listed here in pipeline order:

``prepare``, ``data stats | synth | export-recbole``, ``train``, ``evaluate``, ``recommend``, ``serve``, ``export``,
``quickstart``,
``experiment``, ``experiment-tables``, ``analyze``.

Each parser sets ``func`` to a function of :mod:`symcere.cli.commands`. Building the parser imports no heavy
module (torch, the models), so ``symcere --help`` stays fast.
"""

from __future__ import annotations

import argparse

from symcere import __version__
from symcere.cli import commands

DESCRIPTION = "symcere: review-enhanced top-K recommendation (prepare data, train, evaluate, recommend, analyse)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symcere", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"symcere {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_data(sub)
    _add_config(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_recommend(sub)
    _add_serve(sub)
    _add_quickstart(sub)
    _add_experiment(sub)
    _add_analyze(sub)
    return parser


def _ratios(text: str) -> tuple[float, float, float]:
    """``--ratios 0.8,0.1,0.1`` -> three floats."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}")
    return values  # type: ignore[return-value]


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from symcere.data.readers import FORMATS

    p = sub.add_parser(
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
    p.add_argument(
        "--ratios", type=_ratios, default="0.8,0.1,0.1", help="train,valid,test ratios (default 0.8,0.1,0.1)"
    )
    p.add_argument("--text-budget", type=int, default=4000, help="item text length cap in chars, 0 = none")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    p.add_argument(
        "--on-bad-record",
        choices=("error", "skip"),
        default="error",
        help="a record that does not fit: stop with its file/line/field (error, default) or drop and count it (skip)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "pandas", "duckdb"),
        default="auto",
        help="pandas: in memory | duckdb: streamed, spills to disk (symcere[scale]) | auto: duckdb when installed; "
        "the same output either way",
    )
    p.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="duckdb engine: memory bound, e.g. 2GB (default: DuckDB's, 80%% of RAM); the rest spills to disk",
    )
    p.set_defaults(func=commands.cmd_prepare)


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect and export dataset directories")
    dsub = data.add_subparsers(dest="data_command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return dsub.add_parser(name, help=help, description=help)

    p = add("stats", "print the statistics (Table 1) of a dataset directory")
    p.add_argument("dir", help="dataset directory")
    p.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    p.set_defaults(func=commands.cmd_stats)

    p = add("synth", "generate the built-in synthetic dataset (seeded, with ground truth)")
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--preset", choices=("default", "tiny"), default="default", help="size preset")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any SynthConfig field (repeatable)")
    p.add_argument("--name", help="dataset name (default: the --out directory name)")
    p.add_argument("--k-core", type=int, default=5, help="k for users and items, 0 = off (default 5)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    p.set_defaults(func=commands.cmd_synth)

    p = add("export-recbole", "write RecBole NAME.{train,valid,test}.inter files")
    p.add_argument("dir", help="dataset directory")
    p.add_argument("out", help="output directory")
    p.add_argument("--name", help="file name stem (default: the dataset name)")
    p.add_argument("--force", action="store_true", help="overwrite differing existing files")
    p.set_defaults(func=commands.cmd_export_recbole)


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


def _add_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="print a model's resolved configuration: every effective value with its meaning",
        description="Resolve defaults -> preset -> files -> overrides and print every value, marking what differs "
        "from the model's defaults (and so what a preset changes).",
    )
    p.add_argument("model", help="mf, lightgcn, ngcf, neumf, sgl, dgclr, symcere")
    p.add_argument("--yaml", action="store_true", help="print the resolved YAML (as a run's config.yaml) instead")
    _add_config_args(p)
    p.set_defaults(func=commands.cmd_config)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model on a dataset directory")
    p.add_argument("--model", required=True, help="mf, lightgcn, ngcf, neumf, sgl, dgclr, symcere")
    p.add_argument("--data", required=True, help="dataset directory (symcere prepare / data synth)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--no-memory-check", action="store_true", help="start even when the memory estimate exceeds what is available"
    )
    _add_config_args(p)
    p.set_defaults(func=commands.cmd_train)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="re-evaluate a saved run")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=("test", "valid"), default="test")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20])
    p.add_argument("--data", default=None, help="dataset directory if it moved since training")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=commands.cmd_evaluate)


def _add_recommend(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=commands.cmd_recommend)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a trained run over HTTP (recommend, similar items, cold start, explain)",
        description="Serve a finished run read-only with FastAPI + uvicorn (OpenAPI at /docs; pip install 'symcere[serve]').",
    )
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument(
        "--ann-threshold",
        type=int,
        default=100_000,
        metavar="N",
        help="catalogues with more than N items use a FAISS index instead of exact search (default 100000; 0 = always)",
    )
    p.add_argument("--ann-index", choices=("hnsw", "ivf", "flat"), default="hnsw", help="FAISS index kind (hnsw)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--data", default=None, help="dataset directory if it moved since training")
    p.set_defaults(func=commands.cmd_serve)

    p = sub.add_parser("export", help="export user, item and text-tower embeddings (Parquet or safetensors)")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", choices=("parquet", "safetensors"), default="parquet")
    p.add_argument("--force", action="store_true", help="overwrite existing export files")
    p.add_argument("--data", default=None, help="dataset directory if it moved since training")
    p.set_defaults(func=commands.cmd_export)


def _add_quickstart(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="the main job: built-in dataset, LightGCN vs SymCERE, results table")
    p.add_argument("--workdir", default="symcere-quickstart", help="where data and runs go")
    p.add_argument("--models", nargs="+", default=["lightgcn", "symcere"])
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=commands.cmd_quickstart)


def _add_experiment(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=commands.cmd_experiment)

    p = sub.add_parser("experiment-tables", help="re-write the tables of a plan's output dir from its finished runs")
    p.add_argument("out", help="the plan's output dir (holds plan.json and runs/)")
    p.add_argument("--std", action="store_true", help="show mean ± std in the Markdown / LaTeX tables")
    p.add_argument(
        "--archive",
        metavar="DEST",
        help="also copy the records behind the tables (metrics, configs, per-user metrics; no checkpoints) to "
        "DEST, itself an output dir that resumes the study elsewhere",
    )
    p.set_defaults(func=commands.cmd_experiment_tables)


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="compare trained runs: geometry, long tail, LIME semantic anchoring, embedding maps",
        description=(
            "Write report.md, a self-contained report.html, PNG figures and CSV tables comparing the runs side "
            "by side (symcere.md section 6)."
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUNDIR", help="run directories (symcere train --out)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--lime-samples", type=int, default=30, metavar="N", help="interactions explained per run (30)")
    p.add_argument(
        "--lime-perturbations", type=int, default=200, metavar="N", help="LIME perturbations per interaction (200)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every sample the analyses draw (0)")
    p.add_argument("--no-lime", action="store_true", help="skip the LIME semantic-anchoring analysis")
    p.add_argument("--pairs", type=int, default=20000, metavar="N", help="random item pairs for Table 4 (20000)")
    p.add_argument(
        "--projection", choices=("auto", "umap", "pca"), default="auto", help="embedding map projection (auto)"
    )
    p.add_argument("--data", default=None, help="dataset directory if it moved since training")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=commands.cmd_analyze)

    p = sub.add_parser(
        "curves",
        help="training curves of runs: every loss term per epoch, gradient shares (train.grad_share=true)",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUNDIR", help="run directories (symcere train --out)")
    p.add_argument("--out", required=True, help="output directory (created): curves.csv, curves.md, curves.png")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL", help="one label per run (its folder name)")
    p.set_defaults(func=commands.cmd_curves)
