"""The review words behind a recommendation: exact leave-one-word-out (LOO) through the text tower.

For user u and item i with review text x (the item's training reviews), SymCERE's text similarity is
``s(u, x) = <hat(g_u), hat(t(x))>`` with ``t(x) = W f_text(x) + b`` (section 3.1.2, Eq. 3; ``text_scores``).
The weight of a word w of x is ``s(u, x) - s(u, x without w)``: every occurrence of w (a ``\\w+`` token,
case-insensitive) is deleted and the text re-encoded by the model's own encoder; positive weights are words
that pull the item's text towards the user. This is exact, not a surrogate (unlike LIME, section 6.2): no
sampling, no linear fit. Encoding cost is kept down without approximation:

- with ``text.item_pooling=review_mean`` only the reviews that contain w are re-encoded (the others keep
  their embedding in the mean);
- a word whose every occurrence lies past a review's ``text.max_tokens`` truncation cannot change that
  review's embedding: it is not re-encoded there (its weight from that review is exactly 0).

The LOO embeddings of an item do not depend on the user, so ``LooCache`` computes them once per item text and
any user's explanation is then one matrix-vector product. The item's anchor words (semantic anchoring, section
6) are the same LOO weights against the item's mean cross-modal positive
``a_i = mean_u hat((g_u + g_i) / 2)`` over its training users u (the anchor of Eq. 6-9), stop-words left out.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from symcere import losses
from symcere.text.masking import split_reviews

WORD = re.compile(r"\w+")
_SPACES = re.compile(r"[ \t]{2,}")

METHOD = (
    "exact leave-one-word-out: weight = s(user, reviews) - s(user, reviews without every occurrence of the word), "
    "s = cosine of the user's graph embedding and the text tower's embedding of the item's reviews, "
    "re-encoded by the model's own (frozen) text encoder"
)
ANCHOR_METHOD = (
    "the same leave-one-word-out weights against the item's mean cross-modal positive mean_u hat((g_u + g_i) / 2) "
    "over its training users (Eq. 6-9), stop-words left out"
)


def distinct_words(text: str) -> list[str]:
    """Lower-cased ``\\w+`` words of ``text`` in order of first appearance."""
    return list(dict.fromkeys(m.group(0).lower() for m in WORD.finditer(text)))


def without_word(text: str, word: str) -> str:
    """``text`` with every ``\\w+`` token equal to ``word`` (case-insensitive) deleted, spaces collapsed."""
    w = word.lower()
    out = WORD.sub(lambda m: "" if m.group(0).lower() == w else m.group(0), text)
    return _SPACES.sub(" ", out).strip(" \t")


def visible_words(tokenizer: Any, text: str, max_tokens: int) -> set[str] | None:
    """Words with an occurrence inside the first ``max_tokens`` tokens of ``text`` (None: the tokenizer gives no
    character offsets, so every word counts as visible)."""
    try:
        enc = tokenizer(text, truncation=True, max_length=int(max_tokens), return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        return None
    ends = [int(e) for s, e in enc["offset_mapping"] if e > s]
    cut = max(ends) if ends else 0
    return {m.group(0).lower() for m in WORD.finditer(text) if m.start() < cut}


@dataclass
class LooTable:
    """Projected text embeddings of an item's text: row 0 the full text, row n+1 without ``words[n]``."""

    words: list[str]
    embeddings: torch.Tensor  # (len(words) + 1, dim)
    n_words: int  # distinct words of the text, tested or provably without effect
    encoded: int  # texts the encoder ran on


def loo_table(encoder: Any, project: Callable[[torch.Tensor], torch.Tensor], text: str) -> LooTable:
    """Leave-one-word-out embeddings of ``text`` with ``encoder`` (a ``symcere.text.TextEncoder``) followed by
    ``project`` (the tower's ``W . + b``), pooled as the encoder pools (per review for ``review_mean``)."""
    opts = encoder.opts
    per_review = opts.item_pooling == "review_mean"
    parts = split_reviews(text) if per_review else [text]
    jobs: dict[str, list[tuple[int, str]]] = {}
    for r, part in enumerate(parts):
        visible = visible_words(encoder.tokenizer, part, opts.max_tokens)
        for w in distinct_words(part):
            if visible is None or w in visible:
                jobs.setdefault(w, []).append((r, without_word(part, w)))
    words = list(jobs)
    flat = [t for w in words for _, t in jobs[w]]
    hidden = encoder.encode(list(parts) + flat)  # (R + jobs, h) in input order
    base, loo = hidden[: len(parts)], hidden[len(parts) :]
    total = base.sum(0)
    rows = [total / len(parts)]
    at = 0
    for w in words:
        row = total.clone()
        for r, _ in jobs[w]:
            row = row - base[r] + loo[at]
            at += 1
        rows.append(row / len(parts))
    emb = project(torch.stack(rows))
    return LooTable(words, emb, len(distinct_words(text)), len(parts) + len(flat))


def loo_weights(similarity: torch.Tensor) -> torch.Tensor:
    """``s(full) - s(without word)`` from similarities ``(len(words) + 1,)`` (row 0 the full text)."""
    return similarity[0] - similarity[1:]


def top_words(words: Sequence[str], weights: torch.Tensor, n: int, skip: frozenset[str] = frozenset()) -> list:
    """The ``n`` words of largest |weight| (ties: first appearance) as ``[{"word", "weight"}]``, ``skip`` left out."""
    vals = weights.detach().double().cpu().tolist()
    order = sorted((j for j, w in enumerate(words) if w not in skip), key=lambda j: (-abs(vals[j]), j))
    return [{"word": words[j], "weight": float(vals[j])} for j in order[: max(0, int(n))]]


def anchor_vector(
    users: torch.Tensor, items: torch.Tensor, item: int, item_users: torch.Tensor, sphere: bool = True
) -> torch.Tensor:
    """``mean_u hat((g_u + g_i) / 2)`` over the item's training users (graph embeddings ``users``, ``items``);
    ``sphere=False``: without the normalisation (the "w/o Norm" ablation aligns raw vectors)."""
    g = (users[item_users] + items[item].unsqueeze(0)) / 2
    return (losses.l2_normalize(g) if sphere else g).mean(0)


class LooCache:
    """Thread-safe LRU of ``LooTable`` per key; one build per key at a time, all builds serialised by ``lock``
    (the encoder is the expensive shared resource)."""

    def __init__(self, build: Callable[[str], LooTable], max_items: int = 256, lock: threading.Lock | None = None):
        self.build = build
        self.max_items = int(max_items)
        self.lock = lock or threading.Lock()
        self._tables: OrderedDict[Any, LooTable] = OrderedDict()
        self._guard = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any, text: str) -> LooTable:
        with self._guard:
            table = self._tables.get(key)
            if table is not None:
                self._tables.move_to_end(key)
                self.hits += 1
                return table
        with self.lock:  # re-check: another thread may have built it while this one waited
            with self._guard:
                table = self._tables.get(key)
            if table is None:
                table = self.build(text)
                with self._guard:
                    self.misses += 1
                    self._tables[key] = table
                    while len(self._tables) > self.max_items:
                        self._tables.popitem(last=False)
            else:
                with self._guard:
                    self.hits += 1
            return table

    def __len__(self) -> int:
        return len(self._tables)
