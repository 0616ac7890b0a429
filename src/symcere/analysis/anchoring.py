"""Semantic anchoring (symcere.md section 6.2, Tables 5-8): which review words drive cross-modal alignment.

For a training interaction ``(u, i)`` with review ``r`` the explained quantity is the cross-modal cosine
``cos(g_ui, t(r))`` between the interaction's graph embedding ``g_ui = (g_u + g_i) / 2`` (fixed) and the text
tower's embedding of the review. LIME (:class:`lime.lime_text.LimeTextExplainer`) perturbs the review by
deleting words, re-embeds every perturbed text and fits a weighted linear model of the cosine on word
presence. LIME's text explainer is written for classifiers; regression is obtained by returning the
similarity as the single "class" column and explaining label 0 (the ridge surrogate then regresses the
similarity itself), with ``feature_selection="none"`` so every word of the text gets a weight from one fit.

Word contributions are aggregated over a seeded sample of interactions: per word the mean weight over the
explanations that contain it, and its frequency (how many explanations contain it). Words are classified as

* ``objective``: ground-truth objective vocabulary (the built-in dataset's ``synthetic.objective_words``);
* ``stop-word``: scikit-learn's ``ENGLISH_STOP_WORDS`` (318 words; a shorter built-in list when scikit-learn
  is missing);
* ``sentiment``: a word of the VADER sentiment lexicon (generic sentiment);
* ``content``: everything else: on real data, where no ground truth exists, the candidates for
  objective / product terms.

(in that priority order). Texts are lower-cased before explaining (the packaged MiniLM is uncased).

``lime`` and ``vaderSentiment`` come with ``pip install 'symcere[analysis]'``; the figure is
:func:`symcere.analysis.plots.plot_class_contributions`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symcere.errors import SymcereError
from symcere.extras import require

__all__ = [
    "CLASSES",
    "Explanation",
    "WordClassifier",
    "aggregate_contributions",
    "anchor_share",
    "class_summary",
    "explain_similarity",
    "explain_many",
    "make_similarity_fn",
    "pick_examples",
    "precision_at_k",
    "prepare_text",
    "sample_interactions",
    "sentiment_lexicon",
    "stop_words",
    "tokenize",
    "top_words",
]

SPLIT_EXPRESSION = r"\W+"
CLASSES: tuple[str, ...] = ("objective", "content", "sentiment", "stop-word")

# Used only when scikit-learn is not installed (lime depends on it, so normally never): the most frequent
# English function words.
_FALLBACK_STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves""".split()
)


@functools.lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """scikit-learn's ``ENGLISH_STOP_WORDS`` (fallback: a built-in list of ~120 function words)."""
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    except ImportError:  # pragma: no cover - lime requires scikit-learn
        return _FALLBACK_STOP_WORDS
    return frozenset(ENGLISH_STOP_WORDS)


@functools.lru_cache(maxsize=1)
def sentiment_lexicon() -> frozenset[str]:
    """Lower-cased words of the VADER sentiment lexicon."""
    vader = require("vaderSentiment.vaderSentiment", "the sentiment word class of semantic anchoring")
    return frozenset(w.lower() for w in vader.SentimentIntensityAnalyzer().lexicon)


@dataclass
class WordClassifier:
    """``classifier(word) -> class`` among :data:`CLASSES` (priority objective > stop-word > sentiment >
    content). ``objective=None`` means no ground truth (real data): no word is ``objective``."""

    objective: frozenset[str] | None = None
    sentiment: frozenset[str] = field(default_factory=sentiment_lexicon)
    stop: frozenset[str] = field(default_factory=stop_words)

    def __post_init__(self) -> None:
        if self.objective is not None:
            self.objective = frozenset(w.lower() for w in self.objective)

    def __call__(self, word: str) -> str:
        w = word.lower()
        if self.objective is not None and w in self.objective:
            return "objective"
        if w in self.stop:
            return "stop-word"
        if w in self.sentiment:
            return "sentiment"
        return "content"


def tokenize(text: str) -> list[str]:
    """Lower-cased words as LIME splits them (``\\W+``)."""
    return [w for w in re.split(SPLIT_EXPRESSION, text.lower()) if w]


def prepare_text(text: str, max_words: int | None = None) -> str:
    """Lower-case ``text``, collapse whitespace and keep its first ``max_words`` whitespace-separated words
    (words past the text encoder's token limit could not influence the embedding anyway)."""
    words = text.lower().split()
    if max_words is not None:
        words = words[: max(1, int(max_words))]
    return " ".join(words)


def sample_interactions(texts: Sequence[str], n: int, seed: int = 0, min_words: int = 3) -> np.ndarray:
    """Seeded sample (without replacement) of up to ``n`` indices of ``texts`` with >= ``min_words`` words;
    when no text qualifies every index is eligible."""
    counts = np.array([len(tokenize(t)) for t in texts], dtype=np.int64)
    eligible = np.flatnonzero(counts >= min_words)
    if eligible.size == 0:
        eligible = np.arange(len(texts))
    rng = np.random.default_rng(seed)
    take = min(int(n), eligible.size)
    return np.sort(rng.choice(eligible, size=take, replace=False)).astype(np.int64)


def make_similarity_fn(
    encode: Callable[[list[str]], np.ndarray], anchor: np.ndarray
) -> Callable[[Sequence[str]], np.ndarray]:
    """``texts -> (n, 1)`` cosine between ``encode(texts)`` rows and the fixed ``anchor`` vector.

    Equal texts (frequent among LIME's perturbations of short reviews) are encoded once.
    """
    a = np.asarray(anchor, dtype=np.float64).ravel()
    a = a / max(float(np.linalg.norm(a)), 1e-12)
    memo: dict[str, float] = {}

    def similarity(texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in memo]
        if todo:
            emb = np.asarray(encode(todo), dtype=np.float64)
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            for t, v in zip(todo, emb @ a, strict=True):
                memo[t] = float(v)
        return np.array([[memo[t]] for t in texts], dtype=np.float64)

    return similarity


@dataclass
class Explanation:
    """One LIME explanation: the text, the similarity of the full text, and a weight per (distinct) word."""

    text: str
    similarity: float
    weights: dict[str, float]
    score: float = float("nan")  # R^2 of LIME's local surrogate
    meta: dict[str, Any] = field(default_factory=dict)


def explain_similarity(
    text: str,
    similarity_fn: Callable[[Sequence[str]], np.ndarray],
    num_samples: int = 200,
    seed: int = 0,
) -> Explanation:
    """LIME regression explanation of ``similarity_fn`` (``texts -> (n, 1)``) around ``text``."""
    words = tokenize(text)
    if not words:
        return Explanation(text=text, similarity=float(similarity_fn([text])[0, 0]), weights={})
    lime_text = require("lime.lime_text", "LIME semantic anchoring")
    explainer = lime_text.LimeTextExplainer(
        class_names=["similarity"],
        feature_selection="none",
        split_expression=SPLIT_EXPRESSION,
        bow=True,
        random_state=int(seed),
    )
    exp = explainer.explain_instance(
        text,
        similarity_fn,
        labels=(0,),
        num_features=len(set(words)),
        num_samples=max(2, int(num_samples)),
    )
    weights = {str(w).lower(): float(v) for w, v in exp.as_list(label=0)}
    return Explanation(
        text=text,
        similarity=float(np.asarray(exp.predict_proba).ravel()[0]),
        weights=weights,
        score=float(exp.score),
    )


def explain_many(
    texts: Sequence[str],
    similarity_fns: Sequence[Callable[[Sequence[str]], np.ndarray]],
    num_samples: int = 200,
    seed: int = 0,
    metas: Sequence[Mapping[str, Any]] | None = None,
) -> list[Explanation]:
    """:func:`explain_similarity` of each ``texts[n]`` with ``similarity_fns[n]`` and LIME seed ``seed + n``
    (the same perturbations for the same text across runs)."""
    if len(texts) != len(similarity_fns):
        raise SymcereError(f"{len(texts)} texts but {len(similarity_fns)} similarity functions")
    out = []
    for n, (text, fn) in enumerate(zip(texts, similarity_fns, strict=True)):
        e = explain_similarity(text, fn, num_samples=num_samples, seed=seed + n)
        if metas is not None:
            e.meta = dict(metas[n])
        out.append(e)
    return out


def aggregate_contributions(
    explanations: Iterable[Explanation], classify: Callable[[str], str]
) -> list[dict[str, Any]]:
    """One row per word: ``word``, ``class``, ``mean`` / ``std`` / ``sum`` of its weights over the
    explanations containing it, ``count`` (that number of explanations); sorted by mean descending."""
    acc: dict[str, list[float]] = {}
    for e in explanations:
        for w, v in e.weights.items():
            acc.setdefault(w, []).append(v)
    rows = []
    for w, vals in acc.items():
        v = np.asarray(vals)
        rows.append(
            {
                "word": w,
                "class": classify(w),
                "mean": float(v.mean()),
                "std": float(v.std()),
                "sum": float(v.sum()),
                "count": int(v.size),
            }
        )
    rows.sort(key=lambda r: (-r["mean"], r["word"]))
    return rows


def top_words(
    rows: Sequence[Mapping[str, Any]], n: int = 20, sign: str = "positive", min_count: int = 1
) -> list[Mapping[str, Any]]:
    """The ``n`` words with the largest (``positive``) or smallest (``negative``) mean contribution among
    words seen in >= ``min_count`` explanations; only words whose mean has that sign."""
    if sign not in ("positive", "negative"):
        raise SymcereError(f"sign must be 'positive' or 'negative', got {sign!r}")
    keep = [r for r in rows if r["count"] >= min_count and (r["mean"] > 0 if sign == "positive" else r["mean"] < 0)]
    keep.sort(key=lambda r: (-r["mean"] if sign == "positive" else r["mean"], r["word"]))
    return keep[:n]


def precision_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int = 20) -> float:
    """Share of relevant words among the first ``k`` of ``ranked`` (divided by ``min(k, len(ranked))``, so a
    shorter list is not penalised; ``nan`` for an empty list)."""
    head = [w.lower() for w in ranked[:k]]
    if not head:
        return float("nan")
    rel = {w.lower() for w in relevant}
    return sum(w in rel for w in head) / len(head)


def class_summary(
    explanations: Sequence[Explanation], classify: Callable[[str], str], n_examples: int = 6
) -> list[dict[str, Any]]:
    """Per word class (Tables 5-7): distinct words, occurrences (word x explanation), mean contribution per
    occurrence, share of the occurrences with a positive weight, and example words (highest mean first)."""
    per: dict[str, list[float]] = {c: [] for c in CLASSES}
    words: dict[str, dict[str, list[float]]] = {c: {} for c in CLASSES}
    for e in explanations:
        for w, v in e.weights.items():
            c = classify(w)
            per.setdefault(c, []).append(v)
            words.setdefault(c, {}).setdefault(w, []).append(v)
    rows = []
    for c, vals in per.items():
        v = np.asarray(vals)
        ranked = sorted(words[c].items(), key=lambda kv: (-float(np.mean(kv[1])), kv[0]))
        rows.append(
            {
                "class": c,
                "words": len(words[c]),
                "occurrences": int(v.size),
                "mean contribution": float(v.mean()) if v.size else float("nan"),
                "positive share": float((v > 0).mean()) if v.size else float("nan"),
                "examples": ", ".join(w for w, _ in ranked[:n_examples]),
            }
        )
    return rows


def anchor_share(
    e: Explanation, classify: Callable[[str], str], anchors: Sequence[str] = ("objective", "content")
) -> float:
    """Share of an explanation's positive weight carried by ``anchors`` classes (nan without positive weight)."""
    pos = {w: v for w, v in e.weights.items() if v > 0}
    total = sum(pos.values())
    if total <= 0:
        return float("nan")
    return sum(v for w, v in pos.items() if classify(w) in anchors) / total


def pick_examples(
    explanations: Sequence[Explanation],
    classify: Callable[[str], str],
    n: int = 2,
    n_words: int = 3,
    anchors: Sequence[str] = ("objective", "content"),
) -> list[dict[str, Any]]:
    """Table 8: the ``n`` explanations whose positive weight sits most on ``anchors`` words ("strong /
    objective") and the ``n`` where it sits least ("weak / subjective"), each with its top ``n_words``
    positive words and its anchor share (:func:`anchor_share`)."""
    scored = [(anchor_share(e, classify, anchors), k) for k, e in enumerate(explanations)]
    scored = [(s, k) for s, k in scored if not np.isnan(s)]
    scored.sort(key=lambda sk: (-sk[0], sk[1]))
    strong = [k for _, k in scored[:n]]
    weak = [k for _, k in reversed(scored[n:])][:n]
    out = []
    for kind, ks in (("strong / objective", strong), ("weak / subjective", weak)):
        for k in ks:
            e = explanations[k]
            top = [w for w, v in sorted(e.weights.items(), key=lambda kv: -kv[1]) if v > 0][:n_words]
            share = anchor_share(e, classify, anchors)
            out.append({"signal": kind, "index": k, "explanation": e, "top": top, "share": share})
    return out
