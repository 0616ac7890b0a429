"""The built-in synthetic review corpus (`symcere data synth`): seeded, deterministic, with known structure.

Generative story (a small musical-instruments shop):

* every item has one value per attribute slot (``category``, ``function``, ``target``, ``material``,
  ``brand``); the values are plain objective words ("amplifier", "wireless", "beginner", "maple", invented
  brand names), and every slot but ``category`` is drawn from a per-category distribution;
* item popularity is a power law (Zipf over a random ranking); a share of items is released late;
* every user prefers a few ``category``/``function``/``target`` values (affinity in [0, 1]);
* every item first gets ``item_seed_interactions`` buyers drawn by activity x exp(taste_strength x
  affinity) among users active after its release: the long tail (items with a handful of, mostly late,
  interactions) is taste-driven and its attributes are discoverable from review text only;
* the rest of each user's sequence is drawn from popularity x exp(taste_strength x affinity), and with
  ``drift`` later interactions follow the taste more and popularity less (so the chronological split
  matters);
* timestamps are day precision, increasing per user, with occasional same-day ties;
* a review mixes sentiment phrases (polarity follows the rating, which follows the affinity), generic
  filler and, in each descriptive slot with probability ``objective_density``, one of the item's attribute
  words (``mention_noise`` of those mentions name a random word of the same slot instead); some reviews are
  nearly empty. ``objective_density=0`` gives reviews without any item information.

The ground truth (objective vocabulary, attribute words per item, tastes per user, the config) is returned
next to the records and stored in ``dataset.json`` under ``synthetic`` by :func:`make_synthetic_dataset`.
The ``symcere data synth`` command lives in :mod:`symcere.cli`.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from symcere.data.records import Review
from symcere.errors import SymcereError

__all__ = [
    "GENERIC_WORDS",
    "SLOTS",
    "TASTE_SLOTS",
    "SynthConfig",
    "generate_reviews",
    "make_synthetic_dataset",
    "parse_overrides",
    "slot_vocabularies",
]

SLOTS: tuple[str, ...] = ("category", "function", "target", "material", "brand")
TASTE_SLOTS: tuple[str, ...] = ("category", "function", "target")
# how strongly each taste slot counts in the affinity (normalised to a maximum of 1)
_TASTE_WEIGHTS = np.array([1.0, 0.7, 0.5])
_PHASES = 5  # drift resolution: a user's sequence is sampled in this many parts
# Dirichlet concentration of each non-category slot given the category (small = category-specific)
_SLOT_ALPHA = {"function": 0.4, "target": 1.0, "material": 0.5, "brand": 0.3}

_BASE_WORDS: dict[str, tuple[str, ...]] = {
    "category": (
        "amplifier",
        "cable",
        "tuner",
        "strings",
        "pedal",
        "mount",
        "microphone",
        "headphones",
        "keyboard",
        "drumsticks",
        "capo",
        "strap",
        "stand",
        "case",
        "metronome",
        "picks",
        "speaker",
        "mixer",
        "ukulele",
        "harmonica",
        "synthesizer",
        "interface",
        "looper",
        "cymbal",
    ),
    "function": (
        "waterproof",
        "wireless",
        "rechargeable",
        "foldable",
        "adjustable",
        "portable",
        "lightweight",
        "shielded",
        "digital",
        "acoustic",
        "electric",
        "compact",
        "padded",
        "magnetic",
        "bluetooth",
        "chromatic",
        "stereo",
        "analog",
        "noiseless",
        "braided",
    ),
    "target": (
        "beginner",
        "professional",
        "kids",
        "studio",
        "touring",
        "practice",
        "worship",
        "classroom",
        "gigging",
        "travel",
        "jazz",
        "metal",
    ),
    "material": (
        "maple",
        "rosewood",
        "nickel",
        "bronze",
        "steel",
        "nylon",
        "leather",
        "chrome",
        "walnut",
        "aluminum",
        "rubber",
        "titanium",
        "mahogany",
        "brass",
        "carbon",
        "silicone",
    ),
    "brand": (),
}
_SYLLABLES = (
    "ka",
    "lo",
    "ven",
    "tri",
    "mo",
    "zar",
    "quel",
    "dor",
    "fi",
    "nex",
    "bra",
    "sul",
    "tek",
    "vo",
    "ri",
    "plu",
    "gan",
    "xo",
    "mar",
    "eli",
    "ton",
    "vis",
    "ru",
    "sha",
    "bel",
    "sto",
    "dri",
    "oro",
    "zen",
    "pha",
)

_POS_ADJ = ("great", "excellent", "perfect", "awesome", "nice", "amazing", "fantastic", "good", "wonderful")
_NEG_ADJ = ("terrible", "awful", "useless", "disappointing", "poor", "junk", "bad", "horrible", "worthless")
_MID_ADJ = ("okay", "decent", "fine", "average", "alright", "acceptable")
_POS_VERB = ("love", "really like", "recommend", "enjoy", "am happy with")
_NEG_VERB = ("regret buying", "returned", "hate", "gave up on", "am unhappy with")
_MID_VERB = ("can live with", "do not mind", "am fine with")
_GENERIC_NOUNS = ("product", "item", "thing", "one", "purchase", "unit", "gear", "piece")
_FILLERS = (
    "arrived on time",
    "shipping was quick",
    "the box was a bit dented",
    "bought it last month",
    "got it as a gift",
    "as described in the listing",
    "price was fair",
    "i use it every day",
    "had it for a few weeks",
    "my old one finally died",
    "came with instructions",
    "my son uses it",
)
# placeholders: {c} {f} {t} {m} {b} attribute slots (objective word or a generic stand-in), {a} sentiment
# adjective, {v} sentiment verb, {F} filler phrase, {n} star count
_TEMPLATES = (
    "the {c} is {a}",
    "{a} {f} {c}",
    "i {v} this {f} {c}",
    "{a} for {t}",
    "the {m} finish feels {a}",
    "{b} did a {a} job",
    "used it as a {f} {c} for {t}",
    "{a} , {v} it",
    "{F}",
    "{F} , {a} {c}",
    "my {c} from {b} is {a}",
)
_TITLE_TEMPLATES = ("{a} {c}", "{a}", "{f} {c}", "{n} stars", "{a} for {t}")
# generic stand-ins when a slot does not name the item's attribute ("" drops the word)
_GENERIC = {
    "c": _GENERIC_NOUNS,
    "f": ("",),
    "t": ("the price", "the money", "everyday use", "home use"),
    "m": ("",),
    "b": ("the maker", "the company", "this brand", "the seller"),
}
_SLOT_KEYS = {"c": 0, "f": 1, "t": 2, "m": 3, "b": 4}  # placeholder -> index in SLOTS
_STARS = ("one", "two", "three", "four", "five")
_SHORT = ("", "ok", "great", "good", "meh", "love it", "fine")

GENERIC_WORDS: frozenset[str] = frozenset(
    w
    for group in (
        _POS_ADJ,
        _NEG_ADJ,
        _MID_ADJ,
        _POS_VERB,
        _NEG_VERB,
        _MID_VERB,
        _GENERIC_NOUNS,
        *_GENERIC.values(),
        _FILLERS,
        _TEMPLATES,
        _TITLE_TEMPLATES,
        _STARS,
        _SHORT,
        ("stars", "star"),
    )
    for phrase in group
    for w in re.sub(r"\{\w\}", " ", phrase).replace(",", " ").split()
)


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the synthetic corpus.

    Sizes are before k-core (the defaults give about 1,500 users, 2,950 items and 25,000 interactions after
    the 5-core). ``n_interactions`` is met exactly unless a user would need more than ``n_items // 2`` items
    or an item finds too few buyers active after its release.
    """

    n_users: int = 1500
    n_items: int = 3700
    n_interactions: int = 28200
    seed: int = 0
    n_categories: int = 12
    n_functions: int = 16
    n_targets: int = 10
    n_materials: int = 12
    n_brands: int = 40
    zipf_exponent: float = 0.9  # item popularity ~ (rank + zipf_offset * n_items) ** -zipf_exponent
    zipf_offset: float = 0.0
    user_activity_sigma: float = 0.9  # log-normal spread of interactions per user
    min_user_interactions: int = 5
    taste_strength: float = 8.0  # log-boost of a fully matching item over a non-matching one
    drift: float = 0.6  # 0: constant; 1: first interaction ignores taste, popularity fades over time
    objective_density: float = 0.5  # probability that a descriptive slot names an item attribute
    mention_noise: float = 0.03  # share of attribute mentions naming a random word of the same slot
    empty_review_rate: float = 0.04  # share of nearly-empty reviews (0 or 1-2 words)
    sentences_per_review: float = 3.0  # mean
    new_item_fraction: float = 0.2  # items released late (few training interactions)
    item_seed_interactions: int = 4  # taste-driven buyers every item gets (part of n_interactions)
    tie_rate: float = 0.05  # probability an interaction shares the previous one's day
    start_date: str = "2014-01-01"
    span_days: int = 6 * 365

    def __post_init__(self) -> None:
        for name in (
            "n_users",
            "n_items",
            "n_categories",
            "n_functions",
            "n_targets",
            "n_materials",
            "n_brands",
            "min_user_interactions",
            "span_days",
        ):
            if getattr(self, name) < 1:
                raise SymcereError(f"SynthConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "objective_density",
            "mention_noise",
            "empty_review_rate",
            "new_item_fraction",
            "tie_rate",
            "drift",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SymcereError(f"SynthConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if max(self.n_categories, self.n_functions, self.n_targets, self.n_materials, self.n_brands) > 2000:
            raise SymcereError("SynthConfig: at most 2000 values per attribute slot")
        if self.item_seed_interactions < 0:
            raise SymcereError("SynthConfig.item_seed_interactions must be >= 0")
        floor = self.n_users * self.min_user_interactions + self.n_items * self.item_seed_interactions
        if self.n_interactions < floor:
            raise SymcereError(
                "SynthConfig.n_interactions must be >= n_users * min_user_interactions + "
                f"n_items * item_seed_interactions = {floor}"
            )
        if self.min_user_interactions * 2 > self.n_items:
            raise SymcereError("SynthConfig.n_items is too small for min_user_interactions")
        if self.zipf_exponent < 0 or self.taste_strength < 0 or self.sentences_per_review <= 0:
            raise SymcereError("SynthConfig: zipf_exponent, taste_strength >= 0 and sentences_per_review > 0")

    @classmethod
    def tiny(cls, **overrides: Any) -> SynthConfig:
        """A small preset for fast tests: about 150 users, 200 items, 2,500 interactions after 5-core."""
        base = cls(
            n_users=150,
            n_items=205,
            n_interactions=2550,
            n_categories=6,
            n_functions=8,
            n_targets=5,
            n_materials=6,
            n_brands=10,
        )
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict."""
        return asdict(self)


def _invented_words(n: int, taken: set[str], seed: int) -> list[str]:
    """``n`` distinct pronounceable words from syllables, none in ``taken`` (deterministic per seed)."""
    rng = random.Random(seed)
    out: list[str] = []
    seen = set(taken)
    while len(out) < n:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3))))
        if len(word) >= 4 and word not in seen:
            seen.add(word)
            out.append(word)
    return out


def slot_vocabularies(cfg: SynthConfig) -> dict[str, list[str]]:
    """The objective words of every slot (depends on the slot sizes only, not on the seed)."""
    sizes = {
        "category": cfg.n_categories,
        "function": cfg.n_functions,
        "target": cfg.n_targets,
        "material": cfg.n_materials,
        "brand": cfg.n_brands,
    }
    taken = set(GENERIC_WORDS) | {w for words in _BASE_WORDS.values() for w in words}
    vocab: dict[str, list[str]] = {}
    for k, slot in enumerate(SLOTS):
        words = list(_BASE_WORDS[slot][: sizes[slot]])
        extra = _invented_words(sizes[slot] - len(words), taken, seed=1000 + k)
        taken.update(extra)
        vocab[slot] = words + extra
    return vocab


def _poisson(rand: Callable[[], float], lam: float) -> int:
    """A Poisson draw from uniform draws ``rand()`` (Knuth's method; ``lam`` is small here)."""
    limit, k, p = math.exp(-lam), 0, rand()
    while p > limit:
        k += 1
        p *= rand()
    return k


def _ids(prefix: str, n: int) -> list[str]:
    width = len(str(n - 1))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def _items(cfg: SynthConfig, sizes: list[int], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Attribute value indices (n_items, n_slots), log-popularity and release day (-1 = from the start)."""
    cat_share = rng.dirichlet(np.full(cfg.n_categories, 2.0))
    attrs = np.empty((cfg.n_items, len(SLOTS)), dtype=np.int64)
    attrs[:, 0] = rng.choice(cfg.n_categories, cfg.n_items, p=cat_share)
    for k, slot in enumerate(SLOTS[1:], start=1):
        table = rng.dirichlet(np.full(sizes[k], _SLOT_ALPHA[slot]), size=cfg.n_categories)
        cum = np.cumsum(table[attrs[:, 0]], axis=1)
        attrs[:, k] = np.minimum((cum < rng.random(cfg.n_items)[:, None]).sum(axis=1), sizes[k] - 1)
    rank = rng.permutation(cfg.n_items) + 1.0
    logpop = -cfg.zipf_exponent * np.log(rank + cfg.zipf_offset * cfg.n_items)
    new = rng.random(cfg.n_items) < cfg.new_item_fraction
    release = np.where(new, np.floor(rng.uniform(0.25, 0.9, cfg.n_items) * cfg.span_days), -1.0)
    return attrs, logpop, release


def _tastes(cfg: SynthConfig, attrs: np.ndarray, sizes: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Per taste slot a (n_users, n_values) mask of preferred values (1-3 each; common values more often)."""
    prefs = []
    for k, extra in enumerate((0.3, 0.4, 0.15)):
        share = np.bincount(attrs[:, k], minlength=sizes[k]) + 1.0
        n_pref = np.minimum(1 + rng.binomial(2, extra, cfg.n_users), sizes[k])
        keys = np.log(share / share.sum()) + rng.gumbel(size=(cfg.n_users, sizes[k]))  # weighted, no repeats
        order = np.argsort(-keys, axis=1)
        mask = np.zeros((cfg.n_users, sizes[k]), dtype=bool)
        for j in range(int(n_pref.max())):
            rows = np.flatnonzero(n_pref > j)
            mask[rows, order[rows, j]] = True
        prefs.append(mask)
    return prefs


def _seed_users(
    cfg: SynthConfig,
    aff: np.ndarray,
    log_activity: np.ndarray,
    window_end: np.ndarray,
    release: np.ndarray,
    rng: np.random.Generator,
) -> list[list[int]]:
    """Items seeded into each user: every item draws ``item_seed_interactions`` users who are active after
    its release, by activity x exp(taste_strength x affinity) (so every item has a few taste-driven buyers)."""
    seeded: list[list[int]] = [[] for _ in range(cfg.n_users)]
    m = min(cfg.item_seed_interactions, cfg.n_users)
    if m == 0:
        return seeded
    for lo in range(0, cfg.n_items, 512):
        hi = min(lo + 512, cfg.n_items)
        keys = log_activity[None, :] + cfg.taste_strength * aff[:, lo:hi].T
        keys += rng.gumbel(size=keys.shape)
        keys[window_end[None, :] < release[lo:hi, None]] = -np.inf
        top = np.argpartition(-keys, m - 1, axis=1)[:, :m]
        for i, users in zip(range(lo, hi), top.tolist(), strict=True):
            for u in users:
                if np.isfinite(keys[i - lo, u]):
                    seeded[u].append(i)
    return seeded


def _user_days(n: int, start: float, end: float, tie_rate: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` non-decreasing interaction days inside [start, end], some repeating the previous day."""
    days = np.sort(rng.uniform(start, end, n)).astype(np.int64)
    ties = rng.random(n) < tie_rate
    ties[0] = False
    for j in np.flatnonzero(ties):
        days[j] = days[j - 1]
    return np.maximum.accumulate(days)


def _place_seeds(days: np.ndarray, seeds: list[int], release: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions for seeded items (-1 = free) at days after their release; may push later days forward."""
    out = np.full(len(days), -1, dtype=np.int64)
    for i in rng.permutation(len(seeds)).tolist():
        item = seeds[i]
        free = np.flatnonzero(out < 0)
        ok = free[days[free] >= release[item]]
        if len(ok):
            pos = int(ok[rng.integers(len(ok))])
        else:  # no free day after the release: move the last free one (and all later ones) forward
            pos = int(free[-1])
            days[pos:] = np.maximum(days[pos:], int(release[item]))
        out[pos] = item
    return out


def _sample_sequence(
    out: np.ndarray,
    days: np.ndarray,
    logpop: np.ndarray,
    aff: np.ndarray,
    release: np.ndarray,
    cfg: SynthConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Fill the free (-1) positions of one user's sequence: no repeats, only released items.

    The sequence is cut into ``_PHASES`` equal parts; part ``k`` of ``K`` (``p = k / (K - 1)``) samples from
    popularity ** (1 - drift * p / 2) x exp(taste_strength * (1 - drift * (1 - p)) * affinity).
    """
    n, n_items = len(days), len(logpop)
    taken = set(out[out >= 0].tolist())
    phase = (np.arange(n) * _PHASES) // n
    for k in range(_PHASES):
        todo = np.flatnonzero((phase == k) & (out < 0)).tolist()
        if not todo:
            continue
        p = k / (_PHASES - 1)
        taste = cfg.taste_strength * (1.0 - cfg.drift * (1.0 - p))
        logit = (1.0 - 0.5 * cfg.drift * p) * logpop + taste * aff
        cum = np.cumsum(np.exp(logit - logit.max()))
        for j in todo:
            for _ in range(50):  # rejection sampling; exact masked draw as a fallback
                i = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), n_items - 1)
                if i not in taken and release[i] <= days[j]:
                    break
            else:
                w = np.diff(cum, prepend=0.0)
                w[list(taken)] = 0.0
                released = np.where(release > days[j], 0.0, w)
                w = released if released.sum() > 0 else w  # nothing left released: allow a pre-release
                if w.sum() <= 0:  # all remaining weight underflowed: uniform over the untaken items
                    w = np.ones(n_items)
                    w[list(taken)] = 0.0
                c = np.cumsum(w)
                i = min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), n_items - 1)
            out[j] = i
            taken.add(i)
    return out


def _parse(template: str) -> list[tuple[str, str]]:
    """``"the {c} is {a}"`` -> ``[("the ", "c"), (" is ", "a")]`` (literal text, then a placeholder or "")."""
    parts = template.split("{")
    out, lead = [], parts[0]
    for part in parts[1:]:
        out.append((lead, part[0]))
        lead = part[2:]
    return [*out, (lead, "")]


class _Writer:
    """Turns (item attributes, rating) into review text and title."""

    def __init__(self, cfg: SynthConfig, item_words: list[list[str]], vocab: dict[str, list[str]], seed: int):
        self.density, self.noise = cfg.objective_density, cfg.mention_noise
        self.empty, self.sentences = cfg.empty_review_rate, cfg.sentences_per_review
        self.item_words = item_words
        self.vocab = [vocab[s] for s in SLOTS]
        self.rand = random.Random(seed).random
        self.templates = [_parse(t) for t in _TEMPLATES]
        self.titles = [_parse(t) for t in _TITLE_TEMPLATES]

    def _pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rand() * len(seq))]

    def _fill(self, template: list[tuple[str, str]], item: int, rating: int) -> str:
        rand, pick = self.rand, self._pick
        pol = 1 if rating >= 4 else (-1 if rating <= 2 else pick((-1, 0, 1)))
        if pol and rand() < 0.08:  # mixed feelings
            pol = -pol
        out = []
        for lead, key in template:
            out.append(lead)
            if key in _SLOT_KEYS:
                if rand() >= self.density:
                    out.append(pick(_GENERIC[key]))
                elif rand() < self.noise:
                    out.append(pick(self.vocab[_SLOT_KEYS[key]]))
                else:
                    out.append(self.item_words[item][_SLOT_KEYS[key]])
            elif key == "a":
                out.append(pick(_POS_ADJ if pol > 0 else (_NEG_ADJ if pol < 0 else _MID_ADJ)))
            elif key == "v":
                out.append(pick(_POS_VERB if pol > 0 else (_NEG_VERB if pol < 0 else _MID_VERB)))
            elif key == "F":
                out.append(pick(_FILLERS))
            elif key == "n":
                out.append(_STARS[rating - 1])
        return " ".join("".join(out).split())

    def review(self, item: int, rating: int, verbosity: float) -> tuple[str, str]:
        """(text, title) of one review."""
        if self.rand() < self.empty:
            return self._pick(_SHORT), self._pick(("", f"{_STARS[rating - 1]} stars"))
        n_sent = 1 + _poisson(self.rand, max(self.sentences * verbosity - 1.0, 0.0))
        sentences = [self._fill(self._pick(self.templates), item, rating) for _ in range(n_sent)]
        text = ". ".join(s[0].upper() + s[1:] for s in sentences) + "."
        title = self._fill(self._pick(self.titles), item, rating)
        return text, title[0].upper() + title[1:]


def _taste_words(u: int, prefs: list[np.ndarray], vocab: dict[str, list[str]]) -> str:
    return " ".join(vocab[s][v] for k, s in enumerate(TASTE_SLOTS) for v in np.flatnonzero(prefs[k][u]))


def generate_reviews(cfg: SynthConfig | None = None) -> tuple[list[Review], dict[str, Any]]:
    """Generate the corpus: ``(reviews in chronological order, ground truth)``.

    The ground truth holds ``objective_words`` (sorted), ``slots`` (words per slot), ``taste_slots``,
    ``item_words`` (item id -> its attribute words, one per slot in ``SLOTS`` order, space-separated),
    ``user_tastes`` (user id -> its preferred words of the ``taste_slots``, space-separated), ``new_items``
    (late releases) and ``config``. Ids cover every generated user/item, including those a later k-core
    removes.
    """
    cfg = cfg or SynthConfig()
    ss = np.random.SeedSequence([cfg.seed, 0x5EED])
    rng_items, rng_users, rng_seq, rng_rate = (np.random.default_rng(s) for s in ss.spawn(4))
    text_seed = int(ss.generate_state(1)[0])
    vocab = slot_vocabularies(cfg)
    sizes = [len(vocab[s]) for s in SLOTS]

    attrs, logpop, release = _items(cfg, sizes, rng_items)
    prefs = _tastes(cfg, attrs, sizes, rng_users)
    weight = _TASTE_WEIGHTS / _TASTE_WEIGHTS.sum()
    aff = sum(weight[k] * prefs[k][:, attrs[:, k]] for k in range(len(TASTE_SLOTS))).astype(np.float32)

    # users: activity, rating bias, verbosity, activity window
    log_activity = rng_users.normal(0.0, cfg.user_activity_sigma, cfg.n_users)
    bias = rng_users.normal(0.0, 0.5, cfg.n_users)
    verbosity = rng_users.lognormal(0.0, 0.4, cfg.n_users)
    start = rng_users.uniform(0.0, 0.85, cfg.n_users) * cfg.span_days
    end = np.minimum(start + rng_users.uniform(0.15, 0.8, cfg.n_users) * cfg.span_days, cfg.span_days - 1.0)
    seeded = _seed_users(cfg, aff, log_activity, end, release, rng_seq)
    rest = cfg.n_interactions - sum(map(len, seeded)) - cfg.n_users * cfg.min_user_interactions
    activity = np.exp(log_activity)
    counts = cfg.min_user_interactions + rng_users.multinomial(max(rest, 0), activity / activity.sum())

    rows: list[tuple[int, int, int, int]] = []  # (day, user, item, rating)
    cap = max(cfg.min_user_interactions, cfg.n_items // 2)
    for u in range(cfg.n_users):
        n = max(min(int(counts[u]) + len(seeded[u]), cap), len(seeded[u]))
        days = _user_days(n, start[u], end[u], cfg.tie_rate, rng_seq)
        items = _place_seeds(days, seeded[u], release, rng_seq)
        items = _sample_sequence(items, days, logpop, aff[u].astype(np.float64), release, cfg, rng_seq)
        noise = rng_rate.normal(0.0, 0.8, n)
        ratings = np.clip(np.rint(3.6 + 1.5 * aff[u, items] + bias[u] + noise), 1, 5).astype(np.int64)
        rows.extend(zip(days.tolist(), [u] * n, items.tolist(), ratings.tolist(), strict=True))
    rows.sort(key=lambda r: r[0])  # stable: per-user order survives same-day ties

    user_ids, item_ids = _ids("u", cfg.n_users), _ids("i", cfg.n_items)
    all_words = [w for s in SLOTS for w in vocab[s]]
    item_words = [[vocab[s][attrs[i, k]] for k, s in enumerate(SLOTS)] for i in range(cfg.n_items)]
    writer = _Writer(cfg, item_words, vocab, text_seed)
    base = int(datetime.fromisoformat(cfg.start_date).replace(tzinfo=UTC).timestamp())
    reviews = []
    for day, u, i, rating in rows:
        text, title = writer.review(i, rating, float(verbosity[u]))
        reviews.append(
            Review(
                user=user_ids[u],
                item=item_ids[i],
                timestamp=base + day * 86400,
                rating=float(rating),
                text=text,
                title=title,
            )
        )

    truth: dict[str, Any] = {
        "objective_words": sorted(all_words),
        "slots": vocab,
        "taste_slots": list(TASTE_SLOTS),
        "item_words": {item_ids[i]: " ".join(item_words[i]) for i in range(cfg.n_items)},
        "user_tastes": {user_ids[u]: _taste_words(u, prefs, vocab) for u in range(cfg.n_users)},
        "new_items": [item_ids[i] for i in np.flatnonzero(release >= 0)],
        "config": cfg.to_dict(),
    }
    return reviews, truth


def make_synthetic_dataset(
    out_dir: str | Path,
    cfg: SynthConfig | None = None,
    overwrite: bool = False,
    *,
    name: str = "synthetic",
    k_core: int = 5,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
) -> Path:
    """Generate the corpus and write it as a dataset dir (via ``build_dataset``); the ground truth goes to
    ``dataset.json`` under ``synthetic``. Returns the dataset dir."""
    from symcere.data.preprocess import build_dataset

    cfg = cfg or SynthConfig()
    reviews, truth = generate_reviews(cfg)
    return build_dataset(
        reviews,
        out_dir,
        name=name,
        k_core=k_core,
        ratios=tuple(ratios),
        extra_meta={"synthetic": truth},
        overwrite=overwrite,
    )


def parse_overrides(pairs: Sequence[str], base: SynthConfig | None = None) -> SynthConfig:
    """``["seed=3", "objective_density=0"]`` applied to ``base`` (default config), checked by the one config
    validator (``symcere.config.validate``: unknown field -> the nearest one, wrong type -> the expected type)."""
    from symcere.config import build, parse_override

    base = base or SynthConfig()
    layers = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        layers.append(parse_override(key.strip().replace("-", "_") + sep + value))
    return build(SynthConfig, [asdict(base), *layers])
