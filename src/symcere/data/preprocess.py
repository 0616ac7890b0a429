"""Raw reviews -> dataset tables: dedup, iterative k-core, re-index, chronological split, item texts.

The protocol is computed once, in memory, into :class:`DatasetTables` (the three parquet tables and
``dataset.json`` of a dataset directory); :func:`build_dataset` adds the atomic directory write
(:func:`write_tables`), :func:`tables_from_frame` feeds a pandas frame through the same protocol. The dataset
directory contract is in ``docs/ARCHITECTURE.md``; every parameter is recorded in ``dataset.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from symcere.data.records import Review
from symcere.errors import SymcereError
from symcere.io import write_text
from symcere.locks import locked, remove_leftovers

FORMAT_VERSION = 1
DATASET_FILES = ("interactions.parquet", "users.parquet", "items.parquet", "dataset.json")
SPLITS = ("train", "valid", "test")
TEXT_SEPARATOR = " \n"
MAX_LISTED_IDS = 20  # ids listed in stats (e.g. users without a training item)
DEFAULT_TEXT_BUDGET = 4000
_RESERVED_META = frozenset({"format_version", "name", "params", "stats", "content_hash"})
_MAX_SECONDS = 2**62  # |time| bound for a frame's numeric times (int64-safe)

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


@dataclass(frozen=True)
class DatasetTables:
    """A dataset directory's content in memory: the frames written as ``interactions.parquet``,
    ``users.parquet`` and ``items.parquet`` (RangeIndex, rows in file order) and the ``dataset.json`` dict."""

    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    meta: dict[str, Any]


@dataclass(frozen=True)
class _Options:
    """Validated protocol parameters (what ``dataset.json`` records under ``params``)."""

    name: str
    k_core: int
    user_k: int | None
    item_k: int | None
    ratios: list[float]
    text_budget: int
    extra_meta: dict[str, Any]

    @property
    def uk(self) -> int:
        return self.k_core if self.user_k is None else self.user_k

    @property
    def ik(self) -> int:
        return self.k_core if self.item_k is None else self.item_k

    def params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "k_core": self.k_core,
            "user_k": self.user_k,
            "item_k": self.item_k,
            "ratios": self.ratios,
            "text_budget": self.text_budget,
        }


def _options(
    name: str,
    k_core: int,
    user_k: int | None,
    item_k: int | None,
    ratios: Sequence[float],
    text_budget: int,
    extra_meta: dict[str, Any] | None,
) -> _Options:
    opts = _Options(name, k_core, user_k, item_k, [float(r) for r in ratios], text_budget, dict(extra_meta or {}))
    if len(opts.ratios) != 3 or any(r < 0 for r in opts.ratios) or sum(opts.ratios) <= 0:
        raise SymcereError(f"ratios must be three non-negative numbers with a positive sum, got {opts.ratios}")
    if min(opts.uk, opts.ik, text_budget) < 0:
        raise SymcereError("k-core values and text_budget must be >= 0")
    clash = sorted(_RESERVED_META & set(opts.extra_meta))
    if clash:
        raise SymcereError(f"extra_meta may not set reserved dataset.json keys {clash}")
    return opts


def build_dataset(
    records: Iterable[Review],
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    k_core: int = 5,
    user_k: int | None = None,
    item_k: int | None = None,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    text_budget: int = DEFAULT_TEXT_BUDGET,
    extra_meta: dict[str, Any] | None = None,
    overwrite: bool = False,
    report: Any = None,
    engine: str = "auto",
    memory_limit: str | None = None,
) -> Path:
    """Preprocess ``records`` and write a dataset directory at ``out_dir`` (atomically); return its path.

    Steps: dedup (user, item) keeping the earliest record (ties: input order); iterative k-core
    (``user_k``/``item_k`` default to ``k_core``; 0 = off); contiguous re-index sorted by original id;
    per-user chronological split (stable on timestamp, RecBole ``RS`` rounding, see :func:`split_counts`);
    item text = training reviews ``"title. text"`` in time order joined by ``" \\n"``, cut at ``text_budget``
    characters (0 = unlimited). ``extra_meta`` keys are added to ``dataset.json`` at top level. ``report``: the
    ``symcere.data.readers.ReadReport`` the records were read with; its skipped records are recorded in
    ``stats.skipped``. The dataset directory is locked (``symcere.locks``) from before reading to the end.
    ``engine`` (:data:`ENGINES`): ``pandas`` holds the input in memory (fastest on small data, core install);
    ``duckdb`` streams it into DuckDB and spills to disk under ``memory_limit`` (e.g. ``"2GB"``), for inputs
    larger than memory; ``auto`` takes duckdb when installed. Both write the same bytes.
    """
    out = Path(out_dir)
    opts = _options(name, k_core, user_k, item_k, ratios, text_budget, extra_meta)
    _check_target(out, overwrite)
    with _dataset_lock(out):
        _check_target(out, overwrite)
        if resolve_engine(engine) == "duckdb":  # streamed, out of core, byte-identical (data/duckdb_prepare.py)
            from symcere.data.duckdb_prepare import prepare_duckdb

            return prepare_duckdb(records, out, opts, overwrite=overwrite, report=report, memory_limit=memory_limit)
        tables = _protocol(_collect(records), opts)
        if report is not None:
            tables.meta["stats"]["skipped"] = report.as_dict()
        return write_tables(tables, out, overwrite=overwrite)


#: where the protocol runs: ``pandas`` (in memory, the core install) or ``duckdb`` (streamed, spills to disk;
#: ``symcere[scale]``); ``auto`` = duckdb when installed. Both write the same bytes.
ENGINES = ("auto", "pandas", "duckdb")


def resolve_engine(engine: str) -> str:
    """``pandas`` or ``duckdb`` for ``engine`` (``auto``: duckdb when the ``duckdb`` package is installed)."""
    import importlib.util

    if engine not in ENGINES:
        raise SymcereError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "auto":
        return "duckdb" if importlib.util.find_spec("duckdb") is not None else "pandas"
    if engine == "duckdb":
        from symcere.extras import require

        require("duckdb", "prepare --engine duckdb")
    return engine


def recover_dataset_dir(out: str | os.PathLike[str]) -> None:
    """Take and release the lock of the dataset directory ``out``: what a killed writer left next to it (a stale
    lock, temporary directories, an interrupted swap) is cleaned up."""
    with _dataset_lock(Path(out)):
        pass


@contextmanager
def _dataset_lock(out: Path) -> Iterator[None]:
    """Hold the lock of a dataset directory; once held, clean up what a killed writer left next to ``out``: an
    interrupted swap of ``_write_atomic`` is rolled back (the previous dataset restored), temporary dirs removed."""
    out = out.absolute()
    with locked(out, "dataset directory"):
        olds = sorted(out.parent.glob(f".{out.name}.old-*"))
        if not out.exists():
            for old in olds:
                if is_dataset_dir(old / "d"):
                    os.replace(old / "d", out)
                    break
        remove_leftovers([*olds, *out.parent.glob(f".{out.name}.tmp-*")])
        yield


def tables_from_frame(
    df: pd.DataFrame,
    *,
    user: Any = "user",
    item: Any = "item",
    time: Any = "time",
    text: Any = None,
    rating: Any = None,
    title: Any = None,
    name: str = "frame",
    k_core: int = 5,
    user_k: int | None = None,
    item_k: int | None = None,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    text_budget: int = DEFAULT_TEXT_BUDGET,
    extra_meta: dict[str, Any] | None = None,
) -> DatasetTables:
    """The :func:`build_dataset` protocol applied to the rows of ``df`` (in row order), in memory.

    ``user``/``item``/``time`` (required) and ``text``/``rating``/``title`` (optional, None = absent) name the
    columns. Ids are stored as ``str`` (integral floats as ints first, as ``prepare`` does); time is unix
    seconds (numbers, floored) or datetimes (naive = UTC); a missing rating is NaN, a missing text "".
    Bad input raises :class:`SymcereError` naming the column and row.
    """
    opts = _options(name, k_core, user_k, item_k, ratios, text_budget, extra_meta)
    return _protocol(_collect_frame(df, user, item, time, text, rating, title), opts)


def meta_json(meta: dict[str, Any]) -> str:
    """The exact ``dataset.json`` text of ``meta``."""
    return json.dumps(meta, indent=2, ensure_ascii=False) + "\n"


def write_tables(tables: DatasetTables, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write ``tables`` as a dataset directory at ``out_dir``, atomically (a temporary sibling directory
    renamed into place); refuses a non-empty non-dataset directory, and an existing dataset unless
    ``overwrite``. Returns the absolute path."""
    out = Path(out_dir)
    _check_target(out, overwrite)
    with _dataset_lock(out):
        return _write_atomic(out, overwrite, *_arrow_tables(tables), tables.meta)


def _protocol(df: pd.DataFrame, opts: _Options) -> DatasetTables:
    """Run the protocol on a collected frame (columns of :func:`_collect`, rows in input order)."""
    uk, ik = opts.uk, opts.ik
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
    df["split"] = _assign_splits(df["user"].to_numpy(), len(user_ids), opts.ratios)

    # 5. item texts from training reviews only
    train = df[df["split"] == "train"].sort_values(["item", "timestamp", "order"], kind="stable")
    texts = _item_texts(train, len(item_ids), opts.text_budget)
    n_train = np.bincount(train["item"].to_numpy(), minlength=len(item_ids)).astype(np.int64)

    inter = df[list(_INTERACTION_SCHEMA.names)]
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": opts.name,
        "params": opts.params(),
        "stats": _stats(df, user_ids, item_ids, records_read, after_dedup, iterations),
        "content_hash": content_hash(inter),
        **opts.extra_meta,
    }
    users = pd.DataFrame({"user": np.arange(len(user_ids), dtype=np.int64), "user_id": user_ids})
    items = pd.DataFrame(
        {
            "item": np.arange(len(item_ids), dtype=np.int64),
            "item_id": item_ids,
            "text": np.array(texts, dtype=object),
            "n_train": n_train,
        }
    )
    return DatasetTables(inter, users, items, meta)


def _arrow_tables(tables: DatasetTables) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The three parquet tables (interactions with pandas metadata; users/items as plain arrow tables)."""
    users, items = tables.users, tables.items
    users_tab = pa.table(
        {"user": users["user"].to_numpy(np.int64), "user_id": pa.array(users["user_id"].tolist(), pa.string())}
    )
    items_tab = pa.table(
        {
            "item": items["item"].to_numpy(np.int64),
            "item_id": pa.array(items["item_id"].tolist(), pa.string()),
            "text": pa.array(items["text"].tolist(), pa.string()),
            "n_train": items["n_train"].to_numpy(np.int64),
        }
    )
    inter = tables.interactions[list(_INTERACTION_SCHEMA.names)]
    inter_tab = pa.Table.from_pandas(inter, schema=_INTERACTION_SCHEMA, preserve_index=False)
    return inter_tab, users_tab, items_tab


def _collect(records: Iterable[Review]) -> pd.DataFrame:
    cols: dict[str, list[Any]] = {k: [] for k in ("user_id", "item_id", "timestamp", "rating", "text", "title")}
    for r in records:
        cols["user_id"].append(r.user)
        cols["item_id"].append(r.item)
        cols["timestamp"].append(r.timestamp)
        cols["rating"].append(np.nan if r.rating is None else r.rating)
        cols["text"].append(r.text or "")
        cols["title"].append(r.title or "")
    return _collected(**cols)


def _collected(
    user_id: Sequence[Any],
    item_id: Sequence[Any],
    timestamp: Sequence[int] | np.ndarray,
    rating: Sequence[float] | np.ndarray,
    text: Sequence[str],
    title: Sequence[str],
) -> pd.DataFrame:
    """The protocol's input frame: one row per record, in input order (``pos``)."""
    return pd.DataFrame(
        {
            "user_id": np.array(user_id, dtype=object),
            "item_id": np.array(item_id, dtype=object),
            "timestamp": np.array(timestamp, dtype=np.int64),
            "rating": np.array(rating, dtype=np.float64),
            "text": np.array(text, dtype=object),
            "review": np.array([review_text(ti, te) for ti, te in zip(title, text, strict=True)], dtype=object),
            "pos": np.arange(len(user_id), dtype=np.int64),
        }
    )


# ----------------------------------------------------------------------------------------------------------
# pandas frame -> protocol input


class _BadValue(ValueError):
    """A cell that does not fit its field; the message says why (``is missing``, ...)."""


def _collect_frame(
    df: pd.DataFrame, user: Any, item: Any, time: Any, text: Any, rating: Any, title: Any
) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise SymcereError(f"from_frame: expected a pandas DataFrame, got {type(df).__name__}")
    fields = {"user": user, "item": item, "time": time, "text": text, "rating": rating, "title": title}
    for field, col in fields.items():
        if col is None:
            if field in ("user", "item", "time"):
                raise SymcereError(f"from_frame: the {field} column is required (got {field}=None)")
            continue
        try:
            hash(col)
        except TypeError:
            raise SymcereError(f"from_frame: {field}={col!r} is not a column name") from None
        n_match = sum(1 for c in df.columns if _same_name(c, col))
        if n_match == 0:
            raise SymcereError(f"from_frame: missing column {col!r} (the {field} column); available: {[*df.columns]}")
        if n_match > 1:
            raise SymcereError(f"from_frame: column {col!r} (the {field} column) appears {n_match} times")

    def column(field: str, convert: Any) -> list[Any] | np.ndarray:
        col = fields[field]
        series = df[col]
        if field == "time":
            fast = _datetime_seconds(series)
            if fast is not None:
                return fast
        out = []
        for pos, value in enumerate(series.tolist()):
            try:
                out.append(convert(value))
            except _BadValue as exc:
                label = df.index[pos]
                plain = isinstance(df.index, pd.RangeIndex) and label == pos
                where = f"row {pos}" if plain else f"row {pos} (index {label!r})"
                raise SymcereError(f"from_frame: {where}: {field} column {col!r} {exc}") from None
        return out

    n = len(df)
    return _collected(
        user_id=column("user", _frame_id),
        item_id=column("item", _frame_id),
        timestamp=column("time", _frame_time),
        rating=column("rating", _frame_rating) if rating is not None else [np.nan] * n,
        text=column("text", _frame_text) if text is not None else [""] * n,
        title=column("title", _frame_text) if title is not None else [""] * n,
    )


def _same_name(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _datetime_seconds(series: pd.Series) -> np.ndarray | None:
    """Vectorised unix seconds (floored) of a datetime64 column without NaT; None for any other column."""
    if not pd.api.types.is_datetime64_any_dtype(series.dtype) or series.isna().any():
        return None
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return ((series - pd.Timestamp(0)) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        missing = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return isinstance(missing, bool | np.bool_) and bool(missing)


def _frame_id(value: Any) -> str:
    if type(value) is str:
        if not value.strip():
            raise _BadValue(f"is empty: {value!r}")
        return value
    if _is_missing(value):
        raise _BadValue(f"is missing ({value!r})")
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    try:
        hash(value)
    except TypeError:
        raise _BadValue(f"is not hashable: {value!r}") from None
    ident = str(value)
    if not ident.strip():
        raise _BadValue(f"is empty: {value!r}")
    return ident


def _frame_time(value: Any) -> int:
    """Unix seconds (floored) from a number (seconds) or a datetime / date (naive = UTC)."""
    if _is_missing(value):
        raise _BadValue(f"is missing ({value!r})")
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    if isinstance(value, pd.Timestamp):  # nanoseconds: exact floor, no float rounding
        value = value.tz_convert("UTC").tz_localize(None) if value.tzinfo else value
        return int((value - pd.Timestamp(0)) // pd.Timedelta(seconds=1))
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return math.floor(dt.timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    if isinstance(value, bool | np.bool_) or not isinstance(value, Real):
        raise _BadValue(f"is not a number (unix seconds) or a datetime: {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or abs(seconds) > _MAX_SECONDS:
        raise _BadValue(f"is not a valid time: {value!r}")
    return int(value) if isinstance(value, int | np.integer) else math.floor(seconds)


def _frame_rating(value: Any) -> float:
    if _is_missing(value):
        return math.nan
    if isinstance(value, bool | np.bool_) or not isinstance(value, Real):
        raise _BadValue(f"is not a number: {value!r}")
    if not math.isfinite(float(value)):
        raise _BadValue(f"is not finite: {value!r}")
    return float(value)


def _frame_text(value: Any) -> str:
    if type(value) is str:
        return value
    return "" if _is_missing(value) else str(value)


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
    def fill(tmp: Path) -> None:
        pq.write_table(inter, tmp / "interactions.parquet")
        pq.write_table(users, tmp / "users.parquet")
        pq.write_table(items, tmp / "items.parquet")
        _write_meta(tmp, meta)

    return _atomic_dir(out, overwrite, fill)


def _write_meta(tmp: Path, meta: dict[str, Any]) -> None:
    """``dataset.json`` next to the parquet files, with their mode."""
    write_text(tmp / "dataset.json", meta_json(meta))
    # symcere.io's temporary file is 0600; keep the mode the other files got (umask default)
    os.chmod(tmp / "dataset.json", (tmp / "interactions.parquet").stat().st_mode & 0o777)


def _atomic_dir(out: Path, overwrite: bool, fill: Callable[[Path], None]) -> Path:
    """``fill(tmp)`` writes the dataset files into a temporary sibling directory that then replaces ``out``."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        fill(tmp)
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
