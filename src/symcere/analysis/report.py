"""``symcere analyze``: analyse trained runs side by side and write the report.

The numbers come from :mod:`~symcere.analysis.compute`, the prose, tables and figures from
:mod:`~symcere.analysis.sections`, the rendering from :mod:`~symcere.analysis.document`. Written into the
output directory (each file atomically, :mod:`symcere.io`): ``report.md``, a self-contained ``report.html``,
the PNG figures, CSV tables and ``analysis.json``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from symcere.analysis import sections
from symcere.analysis.compute import (
    AnalyzeOptions,
    RunAnalysis,
    analysis_json,
    analyze_runs,
    load_configs,
    log,
    run_labels,
)
from symcere.analysis.document import Document
from symcere.errors import SymcereError
from symcere.io import write_json, write_text

__all__ = ["AnalyzeOptions", "analyze", "write_report"]

TITLE = "symcere analysis report"


def write_report(runs: Sequence[RunAnalysis], out_dir: str | Path, opts: AnalyzeOptions) -> dict[str, Any]:
    """Write the report of analysed ``runs`` into the existing directory ``out_dir``.

    Returns ``{"report_md", "report_html", "files"}`` (every file written).
    """
    out = Path(out_dir)
    notes = [f"{r.label}: {n}" for r in runs for n in r.notes]
    doc = Document(out, TITLE)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc.para(
        f"Generated {stamp} by `symcere analyze` for {len(runs)} run(s); seed {opts.seed}, {opts.n_pairs:,} item "
        f"pairs, {opts.n_groups} popularity groups at K={opts.k}, LIME "
        + (f"on {opts.lime_samples} interactions x {opts.lime_perturbations} perturbations." if opts.lime else "off.")
    )
    # the run table comes first, but its notes are known only once every section ran: the sections are built
    # into a second document that is appended after it
    section_notes: list[str] = []
    body = Document(out, TITLE)
    sections.section_magnitude(body, runs, opts)
    sections.section_similarity(body, runs, opts)
    sections.section_dims(body, runs, opts)
    sections.section_longtail(body, runs, opts, section_notes)
    sections.section_anchoring(body, runs, opts)
    sections.section_maps(body, runs, opts, section_notes)
    sections.section_runs(doc, runs, opts, notes + section_notes)
    doc.extend(body)

    json_path = write_json(out / "analysis.json", analysis_json(runs), default=float)
    md_path = write_text(out / "report.md", doc.markdown())
    html_path = write_text(out / "report.html", doc.html())
    return {"report_md": md_path, "report_html": html_path, "files": [md_path, html_path, json_path, *doc.files]}


def analyze(run_dirs: Sequence[str | Path], out_dir: str | Path, opts: AnalyzeOptions | None = None) -> dict[str, Any]:
    """Analyse ``run_dirs`` side by side and write the report into ``out_dir`` (created).

    Returns ``{"report_md", "report_html", "files", "runs" (list of RunAnalysis), "seconds"}``.
    """
    opts = opts or AnalyzeOptions()
    t_start = time.perf_counter()
    if not run_dirs:
        raise SymcereError("give at least one run directory")
    dirs = [Path(p) for p in run_dirs]
    labels = run_labels(dirs, load_configs(dirs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = analyze_runs(dirs, labels, opts)
    log(opts, "writing the report")
    res = write_report(runs, out, opts)
    seconds = time.perf_counter() - t_start
    log(opts, f"done in {seconds:.1f} s: {res['report_md']}, {res['report_html']}")
    return {**res, "runs": runs, "seconds": seconds}
