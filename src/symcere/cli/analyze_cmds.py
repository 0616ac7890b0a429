"""``symcere analyze RUNDIR [RUNDIR ...] --out DIR``: compare trained runs in one report."""

from __future__ import annotations

import argparse

from symcere.errors import SymcereError


def register(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=cmd_analyze)


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
    res = analyze(args.run_dirs, args.out, opts)
    print(f"report: {res['report_md']}")
    print(f"        {res['report_html']}")
    for r in res["runs"]:
        if r.anchoring is not None:
            a = r.anchoring
            print(f"LIME {r.label}: {a['n']} interactions x {a['perturbations']} perturbations in {a['seconds']:.1f} s")
    print(f"total {res['seconds']:.1f} s")
    return 0
