"""Streaming readers for raw review dumps; every reader yields :class:`~symcere.data.records.Review`.

Formats: ``amazon2014`` / ``amazon2018`` (JSON lines, strict JSON or Python-literal lines, or a CSV with the
same columns), ``amazon2023``, ``yelp`` (review.json or the Kaggle CSV) and ``table`` (CSV / TSV / Parquet /
JSON lines with a column mapping). ``auto`` detects the format per file from its first record / header.

Containers: plain files, ``.gz`` and ``.zip`` (every data member, in name order). Inner type comes from the
file extension (``.json``/``.jsonl``/``.ndjson``, ``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``); an
unknown extension is sniffed (``{`` -> JSON lines, a tab in the header -> TSV, else CSV).

Error positions: for JSON lines and CSV/TSV, ``line N`` is the physical line of the file on which the record
starts (CSV header = line 1; a CSV record may span several lines because of quoted newlines); for Parquet,
``row N`` is the 1-based row index.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import math
import os
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from symcere.data.records import Review
from symcere.errors import SymcereError

FORMATS = ("auto", "amazon2014", "amazon2018", "amazon2023", "yelp", "table")
COLUMN_KEYS = ("user", "item", "rating", "time", "text", "title")
_REQUIRED_KEYS = ("user", "item", "time")
_MS_THRESHOLD = 1e11  # numeric times above this are milliseconds (1e11 s is the year 5138)
_DATA_EXTS = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq")
_DATE_FORMATS = ("%m %d, %Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y")

# Column names recognised when no mapping is given (first match wins, per key).
_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId", "userid", "reviewerID", "reviewer_id", "uid"),
    "item": (
        "item",
        "item_id",
        "itemId",
        "itemid",
        "parent_asin",
        "asin",
        "business_id",
        "product_id",
        "iid",
    ),
    "rating": ("rating", "overall", "stars", "score"),
    "time": ("timestamp", "time", "unixReviewTime", "unix_time", "date", "reviewTime"),
    "text": ("text", "reviewText", "review_text", "review", "body"),
    "title": ("title", "summary", "headline"),
}


@dataclass(frozen=True)
class _Schema:
    """Which source keys feed each :class:`Review` field (first present, non-empty key wins)."""

    name: str
    user: tuple[str, ...]
    item: tuple[str, ...]
    time: tuple[str, ...]
    rating: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    title: tuple[str, ...] = ()


_AMAZON = (
    ("reviewerID",),
    ("asin",),
    ("unixReviewTime", "reviewTime"),
    ("overall",),
    ("reviewText",),
    ("summary",),
)
_SCHEMAS: dict[str, _Schema] = {
    "amazon2014": _Schema("amazon2014", *_AMAZON),
    "amazon2018": _Schema("amazon2018", *_AMAZON),
    "amazon2023": _Schema(
        "amazon2023",
        ("user_id",),
        ("parent_asin", "asin"),
        ("timestamp",),
        ("rating",),
        ("text",),
        ("title",),
    ),
    "yelp": _Schema("yelp", ("user_id",), ("business_id",), ("date",), ("stars",), ("text",), ()),
}


# ----------------------------------------------------------------------------------------------------------
# value parsing


def parse_time(value: Any) -> int:
    """Unix seconds from numeric seconds, numeric milliseconds (> 1e11) or a date / datetime string (UTC)."""
    if isinstance(value, bool):
        raise ValueError("boolean is not a time")
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(math.floor(dt.timestamp()))
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    if isinstance(value, str):
        s = value.strip()
        if not s:
            raise ValueError("empty")
        try:
            num = float(s)
        except ValueError:
            return _parse_date(s)
    elif isinstance(value, int | float):
        num = float(value)
    else:
        raise ValueError(f"unsupported type {type(value).__name__}")
    if not math.isfinite(num):
        raise ValueError("not finite")
    if abs(num) > _MS_THRESHOLD:
        num /= 1000.0
    return int(math.floor(num))


def _parse_date(s: str) -> int:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        for fmt in _DATE_FORMATS:
            try:
                dt = datetime.strptime(s, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"unrecognised date {s!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(math.floor(dt.timestamp()))


def parse_columns(spec: str | dict[str, str] | None) -> dict[str, str] | None:
    """Parse ``user=col,item=col,...`` (the CLI ``--columns`` value) into a validated mapping."""
    if spec is None or isinstance(spec, dict):
        mapping = spec
    else:
        mapping = {}
        for part in spec.split(","):
            if not part.strip():
                continue
            key, sep, col = part.partition("=")
            if not sep or not col.strip():
                raise SymcereError(f"--columns: expected key=column, got {part!r}")
            mapping[key.strip()] = col.strip()
    if mapping is None:
        return None
    unknown = sorted(set(mapping) - set(COLUMN_KEYS))
    if unknown:
        raise SymcereError(f"--columns: unknown key(s) {unknown}; allowed: {', '.join(COLUMN_KEYS)}")
    missing = [k for k in _REQUIRED_KEYS if k not in mapping]
    if missing:
        raise SymcereError(f"--columns: missing required key(s) {missing} (need user, item, time)")
    return dict(mapping)


def _table_schema(mapping: dict[str, str]) -> _Schema:
    return _Schema("table", **{k: ((mapping[k],) if k in mapping else ()) for k in COLUMN_KEYS})


def _infer_mapping(keys: Iterable[str]) -> dict[str, str]:
    present = set(keys)
    mapping: dict[str, str] = {}
    for key, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in present:
                mapping[key] = alias
                break
    return mapping


def _detect(keys: Iterable[str], label: str, where: str) -> _Schema:
    k = set(keys)
    if {"reviewerID", "asin"} <= k:
        return _SCHEMAS["amazon2018" if k & {"vote", "verified", "style", "image"} else "amazon2014"]
    if {"user_id", "business_id"} <= k:
        return _SCHEMAS["yelp"]
    if "user_id" in k and k & {"parent_asin", "asin"}:
        return _SCHEMAS["amazon2023"]
    mapping = _infer_mapping(k)
    if all(r in mapping for r in _REQUIRED_KEYS):
        return _table_schema(mapping)
    raise SymcereError(
        f"{label}, {where}: cannot detect the format from fields {sorted(k)}; "
        "pass --format table --columns user=COL,item=COL,time=COL[,rating=COL,text=COL,title=COL]"
    )


# ----------------------------------------------------------------------------------------------------------
# record -> Review


def _first(rec: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = rec.get(key)
        if value is not None and value != "":
            return value
    return None


def _to_review(rec: dict[str, Any], schema: _Schema, label: str, where: str) -> Review:
    def fail(keys: tuple[str, ...], why: str) -> SymcereError:
        return SymcereError(f"{label}, {where}: field {keys[0]!r} {why} (format {schema.name})")

    def require(keys: tuple[str, ...]) -> Any:
        value = _first(rec, keys)
        if value is None:
            raise fail(keys, "is empty" if any(k in rec for k in keys) else "is missing")
        return value

    ids = []
    for keys in (schema.user, schema.item):
        value = require(keys)
        if isinstance(value, dict | list | bool):
            raise fail(keys, f"is malformed: {value!r}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ids.append(str(value).strip())
    raw_time = require(schema.time)
    try:
        timestamp = parse_time(raw_time)
    except (ValueError, OverflowError, OSError) as exc:
        raise fail(schema.time, f"is malformed: {exc}") from None
    rating: float | None = None
    if schema.rating:
        raw = require(schema.rating)
        try:
            if isinstance(raw, bool):
                raise ValueError(raw)
            rating = float(raw)
        except (TypeError, ValueError):
            raise fail(schema.rating, f"is malformed: {raw!r}") from None
    return Review(
        user=ids[0],
        item=ids[1],
        timestamp=timestamp,
        rating=rating,
        text=_text(_first(rec, schema.text)) if schema.text else "",
        title=_text(_first(rec, schema.title)) if schema.title else "",
    )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value).strip()


# ----------------------------------------------------------------------------------------------------------
# containers and raw records


@dataclass
class _Source:
    """One data stream: a plain / gzip file or a zip member."""

    label: str
    path: Path
    member: str | None
    kind: str  # json | csv | tsv | parquet | sniff
    gz: bool

    @contextmanager
    def open_binary(self) -> Iterator[IO[bytes]]:
        """The decompressed byte stream; closes the file, archive and gzip layer on exit."""
        with ExitStack() as stack:
            if self.member is None:
                raw: IO[bytes] = stack.enter_context(open(self.path, "rb"))
            else:
                archive = stack.enter_context(zipfile.ZipFile(self.path))
                raw = stack.enter_context(archive.open(self.member))
            if self.gz:
                raw = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
            yield raw


def _kind(name: str) -> tuple[str, bool]:
    lower = name.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[:-3]
    ext = os.path.splitext(lower)[1]
    kind = {
        ".json": "json",
        ".jsonl": "json",
        ".ndjson": "json",
        ".csv": "csv",
        ".tsv": "tsv",
        ".tab": "tsv",
        ".parquet": "parquet",
        ".pq": "parquet",
    }.get(ext, "sniff")
    return kind, gz


def _sources(path: Path) -> list[_Source]:
    if not path.is_file():
        raise SymcereError(f"input file not found: {path}")
    if path.suffix.lower() != ".zip":
        return [_Source(str(path), path, None, *_kind(path.name))]
    try:
        with zipfile.ZipFile(path) as zf:
            names = [
                n
                for n in zf.namelist()
                if not n.endswith("/") and not n.startswith("__MACOSX/") and not Path(n).name.startswith(".")
            ]
    except zipfile.BadZipFile as exc:
        raise SymcereError(f"{path}: not a valid zip archive ({exc})") from None
    data = [n for n in names if n.lower().removesuffix(".gz").endswith(_DATA_EXTS)] or names
    if not data:
        raise SymcereError(f"{path}: zip archive holds no data member")
    return [_Source(f"{path} (member {n})", path, n, *_kind(n)) for n in sorted(data)]


def _records(src: _Source) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Yield ``(where, record, tabular)`` for every raw record of a source (tabular: fixed columns)."""
    kind = src.kind
    if kind == "parquet":
        for where, rec in _parquet_records(src):
            yield where, rec, True
        return
    with src.open_binary() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        if kind == "sniff":
            kind, text = _sniff(text)
        if kind == "json":
            for where, rec in _json_records(text, src.label):
                yield where, rec, False
        else:
            for where, rec in _csv_records(text, src.label, "\t" if kind == "tsv" else ","):
                yield where, rec, True


def _sniff(text: io.TextIOWrapper) -> tuple[str, io.TextIOWrapper | _Chain]:
    first = text.readline()
    if first.lstrip().startswith("{"):
        kind = "json"
    else:
        kind = "tsv" if "\t" in first and "," not in first else "csv"
    return kind, _Chain(first, text)


class _Chain:
    """A text stream with one already-read line pushed back in front of it."""

    def __init__(self, head: str, rest: io.TextIOWrapper) -> None:
        self._head: str | None = head
        self._rest = rest

    def __iter__(self) -> Iterator[str]:
        if self._head:
            yield self._head
        self._head = None
        yield from self._rest


def _json_records(lines: Iterable[str], label: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        if not s:
            continue
        try:
            rec = json.loads(s)
        except json.JSONDecodeError as exc:
            try:  # some 2014 Amazon dumps are Python-literal lines
                rec = ast.literal_eval(s)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise SymcereError(f"{label}, line {lineno}: not a JSON object ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise SymcereError(f"{label}, line {lineno}: expected a JSON object, got {type(rec).__name__}")
        yield f"line {lineno}", rec


def _csv_records(lines: Iterable[str], label: str, delimiter: str) -> Iterator[tuple[str, dict[str, Any]]]:
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise SymcereError(f"{label}, line 1: malformed header ({exc})") from None
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SymcereError(f"{label}, line {start}: malformed CSV record ({exc})") from None
        if row:
            if len(row) != len(header):
                raise SymcereError(f"{label}, line {start}: record has {len(row)} fields, the header has {len(header)}")
            yield f"line {start}", dict(zip(header, row, strict=True))
        start = reader.line_num + 1


def _parquet_records(src: _Source) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow.parquet as pq

    with src.open_binary() as raw:
        handle: IO[bytes] = io.BytesIO(raw.read()) if (src.member is not None or src.gz) else raw
        try:
            pf = pq.ParquetFile(handle)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise SymcereError(f"{src.label}: not a readable Parquet file ({exc})") from None
        row = 0
        for batch in pf.iter_batches(batch_size=65536):
            for rec in batch.to_pylist():
                row += 1
                yield f"row {row}", rec


# ----------------------------------------------------------------------------------------------------------
# public entry point


def read_reviews(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    fmt: str = "auto",
    columns: dict[str, str] | str | None = None,
) -> Iterator[Review]:
    """Stream :class:`Review` records from one or more files (plain, ``.gz`` or ``.zip``).

    ``fmt`` is one of :data:`FORMATS`; ``columns`` (``table`` / ``auto`` only) maps the keys user, item,
    rating, time, text, title to source columns (a dict or the CLI string ``user=col,item=col,...``). Without
    a mapping, ``table`` recognises common column names (Amazon, Yelp, ``user``/``item``/``timestamp``, ...).
    Any record that does not fit raises :class:`SymcereError` naming file, line and field.
    """
    if fmt not in FORMATS:
        raise SymcereError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    mapping = parse_columns(columns)
    if mapping is not None and fmt not in ("auto", "table"):
        raise SymcereError(f"--columns applies to --format table or auto, not {fmt}")
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise SymcereError("no input files given")
    for src in (s for p in path_list for s in _sources(p)):
        yield from _read_source(src, fmt, mapping)


def _schema_for(rec: dict[str, Any], fmt: str, label: str, where: str) -> _Schema:
    if fmt != "table":
        return _detect(rec, label, where)
    inferred = _infer_mapping(rec)
    missing = [k for k in _REQUIRED_KEYS if k not in inferred]
    if missing:
        raise SymcereError(
            f"{label}, {where}: no column recognised for {missing} among {sorted(rec)}; "
            "pass --columns user=COL,item=COL,time=COL,..."
        )
    return _table_schema(inferred)


def _read_source(src: _Source, fmt: str, mapping: dict[str, str] | None) -> Iterator[Review]:
    schema: _Schema | None = None
    if mapping is not None:
        schema = _table_schema(mapping)
    elif fmt in _SCHEMAS:
        schema = _SCHEMAS[fmt]
    try:
        first = True
        for where, rec, tabular in _records(src):
            if first:
                if schema is None:
                    schema = _schema_for(rec, fmt, src.label, where)
                if schema.name == "table":
                    # tabular sources share one header: check every mapped column once; JSON lines may
                    # legitimately omit the optional text/title keys in some records.
                    keys = COLUMN_KEYS if tabular else ("user", "item", "time", "rating")
                    for key in keys:
                        cols = getattr(schema, key)
                        if cols and cols[0] not in rec:
                            raise SymcereError(
                                f"{src.label}, {where}: missing column {cols[0]!r} (mapped to {key}); "
                                f"available: {sorted(rec)}"
                            )
                first = False
            assert schema is not None
            yield _to_review(rec, schema, src.label, where)
    except UnicodeDecodeError as exc:
        raise SymcereError(f"{src.label}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise SymcereError(f"{src.label}: cannot read the archive ({exc})") from None
    except OSError as exc:
        raise SymcereError(f"{src.label}: cannot read ({exc})") from None
