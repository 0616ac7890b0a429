"""Raw reviews -> dataset directory: dedup, iterative k-core, re-index, chronological split, item texts.

One deterministic function, :func:`build_dataset`. The dataset directory contract is in
``docs/ARCHITECTURE.md``; every parameter is recorded in ``dataset.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from symcere.data.records import Review
from symcere.errors import SymcereError

FORMAT_VERSION = 1
DATASET_FILES = ("interactions.parquet", "users.parquet", "items.parquet", "dataset.json")
SPLITS = ("train", "valid", "test")
TEXT_SEPARATOR = " \n"
MAX_LISTED_IDS = 20  # ids listed in stats (e.g. users without a training item)

_INTERACTION_SCHEMA = pa.schema(
    [
        ("user", pa.int64()),
        ("item", pa.int64()),
        ("rating", pa.float64()),
        ("timestamp", pa.int64()),
        ("split", pa.string()),
        ("review", pa.string()),
        ("order", pa.int64()),
    ]
)


def split_counts(n: int, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[int, int, int]:
    """(train, valid, test) sizes for one user's ``n`` records, RecBole 1.2.1 ``RS`` rounding.

    Ratios are normalised; valid and test get ``int(ratio * n)``, train the rest. Then, from the last part
    backwards, a part whose exact share ``ratio * n`` lies strictly in (0, 1) gets one record from train,
    as long as train still holds more than one. Pins: 5 -> 3/1/1, 10 -> 8/1/1, 20 -> 16/2/2.
    """
    total = float(sum(ratios))
    r = [x / total for x in ratios]
    cnt = [int(x * n) for x in r]
    cnt[0] = n - sum(cnt[1:])
    for i in range(1, len(r)):
        if cnt[0] <= 1:
            break
        if 0 < r[-i] * n < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt[0], cnt[1], cnt[2]


def review_text(title: str, text: str) -> str:
    """One review as ``"title. text"`` (no added dot after a title ending in . ! ?; empty parts skipped)."""
    title, text = title.strip(), text.strip()
    if title and text:
        return f"{title} {text}" if title[-1] in ".!?" else f"{title}. {text}"
    return title or text


def content_hash(interactions: pd.DataFrame) -> str:
    """sha256 over the interactions table content (column names, then values in row order)."""
    h = hashlib.sha256()
    for col in _INTERACTION_SCHEMA.names:
        h.update(col.encode() + b"\0")
        values = interactions[col]
        if col in ("split", "review"):
            for s in values.astype(str):
                b = s.encode("utf-8")
                h.update(len(b).to_bytes(8, "little") + b)
        else:
            dtype = "<f8" if col == "rating" else "<i8"
            h.update(np.ascontiguousarray(values.to_numpy(), dtype=dtype).tobytes())
    return h.hexdigest()


def is_dataset_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` holds a symcere ``dataset.json`` (any format version)."""
    meta = Path(path) / "dataset.json"
    if not meta.is_file():
        return False
    try:
        return "format_version" in json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SymcereError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not is_dataset_dir(out):
            raise SymcereError(f"refusing to write into {out}: it is a non-empty directory that is not a dataset")
        if not overwrite:
            raise SymcereError(f"dataset directory {out} already exists; pass --overwrite (overwrite=True)")


def build_dataset(
    records: Iterable[Review],
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    k_core: int = 5,
    user_k: int | None = None,
    item_k: int | None = None,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    text_budget: int = 4000,
    extra_meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Preprocess ``records`` and write a dataset directory at ``out_dir`` (atomically); return its path.

    Steps: dedup (user, item) keeping the earliest record (ties: input order); iterative k-core
    (``user_k``/``item_k`` default to ``k_core``; 0 = off); contiguous re-index sorted by original id;
    per-user chronological split (stable on timestamp, RecBole ``RS`` rounding, see :func:`split_counts`);
    item text = training reviews ``"title. text"`` in time order joined by ``" \\n"``, cut at ``text_budget``
    characters (0 = unlimited). ``extra_meta`` keys are added to ``dataset.json`` at top level.
    """
    out = Path(out_dir)
    uk = k_core if user_k is None else user_k
    ik = k_core if item_k is None else item_k
    ratios = [float(r) for r in ratios]
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise SymcereError(f"ratios must be three non-negative numbers with a positive sum, got {ratios}")
    if min(uk, ik, text_budget) < 0:
        raise SymcereError("k-core values and text_budget must be >= 0")
    reserved = {"format_version", "name", "params", "stats", "content_hash"}
    clash = sorted(reserved & set(extra_meta or {}))
    if clash:
        raise SymcereError(f"extra_meta may not set reserved dataset.json keys {clash}")
    _check_target(out, overwrite)

    df = _collect(records)
    records_read = len(df)
    if records_read == 0:
        raise SymcereError("no records read: the input is empty")

    # 1. dedup (user, item): earliest timestamp, ties by input order
    df = df.sort_values(["user_id", "item_id", "timestamp", "pos"], kind="stable")
    df = df.drop_duplicates(["user_id", "item_id"], keep="first").sort_values("pos", kind="stable")
    df["order"] = np.arange(len(df), dtype=np.int64)
    after_dedup = len(df)

    # 2. iterative k-core to a fixed point
    df, iterations = _k_core(df, uk, ik)
    if df.empty:
        raise SymcereError(
            f"k-core filtering left no interactions (user_k={uk}, item_k={ik}, {after_dedup} interactions "
            "after dedup); the data is too sparse: try --k-core 0/2"
        )

    # 3. re-index (sorted original ids)
    user_ids = np.array(sorted(df["user_id"].unique()), dtype=object)
    item_ids = np.array(sorted(df["item_id"].unique()), dtype=object)
    df["user"] = np.searchsorted(user_ids, df["user_id"].to_numpy(dtype=object)).astype(np.int64)
    df["item"] = np.searchsorted(item_ids, df["item_id"].to_numpy(dtype=object)).astype(np.int64)

    # 4. per-user chronological split (stable: equal timestamps keep input order)
    df = df.sort_values(["user", "timestamp", "order"], kind="stable").reset_index(drop=True)
    df["split"] = _assign_splits(df["user"].to_numpy(), len(user_ids), ratios)

    # 5. item texts from training reviews only
    train = df[df["split"] == "train"].sort_values(["item", "timestamp", "order"], kind="stable")
    texts = _item_texts(train, len(item_ids), text_budget)
    n_train = np.bincount(train["item"].to_numpy(), minlength=len(item_ids)).astype(np.int64)

    inter = df[list(_INTERACTION_SCHEMA.names)]
    stats = _stats(df, user_ids, item_ids, records_read, after_dedup, iterations)
    params = {
        "name": name,
        "k_core": k_core,
        "user_k": user_k,
        "item_k": item_k,
        "ratios": ratios,
        "text_budget": text_budget,
    }
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "params": params,
        "stats": stats,
        "content_hash": content_hash(inter),
        **(extra_meta or {}),
    }
    users_tab = pa.table(
        {"user": np.arange(len(user_ids), dtype=np.int64), "user_id": pa.array(list(user_ids), pa.string())}
    )
    items_tab = pa.table(
        {
            "item": np.arange(len(item_ids), dtype=np.int64),
            "item_id": pa.array(list(item_ids), pa.string()),
            "text": pa.array(texts, pa.string()),
            "n_train": n_train,
        }
    )
    inter_tab = pa.Table.from_pandas(inter, schema=_INTERACTION_SCHEMA, preserve_index=False)
    return _write_atomic(out, overwrite, inter_tab, users_tab, items_tab, meta)


def _collect(records: Iterable[Review]) -> pd.DataFrame:
    cols: dict[str, list[Any]] = {k: [] for k in ("user_id", "item_id", "timestamp", "rating", "text", "review")}
    for r in records:
        cols["user_id"].append(r.user)
        cols["item_id"].append(r.item)
        cols["timestamp"].append(r.timestamp)
        cols["rating"].append(np.nan if r.rating is None else r.rating)
        cols["text"].append(r.text or "")
        cols["review"].append(review_text(r.title or "", r.text or ""))
    n = len(cols["user_id"])
    return pd.DataFrame(
        {
            "user_id": np.array(cols["user_id"], dtype=object),
            "item_id": np.array(cols["item_id"], dtype=object),
            "timestamp": np.array(cols["timestamp"], dtype=np.int64),
            "rating": np.array(cols["rating"], dtype=np.float64),
            "text": np.array(cols["text"], dtype=object),
            "review": np.array(cols["review"], dtype=object),
            "pos": np.arange(n, dtype=np.int64),
        }
    )


def _k_core(df: pd.DataFrame, uk: int, ik: int) -> tuple[pd.DataFrame, int]:
    """Drop users with < uk and items with < ik interactions, repeatedly, until nothing changes."""
    if uk <= 0 and ik <= 0:
        return df, 0
    u = pd.factorize(df["user_id"])[0]
    i = pd.factorize(df["item_id"])[0]
    keep = np.ones(len(df), dtype=bool)
    iterations = 0
    while True:
        iterations += 1
        uc = np.bincount(u[keep], minlength=u.max() + 1 if len(u) else 0)
        ic = np.bincount(i[keep], minlength=i.max() + 1 if len(i) else 0)
        new_keep = keep & (uc[u] >= uk) & (ic[i] >= ik)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    return df[keep], iterations


def _assign_splits(users: np.ndarray, n_users: int, ratios: Sequence[float]) -> np.ndarray:
    """Split labels for rows sorted by (user, time): the first train, then valid, then test records."""
    sizes = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(len(users)) - starts[users]
    cache: dict[int, tuple[int, int, int]] = {}
    bounds = np.empty((n_users, 2), dtype=np.int64)
    for u, n in enumerate(sizes.tolist()):
        if n not in cache:
            cache[n] = split_counts(n, ratios)
        tr, va, _ = cache[n]
        bounds[u] = (tr, tr + va)
    labels = np.full(len(users), "test", dtype=object)
    labels[rank < bounds[users, 1]] = "valid"
    labels[rank < bounds[users, 0]] = "train"
    return labels


def _item_texts(train: pd.DataFrame, n_items: int, budget: int) -> list[str]:
    parts: list[list[str]] = [[] for _ in range(n_items)]
    length = [0] * n_items
    for item, review in zip(train["item"].tolist(), train["review"].tolist(), strict=True):
        if not review or (budget and length[item] >= budget):
            continue
        parts[item].append(review)
        length[item] += len(review) + len(TEXT_SEPARATOR)
    texts = [TEXT_SEPARATOR.join(p) for p in parts]
    return [t[:budget] for t in texts] if budget else texts


def _stats(
    df: pd.DataFrame,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    records_read: int,
    after_dedup: int,
    iterations: int,
) -> dict[str, Any]:
    n_u, n_i, n = len(user_ids), len(item_ids), len(df)
    lengths = df["text"].str.len().to_numpy()
    counts = df["split"].value_counts()
    has_train = np.zeros(n_u, dtype=bool)
    has_train[df.loc[df["split"] == "train", "user"].to_numpy()] = True
    no_train = [str(x) for x in user_ids[~has_train]]
    ratings = df["rating"].dropna()
    return {
        "users": n_u,
        "items": n_i,
        "interactions": n,
        "density": n / (n_u * n_i),
        "empty_texts": int((lengths == 0).sum()),
        "mean_review_length": float(lengths.mean()),
        "splits": {s: int(counts.get(s, 0)) for s in SPLITS},
        "users_without_train": {"count": len(no_train), "ids": no_train[:MAX_LISTED_IDS]},
        "items_without_train": int(n_i - df.loc[df["split"] == "train", "item"].nunique()),
        "records_read": records_read,
        "duplicates_removed": records_read - after_dedup,
        "removed_by_kcore": after_dedup - n,
        "kcore_iterations": iterations,
        "mean_rating": float(ratings.mean()) if len(ratings) else None,
        "time_span": [int(df["timestamp"].min()), int(df["timestamp"].max())],
    }


def _write_atomic(
    out: Path, overwrite: bool, inter: pa.Table, users: pa.Table, items: pa.Table, meta: dict[str, Any]
) -> Path:
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        pq.write_table(inter, tmp / "interactions.parquet")
        pq.write_table(users, tmp / "users.parquet")
        pq.write_table(items, tmp / "items.parquet")
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _check_target(out, overwrite)  # re-check: the target may have appeared meanwhile
        if out.is_dir() and any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "d")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if out.is_dir():
                out.rmdir()
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
