"""``symcere analyze``: load trained runs, run every analysis, write ``report.md`` + a self-contained
``report.html`` (figures embedded as base64 PNG), the PNG figures, CSV tables and ``analysis.json``.

This module is the adapter between loaded runs (:func:`symcere.training.run.load_run`) and the pure analysis
functions of :mod:`~symcere.analysis.geometry`, :mod:`~symcere.analysis.longtail`,
:mod:`~symcere.analysis.anchoring` and :mod:`~symcere.analysis.embedding_map`. Runs are processed one at a
time (model loaded, analysed, released) and compared side by side in the report.
"""

from __future__ import annotations

import base64
import html
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from symcere.analysis import anchoring, embedding_map, geometry, longtail
from symcere.errors import SymcereError
from symcere.tables import csv_table, markdown_table

__all__ = ["AnalyzeOptions", "Report", "RunAnalysis", "analyze", "analyze_run", "describe_run", "run_labels"]


@dataclass
class AnalyzeOptions:
    """Settings of ``symcere analyze`` (CLI flags in brackets)."""

    seed: int = 0  # [--seed] pair sampling, LIME interaction sample and perturbations, map subsample
    n_pairs: int = 20000  # [--pairs] random item pairs for the similarity statistics
    lime: bool = True  # [--no-lime]
    lime_samples: int = 30  # [--lime-samples] explained training interactions per run
    lime_perturbations: int = 200  # [--lime-perturbations] LIME num_samples per interaction
    min_count: int = 2  # words must appear in >= this many explanations to enter the top-word tables
    top_words: int = 15  # rows of the top positive / negative word tables
    precision_k: int = 20  # objective-word precision@k among the top positive words (built-in dataset)
    n_groups: int = 10
    k: int = 20
    projection: str = "auto"  # auto (UMAP if installed, else PCA) | umap | pca
    max_map_points: int = 2000  # items drawn per embedding map
    max_scatter_points: int = 5000  # points per node type in the magnitude scatter
    data_dir: str | None = None  # [--data] dataset directory if it moved since training
    progress: bool = True


@dataclass
class RunAnalysis:
    """Everything computed for one run (arrays kept only where a cross-run figure needs them)."""

    label: str
    run_dir: Path
    model: str
    switches: list[str]
    dataset: str
    dataset_hash: str
    metrics: dict[str, Any]
    item_degree: np.ndarray
    user_degree: np.ndarray
    items: np.ndarray
    users: np.ndarray
    item_text: np.ndarray | None
    magnitude: dict[str, dict[str, float]] = field(default_factory=dict)
    similarity: dict[str, dict[str, float]] = field(default_factory=dict)
    similarity_values: dict[str, np.ndarray] = field(default_factory=dict)
    alignment: dict[str, float] | None = None
    dims: dict[str, dict[str, float]] = field(default_factory=dict)
    variances: dict[str, np.ndarray] = field(default_factory=dict)
    spectra: dict[str, np.ndarray] = field(default_factory=dict)
    longtail: dict[str, Any] | None = None
    anchoring: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


# -- run description -----------------------------------------------------------------------------------------
def _get(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    cur: Any = cfg
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def describe_run(cfg: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``(model name, key switches)`` of a run configuration, e.g. ``("symcere", ["norm", "cross=sincere",
    "text=frozen"])``."""
    model = str(_get(cfg, "model.name", "?"))
    sw: list[str] = []
    norm = _get(cfg, "model.normalize")
    if norm is not None:
        sw.append("norm" if norm else "no-norm")
    if model == "symcere":
        sw.append(f"cross={_get(cfg, 'loss.cross', '?')}")
        sw.append(f"text={_get(cfg, 'text.mode', '?')}")
        if float(_get(cfg, "loss.cross_weight", 1.0)) != 1.0:
            sw.append(f"cross_weight={_get(cfg, 'loss.cross_weight')}")
        for key, default in (
            ("model.backbone", "lightgcn"),
            ("model.align", "interaction"),
            ("model.score", "graph"),
            ("model.rank_normalize", True),
            ("model.text_in_graph", False),
            ("model.popularity_prior", 0.0),
        ):
            val = _get(cfg, key)
            if val is not None and val != default:
                sw.append(f"{key.split('.')[1]}={val}")
        if _get(cfg, "loss.rec", "bpr") != "bpr":
            sw.append(f"rec={_get(cfg, 'loss.rec')}")
    else:
        rec = _get(cfg, "loss.rec")
        if rec is not None:
            sw.append(f"rec={rec}")
        backbone = _get(cfg, "model.backbone")
        if backbone is not None:
            sw.append(f"backbone={backbone}")
    return model, sw


def run_labels(run_dirs: Sequence[Path], cfgs: Sequence[Mapping[str, Any]]) -> list[str]:
    """``"<dir name> (<model>, <switches>)"`` per run; directory names that repeat get their parent prefixed
    (and a counter if still ambiguous)."""
    names = [p.name for p in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.name}" for p in run_dirs]
    seen: dict[str, int] = {}
    labels = []
    for name, cfg in zip(names, cfgs, strict=True):
        model, sw = describe_run(cfg)
        base = f"{name} ({', '.join([model, *sw])})"
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return labels


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "run"


def _log(opts: AnalyzeOptions, msg: str) -> None:
    if opts.progress:
        print(f"[analyze] {msg}", file=sys.stderr, flush=True)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float64)


# -- per-run analyses ----------------------------------------------------------------------------------------
def _text_encode_fn(
    model: Any, cfg: Mapping[str, Any], encoders: dict[tuple, Any]
) -> Callable[[list[str]], np.ndarray]:
    """``texts -> (n, d)`` projected text-tower embeddings of raw texts, with a per-run memo.

    A trained (LoRA / full) encoder is ``model.text.encoder``. In frozen mode the tower only holds cached
    embeddings of the item texts, so a frozen ``TextEncoder`` is built from the run's ``text`` config
    (shared between runs with the same model, pooling and token limit).
    """
    import torch

    from symcere.models.symcere import text_config
    from symcere.models.text import TextEncoder

    tower = model.text
    enc = getattr(tower, "encoder", None)
    if enc is None:
        tc = text_config(dict(cfg["text"]))
        key = (tc.model, tc.pooling, tc.max_tokens, tc.bf16)
        if key not in encoders:
            encoders[key] = TextEncoder(tc)
        enc = encoders[key]
    memo: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in memo]
        if todo:
            with torch.no_grad():
                hidden = enc.encode(todo)
                out = tower.proj(hidden.to(tower.proj.weight.device)).cpu().double().numpy()
            for t, v in zip(todo, out, strict=True):
                memo[t] = v
        return np.stack([memo[t] for t in texts])

    return encode


def _anchoring_for_run(
    model: Any,
    dataset: Any,
    cfg: Mapping[str, Any],
    emb: Mapping[str, np.ndarray],
    opts: AnalyzeOptions,
    encoders: dict[tuple, Any],
) -> dict[str, Any]:
    synthetic = dataset.meta.get("synthetic") or {}
    objective = synthetic.get("objective_words")
    classify = anchoring.WordClassifier(objective=frozenset(objective) if objective else None)
    t_build = time.perf_counter()
    encode = _text_encode_fn(model, cfg, encoders)
    build_s = time.perf_counter() - t_build

    users, items = dataset.split_arrays("train")
    reviews = list(dataset.train_reviews)
    max_words = int(_get(cfg, "text.max_tokens", 128))
    idx = anchoring.sample_interactions(reviews, opts.lime_samples, seed=opts.seed)
    texts, fns, metas = [], [], []
    gu, gi = emb["users"], emb["items"]
    n_fallback = 0
    for j in idx.tolist():
        u, i = int(users[j]), int(items[j])
        src = reviews[j]
        source = "review"
        if len(anchoring.tokenize(src)) < 3:
            src, source = dataset.item_texts[i], "item text"
            n_fallback += 1
        texts.append(anchoring.prepare_text(src, max_words))
        fns.append(anchoring.make_similarity_fn(encode, (gu[u] + gi[i]) / 2.0))
        metas.append({"row": j, "user": dataset.user_ids[u], "item": dataset.item_ids[i], "source": source})

    # consistency: our re-encoding of an item text must reproduce the run's own item_text embedding
    check = float("nan")
    if len(idx):
        i0 = int(items[idx[0]])
        mine = encode([dataset.item_texts[i0]])[0]
        ref = emb["item_text"][i0]
        check = float(mine @ ref / max(np.linalg.norm(mine) * np.linalg.norm(ref), 1e-12))

    t0 = time.perf_counter()
    exps = anchoring.explain_many(texts, fns, num_samples=opts.lime_perturbations, seed=opts.seed, metas=metas)
    lime_s = time.perf_counter() - t0

    rows = anchoring.aggregate_contributions(exps, classify)
    min_count = opts.min_count if len(exps) >= 10 else 1
    pos = anchoring.top_words(rows, opts.top_words, "positive", min_count)
    neg = anchoring.top_words(rows, opts.top_words, "negative", min_count)
    out: dict[str, Any] = {
        "n": len(exps),
        "n_item_text_fallback": n_fallback,
        "perturbations": opts.lime_perturbations,
        "seconds": lime_s,
        "seconds_per_interaction": lime_s / max(1, len(exps)),
        "encoder_seconds": build_s,
        "encoder_check_cos": check,
        "mean_similarity": float(np.mean([e.similarity for e in exps])) if exps else float("nan"),
        "mean_r2": float(np.nanmean([e.score for e in exps])) if exps else float("nan"),
        "min_count": min_count,
        "words": rows,
        "top_positive": pos,
        "top_negative": neg,
        "classes": anchoring.class_summary(exps, classify),
        "examples": anchoring.pick_examples(exps, classify, anchors=("objective",) if objective else ("content",)),
        "explanations": exps,
        "has_objective": objective is not None,
    }
    if objective:
        ranked = [r["word"] for r in anchoring.top_words(rows, opts.precision_k, "positive", min_count)]
        out["precision"] = anchoring.precision_at_k(ranked, objective, opts.precision_k)
        # chance level: share of objective words among the explained word occurrences
        occ = [w for e in exps for w in e.weights]
        out["objective_rate"] = float(np.mean([classify(w) == "objective" for w in occ])) if occ else float("nan")
        out["precision_n"] = min(opts.precision_k, len(ranked))
    return out


def analyze_run(
    run_dir: str | Path, label: str, opts: AnalyzeOptions, encoders: dict[tuple, Any] | None = None
) -> RunAnalysis:
    """Load one run and compute every per-run analysis."""
    from symcere.training.run import load_run

    encoders = {} if encoders is None else encoders
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    model, dataset, cfg, metrics = load_run(run_dir, opts.data_dir)
    emb = {k: _numpy(v) for k, v in model.embeddings().items()}
    if "users" not in emb or "items" not in emb:
        raise SymcereError(f"run {run_dir}: model {cfg['model']['name']} exposes no user/item embeddings")
    model_name, switches = describe_run(cfg)
    ra = RunAnalysis(
        label=label,
        run_dir=run_dir,
        model=model_name,
        switches=switches,
        dataset=str(dataset.name),
        dataset_hash=str(dataset.meta.get("content_hash", "")),
        metrics=metrics,
        item_degree=dataset.train_degree_items(),
        user_degree=dataset.train_degree_users(),
        items=emb["items"],
        users=emb["users"],
        item_text=emb.get("item_text"),
    )
    ra.seconds["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    ra.magnitude = {
        "items": geometry.magnitude_popularity(ra.items, ra.item_degree),
        "users": geometry.magnitude_popularity(ra.users, ra.user_degree),
    }
    modalities = {"graph": ra.items} | ({"text": ra.item_text} if ra.item_text is not None else {})
    for name, x in modalities.items():
        stats, values = geometry.cosine_pair_stats(x, opts.n_pairs, opts.seed, return_values=True)
        ra.similarity[name], ra.similarity_values[name] = stats, values
        ra.dims[name] = geometry.dimension_utilisation(x)
        ra.variances[name] = geometry.dimension_variance(x, normalize=True)
        ra.spectra[name] = geometry.singular_values(x, normalize=True)
    if ra.item_text is not None:
        ra.alignment = geometry.matched_cosine(ra.items, ra.item_text, opts.n_pairs, opts.seed)
    ra.seconds["geometry"] = time.perf_counter() - t

    t = time.perf_counter()
    ra.longtail = longtail.longtail_contributions(
        model.score,
        dataset.matrix("train"),
        dataset.matrix("test"),
        ra.item_degree,
        exclude=dataset.matrix("valid"),
        k=opts.k,
        n_groups=opts.n_groups,
        max_batch_elements=int(_get(cfg, "eval.max_batch_elements", 2**24)),
    )
    ra.seconds["longtail"] = time.perf_counter() - t

    has_tower = ra.item_text is not None and hasattr(getattr(model, "text", None), "proj")
    if not opts.lime:
        ra.notes.append("semantic anchoring skipped (--no-lime)")
    elif not has_tower:
        ra.notes.append("no text tower: no semantic anchoring")
    elif opts.lime_samples < 1:
        ra.notes.append("semantic anchoring skipped (--lime-samples 0)")
    else:
        _log(opts, f"{label}: LIME on {opts.lime_samples} interactions x {opts.lime_perturbations} perturbations")
        ra.anchoring = _anchoring_for_run(model, dataset, cfg, emb, opts, encoders)
        ra.seconds["lime"] = ra.anchoring["seconds"]
    del model
    return ra


# -- report document -----------------------------------------------------------------------------------------
def _fmt(v: Any, digits: int) -> str:
    if isinstance(v, float | np.floating):
        return f"{float(v):.{digits}f}"
    return "" if v is None else str(v)


def _inline_html(text: str) -> str:
    """HTML-escape ``text`` and turn ``**bold**`` and ```code``` into tags."""
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


class Report:
    """A document built once and rendered as Markdown and as self-contained HTML; tables also go to CSV."""

    def __init__(self, out_dir: Path, title: str) -> None:
        self.out_dir = out_dir
        self.title = title
        self.blocks: list[tuple[str, Any]] = []
        self.files: list[Path] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("para", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("bullets", list(items)))

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        digits: int = 4,
        csv_name: str | None = None,
        caption: str | None = None,
    ) -> None:
        cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
        if csv_name:
            path = self.out_dir / csv_name
            path.write_text(csv_table(rows, cols), encoding="utf-8")
            self.files.append(path)
        self.blocks.append(("table", (list(rows), cols, digits, caption, csv_name)))

    def figure(self, path: Path, caption: str) -> None:
        self.files.append(path)
        self.blocks.append(("figure", (path, caption)))

    def raw(self, markdown: str, html_text: str) -> None:
        self.blocks.append(("raw", (markdown, html_text)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, b in self.blocks:
            if kind == "heading":
                out += ["#" * b[0] + " " + b[1], ""]
            elif kind == "para":
                out += [b, ""]
            elif kind == "bullets":
                out += [f"- {x}" for x in b] + [""]
            elif kind == "table":
                rows, cols, digits, caption, csv_name = b
                if caption:
                    out += [f"*{caption}*" + (f" (`{csv_name}`)" if csv_name else ""), ""]
                out += [markdown_table(rows, cols, digits), ""]
            elif kind == "figure":
                path, caption = b
                out += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]
            elif kind == "raw":
                out += [b[0], ""]
        return "\n".join(out).rstrip() + "\n"

    def html(self) -> str:
        css = (
            "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}"
            "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
            "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}"
            "td.text{text-align:left;max-width:700px}"
            "img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}"
            "mark{background:#ffe066;padding:0 .1em}code{background:#f4f4f4;padding:0 .2em}"
            ".caption{color:#555;font-style:italic}"
        )
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(self.title)}</title><style>{css}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, b in self.blocks:
            if kind == "heading":
                out.append(f"<h{b[0]}>{_inline_html(b[1])}</h{b[0]}>")
            elif kind == "para":
                out.append(f"<p>{_inline_html(b)}</p>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{_inline_html(x)}</li>" for x in b) + "</ul>")
            elif kind == "table":
                rows, cols, digits, caption, csv_name = b
                if caption:
                    tail = f" (<code>{html.escape(csv_name)}</code>)" if csv_name else ""
                    out.append(f'<p class="caption">{_inline_html(caption)}{tail}</p>')
                if not rows:
                    out.append("<p>(no rows)</p>")
                    continue
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c), digits))}</td>" for c in cols) + "</tr>"
                    for r in rows
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "figure":
                path, caption = b
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_inline_html(caption)}</figcaption></figure>"
                )
            elif kind == "raw":
                out.append(b[1])
        out.append("</body></html>")
        return "\n".join(out) + "\n"


# -- sections ------------------------------------------------------------------------------------------------
def _sci(p: float) -> str:
    return "" if p is None or np.isnan(p) else f"{p:.1e}"


def _section_runs(rep: Report, runs: Sequence[RunAnalysis], opts: AnalyzeOptions, notes: list[str]) -> None:
    rep.heading("Runs")
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
    rep.table(rows, digits=4, csv_name="runs.csv")
    rep.bullets(notes)


def _section_magnitude(rep: Report, runs: Sequence[RunAnalysis], opts: AnalyzeOptions) -> None:
    rep.heading("1. Magnitude as popularity")
    rep.para(
        "Spearman rank correlation between each node's training degree and the L2 norm of its graph embedding "
        "(the raw, un-normalised vectors). A high correlation means the norm encodes popularity: dot-product "
        "scores then favour popular items, and L2 normalisation (cosine) removes exactly this signal."
    )
    rows = []
    panels = []
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
        ii = embedding_map.subsample(len(r.item_degree), opts.max_scatter_points, opts.seed)
        uu = embedding_map.subsample(len(r.user_degree), opts.max_scatter_points, opts.seed)
        panels.append(
            {
                "label": r.label,
                "item_degree": r.item_degree[ii],
                "item_norm": np.linalg.norm(r.items, axis=1)[ii],
                "item_rho": mi["spearman"],
                "user_degree": r.user_degree[uu],
                "user_norm": np.linalg.norm(r.users, axis=1)[uu],
                "user_rho": mu["spearman"],
            }
        )
    rep.table(rows, digits=3, csv_name="magnitude.csv", caption="Spearman(degree, L2 norm) per run")
    path = geometry.plot_magnitude(panels, rep.out_dir / "magnitude.png")
    rep.figure(path, "Graph-embedding L2 norm against log(1 + training degree); rho = Spearman correlation.")


def _section_similarity(rep: Report, runs: Sequence[RunAnalysis], opts: AnalyzeOptions) -> None:
    rep.heading("2. Similarity statistics (Table 4)")
    rep.para(
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
                    "embedding": "graph g_i" if name == "graph" else "text t_i",
                    "mean": s["mean"],
                    "std": s["std"],
                    "min": s["min"],
                    "25%": s["p25"],
                    "75%": s["p75"],
                    "max": s["max"],
                }
            )
    rep.table(rows, digits=4, csv_name="similarity.csv", caption="Cosine similarity of random item pairs")
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
        rep.para(
            "Cross-modal alignment: mean cosine between an item's graph and text embeddings, against random "
            "(graph, text) pairs of different items."
        )
        rep.table(align, digits=4, csv_name="alignment.csv")
    series = [(r.label, r.similarity_values["graph"]) for r in runs]
    col = geometry.run_colors([r.label for r in runs])
    path = geometry.plot_similarity_hist(
        series, rep.out_dir / "similarity_graph.png", "Graph item embeddings", colors=col
    )
    rep.figure(path, "Distribution of the cosine similarity of random item pairs (graph embeddings).")
    tseries = [(r.label, r.similarity_values["text"]) for r in runs if "text" in r.similarity_values]
    if tseries:
        path = geometry.plot_similarity_hist(
            tseries, rep.out_dir / "similarity_text.png", "Text item embeddings", colors=col
        )
        rep.figure(path, "Distribution of the cosine similarity of random item pairs (text embeddings).")


def _section_dims(rep: Report, runs: Sequence[RunAnalysis], opts: AnalyzeOptions) -> None:
    rep.heading("3. Dimension utilisation (Figure 4)")
    rep.para(
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
                    "embedding": "graph g_i" if name == "graph" else "text t_i",
                    "dim": d["dim"],
                    "eff. rank (normalised)": d["eff_rank_norm"],
                    "eff. rank / dim": d["eff_rank_norm_frac"],
                    "eff. rank (raw)": d["eff_rank_raw"],
                    "top-1 energy": d["top1_energy_norm"],
                    "var max/min (normalised)": d["var_max_min_norm"],
                    "var max/min (raw)": d["var_max_min_raw"],
                }
            )
    rep.table(rows, digits=3, csv_name="dimensions.csv", caption="Effective rank and variance spread")
    series = [(r.label, r.variances["graph"]) for r in runs]
    path = geometry.plot_dimension_variance(
        series,
        rep.out_dir / "dim_variance.png",
        "Per-dimension variance of graph item embeddings",
        colors=geometry.run_colors([r.label for r in runs]),
    )
    rep.figure(path, "Histogram of per-dimension variances (L2-normalised graph item embeddings), runs overlaid.")
    panels = [("graph item embeddings", [(r.label, r.spectra["graph"]) for r in runs])]
    text = [(r.label, r.spectra["text"]) for r in runs if "text" in r.spectra]
    if text:
        panels.append(("text item embeddings", text))
    path = geometry.plot_spectrum(
        panels,
        rep.out_dir / "spectrum.png",
        "Singular-value spectrum (centred, L2-normalised rows)",
        colors=geometry.run_colors([r.label for r in runs]),
    )
    rep.figure(path, "Normalised singular-value spectra s_k / s_1 (a flatter curve uses more dimensions).")


def _section_longtail(rep: Report, runs: Sequence[RunAnalysis], opts: AnalyzeOptions, notes: list[str]) -> None:
    rep.heading("4. Long-tail: contribution of popularity groups")
    rep.para(
        f"Items are split into {opts.n_groups} groups holding about the same number of training interactions "
        "(group 0 = long tail with many rarely bought items, the last group = a few very popular items). Each "
        f"group's contribution to Recall@{opts.k} and NDCG@{opts.k} on the TEST split counts only the hits on "
        "that group's items; the contributions add up to the overall metric (the 'total' row)."
    )
    results = {r.label: r.longtail for r in runs if r.longtail is not None}
    hashes = {r.dataset_hash for r in runs}
    if len(hashes) > 1:
        notes.append("the runs use different datasets: the group composition shown is the first run's")
        rep.para("Note: the runs use different datasets; the items / interactions columns are the first run's.")
    for m, name in (("recall", "Recall"), ("ndcg", "NDCG")):
        rows = longtail.longtail_rows(results, m)
        rep.table(rows, digits=4, csv_name=f"longtail_{m}.csv", caption=f"Contribution to {name}@{opts.k} (test)")
    path = longtail.plot_longtail(
        results,
        rep.out_dir / "longtail.png",
        title=f"Popularity-group contributions (test, K={opts.k})",
        colors=geometry.run_colors([r.label for r in runs]),
    )
    rep.figure(path, f"Contribution of each popularity group to Recall@{opts.k} and NDCG@{opts.k}.")


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


def _section_anchoring(rep: Report, runs: Sequence[RunAnalysis], opts: AnalyzeOptions) -> None:
    rep.heading("5. Semantic anchoring (Tables 5-8)")
    with_lime = [r for r in runs if r.anchoring is not None]
    if not with_lime:
        reasons = sorted({n for r in runs for n in r.notes if "anchoring" in n})
        rep.para("No run was explained: " + ("; ".join(reasons) or "no run has a text tower") + ".")
        return
    rep.para(
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
    rows = []
    for r in with_lime:
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
        rows.append(row)
    rep.table(rows, digits=4, csv_name="anchoring_summary.csv", caption="Comparison across runs")
    if any(r.anchoring["has_objective"] for r in with_lime):
        rep.para(
            f"objective P@{opts.precision_k}: share of the built-in dataset's objective words among the "
            f"{opts.precision_k} words with the highest mean positive contribution (words seen in >= "
            f"{with_lime[0].anchoring['min_count']} explanations); the base rate is the share of objective words "
            "among all explained word occurrences (what a random ranking would give)."
        )
    checks = ", ".join(f"{r.label}: {r.anchoring['encoder_check_cos']:.5f}" for r in with_lime)
    rep.para(
        "Encoder check (cosine between our re-encoding of an item text and the run's stored text embedding of "
        f"that item; 1 = the explained function is the trained one): {checks}."
    )
    path = anchoring.plot_class_contributions(
        {r.label: r.anchoring["classes"] for r in with_lime},
        rep.out_dir / "anchoring_classes.png",
        "Mean LIME contribution per word class",
        colors=geometry.run_colors([r.label for r in runs]),
    )
    rep.figure(path, "Mean LIME weight per word class (change of cos(g_ui, t) when the word is present).")
    all_words = []
    for r in with_lime:
        all_words += [{"run": r.label, **w} for w in r.anchoring["words"]]
    if all_words:
        (rep.out_dir / "anchoring_words.csv").write_text(
            csv_table(all_words, ["run", "word", "class", "mean", "std", "sum", "count"]), encoding="utf-8"
        )
    for r in with_lime:
        a = r.anchoring
        rep.heading(f"5.{with_lime.index(r) + 1} {r.label}", 3)
        n_rev = a["n"] - a["n_item_text_fallback"]
        rep.para(
            f"{a['n']} interactions explained ({n_rev} with their review, {a['n_item_text_fallback']} with the item "
            f"text), {a['perturbations']} perturbations each: {a['seconds']:.1f} s "
            f"({a['seconds_per_interaction']:.2f} s per interaction; building the encoder {a['encoder_seconds']:.1f} s)."
        )
        crows = [{k: v for k, v in c.items()} for c in a["classes"] if c["occurrences"]]
        rep.table(crows, digits=4, caption="Word classes (cf. Tables 5-7)")
        slug = _slug(r.run_dir.name)
        rep.table(
            _word_rows(a["top_positive"]),
            digits=4,
            csv_name=f"anchoring_top_positive_{slug}.csv",
            caption=f"Most positive words (anchors; frequency >= {a['min_count']})",
        )
        rep.table(
            _word_rows(a["top_negative"]),
            digits=4,
            csv_name=f"anchoring_top_negative_{slug}.csv",
            caption=f"Most negative words (frequency >= {a['min_count']})",
        )
        if a["examples"]:
            md = [
                "*Example reviews (cf. Table 8), top-3 positive words highlighted*",
                "",
                "| signal | cos(g_ui, t) | anchor share | text |",
                "|---|---|---|---|",
            ]
            hrows = []
            for ex in a["examples"]:
                e = ex["explanation"]
                text = e.text if len(e.text) <= 400 else e.text[:400] + " ..."
                md_text = anchoring.highlight(text, ex["top"], "markdown").replace("|", "\\|")
                md.append(f"| {ex['signal']} | {e.similarity:.3f} | {ex['share']:.2f} | {md_text} |")
                hrows.append(
                    f"<tr><td>{html.escape(ex['signal'])}</td><td>{e.similarity:.3f}</td><td>{ex['share']:.2f}</td>"
                    f'<td class="text">{anchoring.highlight(text, ex["top"], "html")}</td></tr>'
                )
            html_text = (
                '<p class="caption">Example reviews (cf. Table 8), top-3 positive words highlighted</p>'
                "<table><thead><tr><th>signal</th><th>cos(g_ui, t)</th><th>anchor share</th><th>text</th></tr>"
                "</thead><tbody>" + "".join(hrows) + "</tbody></table>"
            )
            rep.raw("\n".join(md), html_text)
            anchor_cls = "objective" if a["has_objective"] else "content"
            rep.para(
                f"Anchor share: the share of the explanation's positive weight carried by {anchor_cls} words; "
                "'strong / objective' are the explained reviews where it is highest, 'weak / subjective' where it "
                "is lowest."
            )


def _section_maps(rep: Report, runs: Sequence[RunAnalysis], opts: AnalyzeOptions, notes: list[str]) -> None:
    rep.heading("6. Embedding map (Figure 1)")
    method = opts.projection
    if method == "auto" and not embedding_map.umap_available():
        notes.append("umap-learn is not installed: the embedding maps use PCA (pip install 'symcere[maps]' for UMAP)")
    rep.para(
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
        path, used = embedding_map.plot_embedding_map(
            r.items,
            r.item_text,
            r.item_degree,
            rep.out_dir / f"map_{n}_{_slug(r.run_dir.name)}.png",
            r.label,
            method=method,
            seed=opts.seed,
            max_points=opts.max_map_points,
        )
        what = "graph and text" if r.item_text is not None else "graph (the run has no text embeddings)"
        rep.figure(path, f"{r.label}: {what} item embeddings, {used.upper()}.")


def _json_ready(runs: Sequence[RunAnalysis]) -> list[dict[str, Any]]:
    out = []
    for r in runs:
        d: dict[str, Any] = {
            "label": r.label,
            "run_dir": str(r.run_dir),
            "model": r.model,
            "switches": r.switches,
            "dataset": r.dataset,
            "magnitude": r.magnitude,
            "similarity": r.similarity,
            "alignment": r.alignment,
            "dimensions": r.dims,
            "seconds": r.seconds,
            "notes": r.notes,
        }
        if r.longtail is not None:
            lt = r.longtail
            d["longtail"] = {
                "k": lt["k"],
                "total": lt["total"],
                "contrib": {m: v.tolist() for m, v in lt["contrib"].items()},
                "groups": lt["summary"],
            }
        if r.anchoring is not None:
            a = r.anchoring
            d["anchoring"] = {
                k: a[k]
                for k in (
                    "n",
                    "perturbations",
                    "seconds",
                    "seconds_per_interaction",
                    "mean_similarity",
                    "mean_r2",
                    "encoder_check_cos",
                    "min_count",
                    "classes",
                    "top_positive",
                    "top_negative",
                )
            }
            for k in ("precision", "objective_rate"):
                if k in a:
                    d["anchoring"][k] = a[k]
        out.append(d)
    return out


def analyze(run_dirs: Sequence[str | Path], out_dir: str | Path, opts: AnalyzeOptions | None = None) -> dict[str, Any]:
    """Analyse ``run_dirs`` side by side and write the report into ``out_dir``.

    Returns ``{"report_md", "report_html", "files", "runs" (list of RunAnalysis), "seconds"}``.
    """
    opts = opts or AnalyzeOptions()
    t_start = time.perf_counter()
    if not run_dirs:
        raise SymcereError("give at least one run directory")
    dirs = [Path(p) for p in run_dirs]
    cfgs = []
    for d in dirs:
        cfg_path = d / "config.yaml"
        if not cfg_path.is_file():
            raise SymcereError(f"{d} is not a symcere run directory (no config.yaml)")
        cfgs.append(yaml.safe_load(cfg_path.read_text(encoding="utf-8")))
    labels = run_labels(dirs, cfgs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    encoders: dict[tuple, Any] = {}
    runs = []
    for d, label in zip(dirs, labels, strict=True):
        _log(opts, f"analysing {label}")
        runs.append(analyze_run(d, label, opts, encoders))
    encoders.clear()

    notes: list[str] = []
    for r in runs:
        notes += [f"{r.label}: {n}" for n in r.notes]
    rep = Report(out, "symcere analysis report")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rep.para(
        f"Generated {stamp} by `symcere analyze` for {len(runs)} run(s); seed {opts.seed}, {opts.n_pairs:,} item "
        f"pairs, {opts.n_groups} popularity groups at K={opts.k}, LIME "
        + (f"on {opts.lime_samples} interactions x {opts.lime_perturbations} perturbations." if opts.lime else "off.")
    )
    # the run table comes first, but its notes are known only once every section ran: the sections are built
    # into a second document that is appended after it
    section_notes: list[str] = []
    body = Report(out, rep.title)
    _log(opts, "writing the report")
    _section_magnitude(body, runs, opts)
    _section_similarity(body, runs, opts)
    _section_dims(body, runs, opts)
    _section_longtail(body, runs, opts, section_notes)
    _section_anchoring(body, runs, opts)
    _section_maps(body, runs, opts, section_notes)
    _section_runs(rep, runs, opts, notes + section_notes)
    rep.blocks += body.blocks
    rep.files += body.files

    (out / "analysis.json").write_text(json.dumps(_json_ready(runs), indent=2, default=float) + "\n", encoding="utf-8")
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(rep.markdown(), encoding="utf-8")
    html_path.write_text(rep.html(), encoding="utf-8")
    seconds = time.perf_counter() - t_start
    _log(opts, f"done in {seconds:.1f} s: {md_path}, {html_path}")
    return {
        "report_md": md_path,
        "report_html": html_path,
        "files": [md_path, html_path, out / "analysis.json", *rep.files],
        "runs": runs,
        "seconds": seconds,
    }
