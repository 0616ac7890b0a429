"""Word masking: the augmented text view t' of the intra-modal InfoNCE (symcere.md section 3.1.2, Eq. 10-11).

``mask_words`` masks whole words of one text; ``mask_item_text`` masks an item text, review by review when the
encoder pools per review (``text.item_pooling=review_mean``), so the masked text keeps its review boundaries.
``split_reviews`` cuts an item text back into the reviews it was joined from (``TEXT_SEPARATOR``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from symcere.data.preprocess import TEXT_SEPARATOR
from symcere.errors import SymcereError

MaskStrategy = Literal["drop", "token"]


def mask_words(
    text: str,
    rate: float,
    rng: np.random.Generator,
    strategy: MaskStrategy = "drop",
    mask_token: str = "[MASK]",
) -> str:
    """Randomly mask whole words (whitespace-separated) of ``text``: the augmented text view of Eq. 10-11.

    Each word is masked independently with probability ``rate``. ``"drop"`` deletes it (at least one word
    is always kept); ``"token"`` replaces it by ``mask_token``. Deterministic given the state of ``rng``.

    Why ``"drop"`` is the default for mean pooling: literal mask tokens wreck mean-pooled MiniLM embeddings.
    Measured with all-MiniLM-L6-v2, mean pooling, 128 tokens (mean cosine to the unmasked text, 3 seeds):

    ======================================  ===========  ===========  ===========
    texts, rate                             drop         [MASK]       [UNK]
    ======================================  ===========  ===========  ===========
    200 Amazon instrument reviews, 0.15     0.92         0.43         0.84
    200 Amazon instrument reviews, 0.30     0.84         0.30         0.68
    8 short review sentences, 0.15          0.92         0.73         0.87
    8 short review sentences, 0.30          0.81         0.47         0.72
    ======================================  ===========  ===========  ===========

    For scale, two unrelated reviews have cosine 0.21. Dropping words leaves a shorter, natural text; each
    [MASK] adds a position whose out-of-distribution hidden state enters the mean.
    """
    words = text.split()
    if not words or rate <= 0.0:
        return text
    hit = rng.random(len(words)) < rate
    if not hit.any():
        return " ".join(words)
    if strategy == "drop":
        if hit.all():
            hit[int(rng.integers(len(words)))] = False
        return " ".join(w for w, h in zip(words, hit, strict=True) if not h)
    if strategy == "token":
        return " ".join(mask_token if h else w for w, h in zip(words, hit, strict=True))
    raise SymcereError(f"unknown mask strategy {strategy!r} (use 'drop' or 'token')")


def split_reviews(text: str) -> list[str]:
    """The reviews an item text was joined from (at the dataset's separator); never empty."""
    parts = [p.strip() for p in text.split(TEXT_SEPARATOR)]
    return [p for p in parts if p] or [text]


def mask_item_text(
    text: str,
    rate: float,
    rng: np.random.Generator,
    strategy: MaskStrategy = "drop",
    mask_token: str = "[MASK]",
    per_review: bool = False,
) -> str:
    """``mask_words`` on an item text; ``per_review=True`` masks each review and re-joins them."""
    if per_review:
        return TEXT_SEPARATOR.join(mask_words(r, rate, rng, strategy, mask_token) for r in split_reviews(text))
    return mask_words(text, rate, rng, strategy, mask_token)
