"""Mini-batches of training interactions with uniformly sampled negatives."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from scipy import sparse

from symcere.errors import SymcereError


class InteractionSampler:
    """Shuffled batches of training interactions ``(users, pos)`` plus ``neg`` (B, n_neg): items drawn
    uniformly from those the user has NOT interacted with in training (rejection sampling, vectorised).

    ``shard=(rank, world)`` (data-parallel training, ``training/distributed.py``): every rank draws the same
    permutation and takes its share of each global batch of ``batch_size`` (positions ``rank::world``), so the
    ranks' batches are disjoint and cover every interaction exactly once per epoch, with the same number of
    steps on every rank (a last global batch smaller than ``world`` joins the one before); negatives come from
    a per-rank generator seeded from the shared one. ``world=1`` is the single-process sampler.
    """

    def __init__(
        self, train: sparse.csr_matrix, batch_size: int, num_negatives: int = 1, shard: tuple[int, int] = (0, 1)
    ):
        coo = train.tocoo()
        order = np.lexsort((coo.col, coo.row))
        self.users = coo.row[order].astype(np.int64)
        self.items = coo.col[order].astype(np.int64)
        self.n_items = train.shape[1]
        self.batch_size = int(batch_size)
        self.num_negatives = int(num_negatives)
        self._keys = self.users * self.n_items + self.items  # sorted, for membership tests
        self._full_users = np.flatnonzero(np.diff(train.indptr) >= self.n_items)
        self.rank, self.world = int(shard[0]), int(shard[1])
        if not 0 <= self.rank < self.world:
            raise ValueError(f"shard must be (rank, world) with 0 <= rank < world, got {shard}")
        if self.world > 1 and min(self.batch_size, len(self.users)) < self.world:
            raise SymcereError(
                f"{self.world} processes need train.batch_size and the training interactions to be >= {self.world} "
                f"(got batch_size={self.batch_size}, {len(self.users)} interactions)"
            )

    def __len__(self) -> int:
        if self.world > 1:
            return len(self.global_batches())
        return int(np.ceil(len(self.users) / self.batch_size))

    def global_batches(self) -> list[tuple[int, int]]:
        """``[start, stop)`` of each step's global batch in the epoch's permutation (sharded sampler)."""
        n, b = len(self.users), self.batch_size
        bounds = [(s, min(s + b, n)) for s in range(0, n, b)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < self.world:
            bounds[-2:] = [(bounds[-2][0], n)]
        return bounds

    def interacted(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, len(self._keys) - 1)
        return self._keys[pos] == keys

    def sample_negatives(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = np.repeat(users, self.num_negatives)
        neg = rng.integers(0, self.n_items, size=len(u))
        for _ in range(100):
            bad = self.interacted(u, neg)
            if len(self._full_users):
                bad &= ~np.isin(u, self._full_users)  # a user who saw every item: nothing to reject
            if not bad.any():
                break
            neg[bad] = rng.integers(0, self.n_items, size=int(bad.sum()))
        return neg.reshape(len(users), self.num_negatives)

    def epoch(self, rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        perm = rng.permutation(len(self.users))
        if self.world > 1:
            yield from self._shard_epoch(perm, np.random.default_rng([int(rng.integers(2**63)), self.rank]))
            return
        for start in range(0, len(perm), self.batch_size):
            idx = perm[start : start + self.batch_size]
            users, pos = self.users[idx], self.items[idx]
            batch = {"users": torch.from_numpy(users), "pos": torch.from_numpy(pos)}
            if self.num_negatives > 0:
                batch["neg"] = torch.from_numpy(self.sample_negatives(users, rng))
            yield batch

    def _shard_epoch(self, perm: np.ndarray, neg_rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        for start, stop in self.global_batches():
            idx = perm[start:stop][self.rank :: self.world]
            users, pos = self.users[idx], self.items[idx]
            batch = {"users": torch.from_numpy(users), "pos": torch.from_numpy(pos)}
            if self.num_negatives > 0:
                batch["neg"] = torch.from_numpy(self.sample_negatives(users, neg_rng))
            yield batch
