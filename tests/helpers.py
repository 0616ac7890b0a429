"""Tiny datasets and a fake text tower shared by the training / model / CLI tests.

``tiny_reviews`` makes ~30 users x 40 items of clustered interactions (users of cluster c mostly review items
of cluster c, and the review texts use cluster words), written with ``symcere.data.build_dataset``; the
``tiny_dataset`` fixtures in ``conftest.py`` build it once per session. ``FakeTextTower`` stands in for the
MiniLM text tower so SymCERE tests never load a language model.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from torch import nn

from symcere.config import load_config
from symcere.data import Dataset, Review, build_dataset

CLUSTER_WORDS = (
    ("guitar", "string", "chord", "strum", "fret"),
    ("drum", "stick", "cymbal", "snare", "beat"),
    ("piano", "key", "pedal", "hammer", "melody"),
)
#: an item reviewed once, by the last interaction of user u000: it lands in test, with no training edge
COLD_ITEM = "i_cold"


def tiny_reviews(
    n_users: int = 30, n_items: int = 40, per_user: int = 8, seed: int = 0, cold_item: bool = True
) -> list[Review]:
    """Clustered reviews: user u prefers cluster u % 3 (3 in 4 interactions), items i belong to i % 3."""
    rng = np.random.default_rng(seed)
    n_clusters = len(CLUSTER_WORDS)
    reviews = []
    t = 1_600_000_000
    for u in range(n_users):
        c = u % n_clusters
        own = [i for i in range(n_items) if i % n_clusters == c]
        other = [i for i in range(n_items) if i % n_clusters != c]
        n_own = (3 * per_user) // 4
        items = list(rng.choice(own, n_own, replace=False)) + list(rng.choice(other, per_user - n_own, replace=False))
        rng.shuffle(items)
        for k, i in enumerate(items):
            words = CLUSTER_WORDS[int(i) % n_clusters]
            text = " ".join(rng.choice(words, 6)) + f" item{i} sound"
            reviews.append(
                Review(user=f"u{u:03d}", item=f"i{int(i):03d}", timestamp=t + 1000 * k + u, rating=4.0, text=text)
            )
        if cold_item and u == 0:
            reviews.append(
                Review(user="u000", item=COLD_ITEM, timestamp=t + 10**6, rating=5.0, text="guitar chord fret")
            )
    return reviews


def build_tiny_dataset(out: Path, *, k_core: int = 0, **kw) -> Dataset:
    """``tiny_reviews(**kw)`` preprocessed into ``out`` and loaded."""
    build_dataset(tiny_reviews(**kw), out, name="tiny", k_core=k_core)
    return Dataset.load(out)


def small_config(model: str, *overrides: str) -> dict:
    """A configuration that trains in well under a second per epoch on the tiny dataset."""
    base = [
        "model.dim=16",
        "train.threads=1",
        "train.batch_size=64",
        "train.lr=0.01",
        "train.eval_every_steps=1",
        "train.max_epochs=5",
    ]
    if model in ("lightgcn", "ngcf", "sgl", "symcere", "dgclr"):
        base.append("model.layers=2")
    # SymCERE tests check the paper's equations: start from the faithful preset (text frozen: no LoRA here)
    preset = "paper" if model == "symcere" else None
    if preset:
        base.append("text.mode=frozen")
    return load_config(model, preset=preset, overrides=[*base, *overrides])


class FakeTextTower(nn.Module):
    """A deterministic stand-in for ``symcere.text.TextTower``.

    Each item has a fixed random "hidden" text vector (a buffer); ``forward`` projects it with a trainable
    linear layer. ``view=True`` adds noise drawn from ``self._rng`` (stateful like the real tower's view
    sampler, so that resume tests see whether the model re-seeds it).
    """

    def __init__(self, n_items: int, out_dim: int, hidden: int = 12, seed: int = 0, noise: float = 0.3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(n_items, hidden, generator=g))
        self.proj = nn.Linear(hidden, out_dim)
        self.noise = noise
        self._rng = np.random.default_rng(seed)
        self.hidden_size = hidden

    def reseed(self, seed) -> None:
        self._rng = np.random.default_rng(seed)

    def forward(self, item_ids: torch.Tensor, view: bool = False) -> torch.Tensor:
        h = self.table[item_ids]
        if view:
            noise = torch.from_numpy(self._rng.standard_normal(h.shape).astype(np.float32)).to(h.device)
            h = h + self.noise * noise
        return self.proj(h)

    @torch.no_grad()
    def all_items(self) -> torch.Tensor:
        return self.proj(self.table)


_fake_ids = itertools.count()


class FakeDataset:
    """n_users x n_items random training interactions (``per_user`` each) with short texts: the attributes a
    model reads from a ``Dataset``, without files. Each instance gets its own content hash (the training
    adjacency is cached by it)."""

    def __init__(self, n_users: int = 30, n_items: int = 40, per_user: int = 6, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n_users, self.n_items = n_users, n_items
        self.meta = {"content_hash": f"fake-{next(_fake_ids)}"}
        pairs = {(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)}
        arr = np.array(sorted(pairs), dtype=np.int64)
        self._train = (arr[:, 0], arr[:, 1])
        self.train_reviews = [f"review {k} of user {u}" for k, u in enumerate(arr[:, 0])]
        self.item_texts = [f"item {i} text" for i in range(n_items)]

    def split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        assert split == "train"
        return self._train

    def matrix(self, split: str) -> sparse.csr_matrix:
        u, i = self.split_arrays(split)
        return sparse.csr_matrix((np.ones(len(u)), (u, i)), shape=(self.n_users, self.n_items))
