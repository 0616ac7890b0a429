"""The numbers of ``symcere analyze``: load each trained run (:func:`symcere.training.run.load_run`), take its
embeddings and compute every per-run analysis: magnitude as popularity, Table 4 similarity statistics and
dimension use (:mod:`~symcere.analysis.geometry`), long-tail contributions (:mod:`~symcere.analysis.longtail`)
and LIME semantic anchoring, Tables 5-8 (:mod:`~symcere.analysis.anchoring`).

Runs are processed one at a time (model loaded, analysed, released); a :class:`RunAnalysis` keeps the numbers
and the few arrays the cross-run figures need.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from symcere.analysis import anchoring, embedding_map, geometry, longtail
from symcere.errors import SymcereError

__all__ = [
    "AnalyzeOptions",
    "RunAnalysis",
    "analysis_json",
    "analyze_run",
    "analyze_runs",
    "describe_run",
    "load_configs",
    "magnitude_panel",
    "run_labels",
    "text_encode_fn",
]


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


def log(opts: AnalyzeOptions, msg: str) -> None:
    """A progress line on stderr (unless ``opts.progress`` is off)."""
    if opts.progress:
        print(f"[analyze] {msg}", file=sys.stderr, flush=True)


# -- run description ----------------------------------------------------------------------------------------------
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


def load_configs(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """The ``config.yaml`` of each run directory (an error names the first directory that is no run)."""
    cfgs = []
    for d in run_dirs:
        cfg_path = d / "config.yaml"
        if not cfg_path.is_file():
            raise SymcereError(f"{d} is not a symcere run directory (no config.yaml)")
        cfgs.append(yaml.safe_load(cfg_path.read_text(encoding="utf-8")))
    return cfgs


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float64)


# -- semantic anchoring ---------------------------------------------------------------------------------------------
def text_encode_fn(model: Any, encoders: dict[tuple, Any]) -> Callable[[list[str]], np.ndarray]:
    """``texts -> (n, d)``: the run's text tower (``model.text``) applied to raw texts, memoised per run.

    The tower's encoder (LoRA / full) embeds the texts, then the tower's projection maps them to the graph
    size, as ``TextTower.all_items`` does for the item texts. A frozen tower holds only cached item-text
    embeddings: a frozen ``TextEncoder`` is built from the tower's options (``tower.opts``) and shared, through
    ``encoders``, between runs whose encoder settings agree.
    """
    import torch

    from symcere.text import TextEncoder

    tower = model.text
    enc = tower.encoder
    if enc is None:
        o = tower.opts
        key = (o.model, o.pooling, o.max_tokens, o.bf16, o.item_pooling)
        if key not in encoders:
            encoders[key] = TextEncoder(o)
        enc = encoders[key]
    weight = tower.proj.weight
    memo: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in memo]
        if todo:
            with torch.no_grad():
                hidden = enc.encode(todo).to(device=weight.device, dtype=weight.dtype)
                out = tower.proj(hidden).cpu().double().numpy()
            for t, v in zip(todo, out, strict=True):
                memo[t] = v
        return np.stack([memo[t] for t in texts])

    return encode


def anchoring_for_run(
    model: Any,
    dataset: Any,
    cfg: Mapping[str, Any],
    emb: Mapping[str, np.ndarray],
    opts: AnalyzeOptions,
    encoders: dict[tuple, Any],
) -> dict[str, Any]:
    """LIME semantic anchoring (Tables 5-8) of a seeded sample of the run's training interactions: word
    contributions, class summary, top words, example reviews and, on the built-in dataset, objective P@k."""
    synthetic = dataset.meta.get("synthetic") or {}
    objective = synthetic.get("objective_words")
    classify = anchoring.WordClassifier(objective=frozenset(objective) if objective else None)
    t_build = time.perf_counter()
    encode = text_encode_fn(model, encoders)
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


# -- one run ----------------------------------------------------------------------------------------------------
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
        log(opts, f"{label}: LIME on {opts.lime_samples} interactions x {opts.lime_perturbations} perturbations")
        ra.anchoring = anchoring_for_run(model, dataset, cfg, emb, opts, encoders)
        ra.seconds["lime"] = ra.anchoring["seconds"]
    del model
    return ra


def analyze_runs(run_dirs: Sequence[Path], labels: Sequence[str], opts: AnalyzeOptions) -> list[RunAnalysis]:
    """:func:`analyze_run` of each run in turn; frozen text encoders are shared between runs."""
    encoders: dict[tuple, Any] = {}
    runs = []
    for d, label in zip(run_dirs, labels, strict=True):
        log(opts, f"analysing {label}")
        runs.append(analyze_run(d, label, opts, encoders))
    encoders.clear()
    return runs


# -- figure data and JSON ------------------------------------------------------------------------------------------
def magnitude_panel(r: RunAnalysis, opts: AnalyzeOptions) -> dict[str, Any]:
    """Seeded subsample (``opts.max_scatter_points`` per node type) of a run's degrees and embedding norms,
    for :func:`symcere.analysis.plots.plot_magnitude`."""
    ii = embedding_map.subsample(len(r.item_degree), opts.max_scatter_points, opts.seed)
    uu = embedding_map.subsample(len(r.user_degree), opts.max_scatter_points, opts.seed)
    return {
        "label": r.label,
        "item_degree": r.item_degree[ii],
        "item_norm": np.linalg.norm(r.items, axis=1)[ii],
        "item_rho": r.magnitude["items"]["spearman"],
        "user_degree": r.user_degree[uu],
        "user_norm": np.linalg.norm(r.users, axis=1)[uu],
        "user_rho": r.magnitude["users"]["spearman"],
    }


_JSON_ANCHORING = (
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


def analysis_json(runs: Sequence[RunAnalysis]) -> list[dict[str, Any]]:
    """The numbers of every run as JSON-ready dicts (``analysis.json``; arrays as lists, no explanations)."""
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
            d["anchoring"] = {k: a[k] for k in _JSON_ANCHORING}
            for k in ("precision", "objective_rate"):
                if k in a:
                    d["anchoring"][k] = a[k]
        out.append(d)
    return out
