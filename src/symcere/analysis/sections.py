"""The sections of the ``symcere analyze`` report: each turns the numbers of the analysed runs
(:class:`~symcere.analysis.compute.RunAnalysis`) into prose, tables (also written as CSV) and figures
(:mod:`~symcere.analysis.plots`) of a :class:`~symcere.analysis.document.Document`.

1. magnitude as popularity; 2. similarity statistics (Table 4); 3. dimension utilisation (Figure 4);
4. long tail; 5. LIME semantic anchoring (Tables 5-8); 6. embedding map (Figure 1); plus the run table.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from symcere.analysis import anchoring, embedding_map, longtail, plots
from symcere.analysis.compute import AnalyzeOptions, RunAnalysis, magnitude_panel
from symcere.analysis.document import Document, highlight
from symcere.io import write_text
from symcere.tables import csv_table

__all__ = [
    "section_anchoring",
    "section_dims",
    "section_longtail",
    "section_magnitude",
    "section_maps",
    "section_runs",
    "section_similarity",
]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "run"


def _sci(p: float) -> str:
    return "" if p is None or np.isnan(p) else f"{p:.1e}"


def _colors(runs: Sequence[RunAnalysis]) -> dict[str, str]:
    return plots.run_colors([r.label for r in runs])


def _embedding_name(name: str) -> str:
    return "graph g_i" if name == "graph" else "text t_i"


def section_runs(doc: Document, runs: Sequence[RunAnalysis], opts: AnalyzeOptions, notes: list[str]) -> None:
    """The run table (directory, model, switches, test metrics) and every note of the analysis."""
    doc.heading("Runs")
    rows = []
    for r in runs:
        test = r.metrics.get("test", {}) if isinstance(r.metrics, dict) else {}
        rows.append(
            {
                "run": r.label,
                "directory": str(r.run_dir),
                "model": r.model,
                "switches": ", ".join(r.switches),
                "dataset": r.dataset,
                "epochs": r.metrics.get("epochs"),
                "test recall@20": test.get("recall@20"),
                "test ndcg@20": test.get("ndcg@20"),
                "test ndcg@10": test.get("ndcg@10"),
            }
        )
    doc.table(rows, digits=4, csv_name="runs.csv")
    doc.bullets(notes)


def section_magnitude(doc: Document, runs: Sequence[RunAnalysis], opts: AnalyzeOptions) -> None:
    doc.heading("1. Magnitude as popularity")
    doc.para(
        "Spearman rank correlation between each node's training degree and the L2 norm of its graph embedding "
        "(the raw, un-normalised vectors). A high correlation means the norm encodes popularity: dot-product "
        "scores then favour popular items, and L2 normalisation (cosine) removes exactly this signal."
    )
    rows = []
    for r in runs:
        mi, mu = r.magnitude["items"], r.magnitude["users"]
        rows.append(
            {
                "run": r.label,
                "items rho": mi["spearman"],
                "items p": _sci(mi["pvalue"]),
                "users rho": mu["spearman"],
                "users p": _sci(mu["pvalue"]),
                "item norm mean": mi["mean_norm"],
                "item norm std": mi["std_norm"],
            }
        )
    doc.table(rows, digits=3, csv_name="magnitude.csv", caption="Spearman(degree, L2 norm) per run")
    path = plots.plot_magnitude([magnitude_panel(r, opts) for r in runs], doc.out_dir / "magnitude.png")
    doc.figure(path, "Graph-embedding L2 norm against log(1 + training degree); rho = Spearman correlation.")


def section_similarity(doc: Document, runs: Sequence[RunAnalysis], opts: AnalyzeOptions) -> None:
    doc.heading("2. Similarity statistics (Table 4)")
    doc.para(
        f"Cosine similarity over {opts.n_pairs:,} random pairs of distinct items (seed {opts.seed}; the same "
        "pairs for every run on the same dataset). Cosine ignores the norm, so 'with vs without normalisation' "
        "compares runs trained with and without L2 normalisation. The paper reads a larger standard deviation "
        "as a more uniform, more discriminative use of the hypersphere."
    )
    rows = []
    for r in runs:
        for name, s in r.similarity.items():
            rows.append(
                {
                    "run": r.label,
                    "embedding": _embedding_name(name),
                    "mean": s["mean"],
                    "std": s["std"],
                    "min": s["min"],
                    "25%": s["p25"],
                    "75%": s["p75"],
                    "max": s["max"],
                }
            )
    doc.table(rows, digits=4, csv_name="similarity.csv", caption="Cosine similarity of random item pairs")
    align = [
        {
            "run": r.label,
            "matched cos(g_i, t_i)": r.alignment["matched"],
            "random cos(g_i, t_j)": r.alignment["random"],
            "gap": r.alignment["gap"],
        }
        for r in runs
        if r.alignment is not None
    ]
    if align:
        doc.para(
            "Cross-modal alignment: mean cosine between an item's graph and text embeddings, against random "
            "(graph, text) pairs of different items."
        )
        doc.table(align, digits=4, csv_name="alignment.csv")
    col = _colors(runs)
    series = [(r.label, r.similarity_values["graph"]) for r in runs]
    path = plots.plot_similarity_hist(series, doc.out_dir / "similarity_graph.png", "Graph item embeddings", col)
    doc.figure(path, "Distribution of the cosine similarity of random item pairs (graph embeddings).")
    tseries = [(r.label, r.similarity_values["text"]) for r in runs if "text" in r.similarity_values]
    if tseries:
        path = plots.plot_similarity_hist(tseries, doc.out_dir / "similarity_text.png", "Text item embeddings", col)
        doc.figure(path, "Distribution of the cosine similarity of random item pairs (text embeddings).")


def section_dims(doc: Document, runs: Sequence[RunAnalysis], opts: AnalyzeOptions) -> None:
    doc.heading("3. Dimension utilisation (Figure 4)")
    doc.para(
        "Per-dimension variance and singular values of the item embedding matrix with rows L2-normalised and "
        "columns centred, so that runs with different embedding scales are comparable (raw-vector numbers are "
        "given too). Effective rank = exp(entropy of the normalised singular values): the embedding size d when "
        "every direction is used equally, 1 when one direction carries everything."
    )
    rows = []
    for r in runs:
        for name, d in r.dims.items():
            rows.append(
                {
                    "run": r.label,
                    "embedding": _embedding_name(name),
                    "dim": d["dim"],
                    "eff. rank (normalised)": d["eff_rank_norm"],
                    "eff. rank / dim": d["eff_rank_norm_frac"],
                    "eff. rank (raw)": d["eff_rank_raw"],
                    "top-1 energy": d["top1_energy_norm"],
                    "var max/min (normalised)": d["var_max_min_norm"],
                    "var max/min (raw)": d["var_max_min_raw"],
                }
            )
    doc.table(rows, digits=3, csv_name="dimensions.csv", caption="Effective rank and variance spread")
    col = _colors(runs)
    path = plots.plot_dimension_variance(
        [(r.label, r.variances["graph"]) for r in runs],
        doc.out_dir / "dim_variance.png",
        "Per-dimension variance of graph item embeddings",
        colors=col,
    )
    doc.figure(path, "Histogram of per-dimension variances (L2-normalised graph item embeddings), runs overlaid.")
    panels = [("graph item embeddings", [(r.label, r.spectra["graph"]) for r in runs])]
    text = [(r.label, r.spectra["text"]) for r in runs if "text" in r.spectra]
    if text:
        panels.append(("text item embeddings", text))
    path = plots.plot_spectrum(
        panels, doc.out_dir / "spectrum.png", "Singular-value spectrum (centred, L2-normalised rows)", colors=col
    )
    doc.figure(path, "Normalised singular-value spectra s_k / s_1 (a flatter curve uses more dimensions).")


def section_longtail(doc: Document, runs: Sequence[RunAnalysis], opts: AnalyzeOptions, notes: list[str]) -> None:
    doc.heading("4. Long-tail: contribution of popularity groups")
    doc.para(
        f"Items are split into {opts.n_groups} groups holding about the same number of training interactions "
        "(group 0 = long tail with many rarely bought items, the last group = a few very popular items). Each "
        f"group's contribution to Recall@{opts.k} and NDCG@{opts.k} on the TEST split counts only the hits on "
        "that group's items; the contributions add up to the overall metric (the 'total' row)."
    )
    results = {r.label: r.longtail for r in runs if r.longtail is not None}
    hashes = {r.dataset_hash for r in runs}
    if len(hashes) > 1:
        notes.append("the runs use different datasets: the group composition shown is the first run's")
        doc.para("Note: the runs use different datasets; the items / interactions columns are the first run's.")
    for m, name in (("recall", "Recall"), ("ndcg", "NDCG")):
        rows = longtail.longtail_rows(results, m)
        doc.table(rows, digits=4, csv_name=f"longtail_{m}.csv", caption=f"Contribution to {name}@{opts.k} (test)")
    path = plots.plot_longtail(
        results,
        doc.out_dir / "longtail.png",
        title=f"Popularity-group contributions (test, K={opts.k})",
        colors=_colors(runs),
    )
    doc.figure(path, f"Contribution of each popularity group to Recall@{opts.k} and NDCG@{opts.k}.")


def _word_rows(words: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "word": w["word"],
            "class": w["class"],
            "mean contribution": w["mean"],
            "std": w["std"],
            "frequency": w["count"],
        }
        for w in words
    ]


def _anchoring_row(r: RunAnalysis, opts: AnalyzeOptions, any_objective: bool) -> dict[str, Any]:
    a = r.anchoring
    assert a is not None
    by = {c["class"]: c["mean contribution"] for c in a["classes"]}
    row: dict[str, Any] = {
        "run": r.label,
        "interactions": a["n"],
        "perturbations": a["perturbations"],
        "mean cos(g_ui, t)": a["mean_similarity"],
        "LIME R^2": a["mean_r2"],
    }
    for c in anchoring.CLASSES:
        if c != "objective" or any_objective:
            row[f"mean w ({c})"] = by.get(c, float("nan"))
    if a["has_objective"]:
        row[f"objective P@{opts.precision_k}"] = a["precision"]
        row["objective base rate"] = a["objective_rate"]
    row["LIME seconds"] = f"{a['seconds']:.1f}"
    row["s / interaction"] = f"{a['seconds_per_interaction']:.2f}"
    return row


def _examples(doc: Document, examples: Sequence[Mapping[str, Any]]) -> None:
    """Table 8: example reviews with their top positive words highlighted (Markdown and HTML by hand)."""
    caption = "Example reviews (cf. Table 8), top-3 positive words highlighted"
    md = [f"*{caption}*", "", "| signal | cos(g_ui, t) | anchor share | text |", "|---|---|---|---|"]
    hrows = []
    for ex in examples:
        e = ex["explanation"]
        text = e.text if len(e.text) <= 400 else e.text[:400] + " ..."
        md_text = highlight(text, ex["top"], "markdown").replace("|", "\\|")
        md.append(f"| {ex['signal']} | {e.similarity:.3f} | {ex['share']:.2f} | {md_text} |")
        hrows.append(
            f"<tr><td>{html.escape(ex['signal'])}</td><td>{e.similarity:.3f}</td><td>{ex['share']:.2f}</td>"
            f'<td class="text">{highlight(text, ex["top"], "html")}</td></tr>'
        )
    html_text = (
        f'<p class="caption">{caption}</p>'
        "<table><thead><tr><th>signal</th><th>cos(g_ui, t)</th><th>anchor share</th><th>text</th></tr>"
        "</thead><tbody>" + "".join(hrows) + "</tbody></table>"
    )
    doc.raw("\n".join(md), html_text)


def section_anchoring(doc: Document, runs: Sequence[RunAnalysis], opts: AnalyzeOptions) -> None:
    doc.heading("5. Semantic anchoring (Tables 5-8)")
    with_lime = [r for r in runs if r.anchoring is not None]
    if not with_lime:
        reasons = sorted({n for r in runs for n in r.notes if "anchoring" in n})
        doc.para("No run was explained: " + ("; ".join(reasons) or "no run has a text tower") + ".")
        return
    doc.para(
        "For a seeded sample of training interactions (the same interactions for every run on the same dataset) "
        "LIME explains the cross-modal similarity cos(g_ui, t) between the interaction's graph embedding "
        "g_ui = (g_u + g_i) / 2 and the run's text-tower embedding t of the interaction's own review (the item "
        "text when the review has fewer than 3 words). LIME deletes random subsets of words, re-encodes each "
        "perturbed review with the run's text encoder and projection, and fits a weighted ridge regression of "
        "the cosine on word presence; a word's weight is the change in cosine it causes. Texts are lower-cased "
        "and cut to the encoder's token limit in words. Words are classed as objective (ground truth of the "
        "built-in dataset), stop-word (scikit-learn's English list), sentiment (VADER lexicon) or content "
        "(anything else: on real data, the candidate product terms)."
    )
    any_objective = any(r.anchoring["has_objective"] for r in with_lime)
    rows = [_anchoring_row(r, opts, any_objective) for r in with_lime]
    doc.table(rows, digits=4, csv_name="anchoring_summary.csv", caption="Comparison across runs")
    if any_objective:
        doc.para(
            f"objective P@{opts.precision_k}: share of the built-in dataset's objective words among the "
            f"{opts.precision_k} words with the highest mean positive contribution (words seen in >= "
            f"{with_lime[0].anchoring['min_count']} explanations); the base rate is the share of objective words "
            "among all explained word occurrences (what a random ranking would give)."
        )
    checks = ", ".join(f"{r.label}: {r.anchoring['encoder_check_cos']:.5f}" for r in with_lime)
    doc.para(
        "Encoder check (cosine between our re-encoding of an item text and the run's stored text embedding of "
        f"that item; 1 = the explained function is the trained one): {checks}."
    )
    path = plots.plot_class_contributions(
        {r.label: r.anchoring["classes"] for r in with_lime},
        doc.out_dir / "anchoring_classes.png",
        "Mean LIME contribution per word class",
        colors=_colors(runs),
    )
    doc.figure(path, "Mean LIME weight per word class (change of cos(g_ui, t) when the word is present).")
    all_words = [{"run": r.label, **w} for r in with_lime for w in r.anchoring["words"]]
    if all_words:
        columns = ["run", "word", "class", "mean", "std", "sum", "count"]
        doc.files.append(write_text(doc.out_dir / "anchoring_words.csv", csv_table(all_words, columns)))
    for n, r in enumerate(with_lime, start=1):
        a = r.anchoring
        doc.heading(f"5.{n} {r.label}", 3)
        n_rev = a["n"] - a["n_item_text_fallback"]
        doc.para(
            f"{a['n']} interactions explained ({n_rev} with their review, {a['n_item_text_fallback']} with the item "
            f"text), {a['perturbations']} perturbations each: {a['seconds']:.1f} s "
            f"({a['seconds_per_interaction']:.2f} s per interaction; building the encoder {a['encoder_seconds']:.1f} s)."
        )
        crows = [dict(c) for c in a["classes"] if c["occurrences"]]
        doc.table(crows, digits=4, caption="Word classes (cf. Tables 5-7)")
        slug = _slug(r.run_dir.name)
        doc.table(
            _word_rows(a["top_positive"]),
            digits=4,
            csv_name=f"anchoring_top_positive_{slug}.csv",
            caption=f"Most positive words (anchors; frequency >= {a['min_count']})",
        )
        doc.table(
            _word_rows(a["top_negative"]),
            digits=4,
            csv_name=f"anchoring_top_negative_{slug}.csv",
            caption=f"Most negative words (frequency >= {a['min_count']})",
        )
        if a["examples"]:
            _examples(doc, a["examples"])
            anchor_cls = "objective" if a["has_objective"] else "content"
            doc.para(
                f"Anchor share: the share of the explanation's positive weight carried by {anchor_cls} words; "
                "'strong / objective' are the explained reviews where it is highest, 'weak / subjective' where it "
                "is lowest."
            )


def section_maps(doc: Document, runs: Sequence[RunAnalysis], opts: AnalyzeOptions, notes: list[str]) -> None:
    doc.heading("6. Embedding map (Figure 1)")
    method = opts.projection
    if method == "auto" and not embedding_map.umap_available():
        notes.append("umap-learn is not installed: the embedding maps use PCA (pip install 'symcere[maps]' for UMAP)")
    doc.para(
        "Graph (blue) and text (red) item embeddings projected jointly to 2-D, marker size ~ log(1 + training "
        "degree); left the raw vectors, right the L2-normalised ones. "
        + (
            "Projection: UMAP (seeded)."
            if method != "pca" and embedding_map.umap_available()
            else "Projection: PCA (umap-learn is not installed or PCA was asked for), a linear view: clusters "
            "UMAP would separate may overlap."
        )
    )
    for n, r in enumerate(runs, start=1):
        emap = embedding_map.item_map(
            r.items, r.item_text, r.item_degree, method=method, seed=opts.seed, max_points=opts.max_map_points
        )
        path = plots.plot_embedding_map(emap, doc.out_dir / f"map_{n}_{_slug(r.run_dir.name)}.png", r.label)
        what = "graph and text" if r.item_text is not None else "graph (the run has no text embeddings)"
        doc.figure(path, f"{r.label}: {what} item embeddings, {emap.method.upper()}.")
