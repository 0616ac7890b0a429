"""``Dataset``: a loaded dataset directory (id maps, split arrays, CSR matrices, texts)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from symcere.data.preprocess import DATASET_FILES, FORMAT_VERSION, SPLITS
from symcere.errors import SymcereError


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``dataset.json`` of a dataset directory, with a clear :class:`SymcereError` when it is not one."""
    root = Path(path)
    if not root.is_dir():
        raise SymcereError(f"dataset directory not found: {root}")
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise SymcereError(
            f"{root} is not a symcere dataset directory (no dataset.json); create one with `symcere prepare`"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SymcereError(f"{meta_path}: unreadable dataset.json ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        raise SymcereError(f"{meta_path}: format_version {found!r} is not supported (expected {FORMAT_VERSION})")
    return meta


class Dataset:
    """A dataset directory in memory. Build one with :meth:`load`."""

    def __init__(
        self, path: Path, meta: dict[str, Any], interactions: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame
    ) -> None:
        self.path = path
        self.meta = meta
        self.name: str = meta.get("name", path.name)
        self.interactions = interactions
        self.user_ids: list[str] = [str(x) for x in users["user_id"].tolist()]
        self.item_ids: list[str] = [str(x) for x in items["item_id"].tolist()]
        self.item_texts: list[str] = [str(x) for x in items["text"].tolist()]
        self.n_users = len(self.user_ids)
        self.n_items = len(self.item_ids)
        split = interactions["split"].to_numpy()
        self._rows = {s: np.flatnonzero(split == s) for s in SPLITS}
        train = interactions.iloc[self._rows["train"]]
        self.train_reviews: list[str] = [str(x) for x in train["review"].tolist()]
        self._matrices: dict[str, sp.csr_matrix] = {}

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        """Load a directory written by :func:`symcere.data.build_dataset`."""
        root = Path(path)
        meta = read_meta(root)
        missing = [f for f in DATASET_FILES if not (root / f).is_file()]
        if missing:
            raise SymcereError(f"{root}: incomplete dataset directory, missing {missing}")
        try:
            inter = pd.read_parquet(root / "interactions.parquet")
            users = pd.read_parquet(root / "users.parquet").sort_values("user")
            items = pd.read_parquet(root / "items.parquet").sort_values("item")
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise SymcereError(f"{root}: cannot read the dataset tables ({exc})") from None
        return cls(root, meta, inter, users, items)

    def split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) int64 arrays of one split, in (user, time) order."""
        rows = self._split_rows(split)
        return (
            self.interactions["user"].to_numpy(np.int64)[rows],
            self.interactions["item"].to_numpy(np.int64)[rows],
        )

    def matrix(self, split: str) -> sp.csr_matrix:
        """Binary float32 CSR matrix (n_users x n_items) of one split (cached)."""
        if split not in self._matrices:
            users, items = self.split_arrays(split)
            m = sp.csr_matrix(
                (np.ones(len(users), dtype=np.float32), (users, items)),
                shape=(self.n_users, self.n_items),
                dtype=np.float32,
            )
            m.sum_duplicates()
            m.data[:] = 1.0
            self._matrices[split] = m
        return self._matrices[split]

    def train_degree_items(self) -> np.ndarray:
        """Training interactions per item (int64, length n_items)."""
        return np.diff(self.matrix("train").tocsc().indptr).astype(np.int64)

    def train_degree_users(self) -> np.ndarray:
        """Training interactions per user (int64, length n_users)."""
        return np.diff(self.matrix("train").indptr).astype(np.int64)

    def _split_rows(self, split: str) -> np.ndarray:
        if split not in self._rows:
            raise SymcereError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return self._rows[split]

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, users={self.n_users}, items={self.n_items}, path={str(self.path)!r})"
