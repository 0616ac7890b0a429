"""Mini-batches of training interactions with uniformly sampled negatives."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from scipy import sparse


class InteractionSampler:
    """Shuffled batches of training interactions ``(users, pos)`` plus ``neg`` (B, n_neg): items drawn
    uniformly from those the user has NOT interacted with in training (rejection sampling, vectorised)."""

    def __init__(self, train: sparse.csr_matrix, batch_size: int, num_negatives: int = 1):
        coo = train.tocoo()
        order = np.lexsort((coo.col, coo.row))
        self.users = coo.row[order].astype(np.int64)
        self.items = coo.col[order].astype(np.int64)
        self.n_items = train.shape[1]
        self.batch_size = int(batch_size)
        self.num_negatives = int(num_negatives)
        self._keys = self.users * self.n_items + self.items  # sorted, for membership tests
        self._full_users = np.flatnonzero(np.diff(train.indptr) >= self.n_items)

    def __len__(self) -> int:
        return int(np.ceil(len(self.users) / self.batch_size))

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
        for start in range(0, len(perm), self.batch_size):
            idx = perm[start : start + self.batch_size]
            users, pos = self.users[idx], self.items[idx]
            batch = {"users": torch.from_numpy(users), "pos": torch.from_numpy(pos)}
            if self.num_negatives > 0:
                batch["neg"] = torch.from_numpy(self.sample_negatives(users, rng))
            yield batch
