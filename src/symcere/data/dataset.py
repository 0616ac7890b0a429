"""``Dataset``: a dataset directory, or a pandas frame run through the same protocol, in memory (id maps,
split arrays, CSR matrices, texts)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

from symcere.data.preprocess import (
    DATASET_FILES,
    DEFAULT_TEXT_BUDGET,
    FORMAT_VERSION,
    SPLITS,
    DatasetTables,
    content_hash,
    meta_json,
    tables_from_frame,
    write_tables,
)
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
    """A dataset in memory: :meth:`load` a directory, or build one from a pandas frame with :meth:`from_frame`.

    ``path`` is the directory it was loaded from (None when built in memory); ``interactions``, ``users``
    and ``items`` are the three dataset tables, ``meta`` the ``dataset.json`` content.
    """

    #: the text column of each table file: read on first use (an ID-only model never holds the texts)
    TEXT_COLUMNS = {"interactions.parquet": "review", "items.parquet": "text"}

    def __init__(
        self,
        path: Path | None,
        meta: dict[str, Any],
        interactions: pd.DataFrame,
        users: pd.DataFrame,
        items: pd.DataFrame,
    ) -> None:
        self.path = path
        self.meta = meta
        self.name: str = meta["name"] if "name" in meta else (path.name if path is not None else "")
        self._interactions = interactions
        self.users = users.reset_index(drop=True)
        self._items = items.reset_index(drop=True)
        self.user_ids: list[str] = [str(x) for x in users["user_id"].tolist()]
        self.item_ids: list[str] = [str(x) for x in items["item_id"].tolist()]
        self.n_users = len(self.user_ids)
        self.n_items = len(self.item_ids)
        split = interactions["split"].to_numpy()
        self._rows = {s: np.flatnonzero(split == s) for s in SPLITS}
        self._column_order: dict[str, list[str]] = {}  # a loaded table's columns, text column included
        self._texts: dict[str, list[str]] = {}
        self._matrices: dict[str, sp.csr_matrix] = {}

    @property
    def interactions(self) -> pd.DataFrame:
        """One row per review (``user``, ``item``, ``rating``, ``timestamp``, ``split``, ``review``, ...)."""
        return self._with_text("interactions.parquet")

    @property
    def items(self) -> pd.DataFrame:
        """One row per item, in index order (``item``, ``item_id``, ``text``, ``n_train``)."""
        return self._with_text("items.parquet")

    @property
    def item_texts(self) -> list[str]:
        """Each item's text (training reviews only), in item index order."""
        if "items" not in self._texts:
            self._texts["items"] = [str(x) for x in self.items["text"].tolist()]
        return self._texts["items"]

    @item_texts.setter
    def item_texts(self, texts: Sequence[str]) -> None:  # e.g. a text ablation edits the texts in memory
        self._texts["items"] = self._checked_texts(texts, self.n_items, "item_texts")

    @property
    def train_reviews(self) -> list[str]:
        """The training interactions' review texts, in :meth:`split_arrays` order."""
        if "train" not in self._texts:
            reviews = self.interactions["review"].to_numpy()[self._rows["train"]]
            self._texts["train"] = [str(x) for x in reviews.tolist()]
        return self._texts["train"]

    @train_reviews.setter
    def train_reviews(self, texts: Sequence[str]) -> None:
        self._texts["train"] = self._checked_texts(texts, len(self._rows["train"]), "train_reviews")

    @staticmethod
    def _checked_texts(texts: Sequence[str], n: int, name: str) -> list[str]:
        out = [str(x) for x in texts]
        if len(out) != n:
            raise SymcereError(f"{name} needs {n} texts, got {len(out)}")
        return out

    def _with_text(self, file: str) -> pd.DataFrame:
        """The table of ``file`` with its text column, read from the dataset directory on first use."""
        attr, order = ("_items", "item") if file == "items.parquet" else ("_interactions", None)
        frame, column = getattr(self, attr), self.TEXT_COLUMNS[file]
        if column in frame.columns or self.path is None:
            return frame
        try:  # the items were sorted by index when loaded: align the same way
            table = pd.read_parquet(self.path / file, columns=[order, column] if order else [column])
            text = (table.sort_values(order) if order else table)[column]
        except Exception as exc:  # pyarrow raises several types; the directory changed since load()
            raise SymcereError(f"{self.path / file}: cannot read the {column!r} column ({exc})") from None
        if len(text) != len(frame):
            raise SymcereError(
                f"{self.path / file}: changed since the dataset was loaded ({len(text)} rows, expected {len(frame)})"
            )
        frame = frame.assign(**{column: text.to_numpy()})[self._column_order.get(file, [*frame.columns, column])]
        setattr(self, attr, frame)
        return frame

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        """Load a directory written by :func:`symcere.data.build_dataset` or :meth:`save`.

        The review and item-text columns are read on first use (:attr:`interactions`, :attr:`items`,
        :attr:`item_texts`, :attr:`train_reviews`), so an ID-only model never holds the texts.
        """
        root = Path(path)
        meta = read_meta(root)
        missing = [f for f in DATASET_FILES if not (root / f).is_file()]
        if missing:
            raise SymcereError(f"{root}: incomplete dataset directory, missing {missing}")
        try:
            order = {f: [c for c in pq.read_schema(root / f).names if not c.startswith("__index_level_")]
                     for f in cls.TEXT_COLUMNS}
            for file, column in cls.TEXT_COLUMNS.items():
                if column not in order[file]:
                    raise SymcereError(f"{root / file}: no {column!r} column; rebuild it with `symcere prepare`")
            inter = pd.read_parquet(root / "interactions.parquet",
                                    columns=[c for c in order["interactions.parquet"] if c != "review"])
            users = pd.read_parquet(root / "users.parquet").sort_values("user")
            items = pd.read_parquet(root / "items.parquet",
                                    columns=[c for c in order["items.parquet"] if c != "text"]).sort_values("item")
        except SymcereError:
            raise
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise SymcereError(f"{root}: cannot read the dataset tables ({exc})") from None
        ds = cls(root, meta, inter, users, items)
        ds._column_order = order
        return ds

    @classmethod
    def from_tables(cls, tables: DatasetTables) -> Dataset:
        """An in-memory dataset (``path=None``) from the protocol's tables; ``meta`` as ``dataset.json`` reads."""
        try:
            meta = json.loads(meta_json(tables.meta))  # exactly what load() would see (tuples -> lists, ...)
        except (TypeError, ValueError) as exc:
            raise SymcereError(f"dataset meta is not JSON-serialisable ({exc}); check extra_meta") from None
        return cls(None, meta, tables.interactions, tables.users, tables.items)

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        user: Any = "user",
        item: Any = "item",
        time: Any = "time",
        text: Any = None,
        rating: Any = None,
        title: Any = None,
        k_core: int = 5,
        user_k: int | None = None,
        item_k: int | None = None,
        ratios: Sequence[float] = (0.8, 0.1, 0.1),
        text_budget: int = DEFAULT_TEXT_BUDGET,
        name: str = "frame",
        extra_meta: dict[str, Any] | None = None,
    ) -> Dataset:
        """Build a dataset from a pandas frame (one row per review, in input order), in memory.

        Runs exactly the :func:`~symcere.data.build_dataset` protocol (same rows, order, texts, stats and
        ``content_hash`` as writing the same records and loading them back); see
        :func:`~symcere.data.preprocess.tables_from_frame` for the column rules. :meth:`save` writes it out.
        """
        tables = tables_from_frame(
            df,
            user=user,
            item=item,
            time=time,
            text=text,
            rating=rating,
            title=title,
            name=name,
            k_core=k_core,
            user_k=user_k,
            item_k=item_k,
            ratios=ratios,
            text_budget=text_budget,
            extra_meta=extra_meta,
        )
        return cls.from_tables(tables)

    def tables(self) -> DatasetTables:
        """The dataset's tables and meta (what :meth:`save` writes)."""
        return DatasetTables(self.interactions, self.users, self.items, self.meta)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write this dataset as a dataset directory at ``path`` (atomically, like ``build_dataset``: a
        non-empty directory that is not a dataset is refused, an existing dataset unless ``overwrite``).

        Returns the absolute path; ``Dataset.load`` of it gives this dataset back.
        """
        if content_hash(self.interactions) != self.meta.get("content_hash"):
            raise SymcereError(
                f"cannot save dataset {self.name!r}: its interactions no longer match meta['content_hash']"
            )
        return write_tables(self.tables(), path, overwrite=overwrite)

    def split_arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) int64 arrays of one split, in (user, time) order."""
        rows = self._split_rows(split)
        return (
            self._interactions["user"].to_numpy(np.int64)[rows],
            self._interactions["item"].to_numpy(np.int64)[rows],
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
        path = None if self.path is None else str(self.path)
        return f"Dataset({self.name!r}, users={self.n_users}, items={self.n_items}, path={path!r})"
