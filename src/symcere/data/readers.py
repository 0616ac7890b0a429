"""Streaming readers for raw review dumps; every reader yields :class:`~symcere.data.records.Review`.

Formats: ``amazon2014`` / ``amazon2018`` (JSON lines, strict JSON or Python-literal lines, or a CSV with the
same columns), ``amazon2023``, ``yelp`` (review.json or the Kaggle CSV) and ``table`` (CSV / TSV / Parquet /
JSON lines with a column mapping). ``auto`` detects the format per file from its first record / header.

Containers are recognised by their content (a gzip file without the ``.gz`` name is read as gzip, a ``.gz``
name on plain text is read as plain text; a ``.zip`` name must hold a zip archive): plain files, gzip and zip
(every data member, in name order; more than one is reported as a note). Inner type comes from the file
extension (``.json``/``.jsonl``/``.ndjson``, ``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``); an unknown
extension is sniffed (Parquet magic, ``{`` -> JSON lines, a tab in the header -> TSV, else CSV). Python-literal
lines are parsed with ``ast.literal_eval`` (literals only: nothing in a file is ever evaluated).

Every value is checked (docs/RELIABILITY.md has the policy table): ids must be non-blank text or integers
without control characters, times of the Amazon and Yelp formats must lie between 1970 and tomorrow (times
before 1990 are kept with a note; a seconds field holding milliseconds is refused, not guessed; ``table``
times may be any integer), ratings must be finite numbers (1-5 for the Amazon and Yelp formats).
A record that fails a check is a *bad record*: with ``on_bad_record="error"`` (the default) reading stops with
a :class:`SymcereError` naming the file, the line (or row), the field and what was expected; with ``"skip"``
the record is dropped and counted in a :class:`ReadReport`. Defects of a whole file (missing, empty,
corrupt archive, undetectable format, a mapped column absent from the header) always stop reading. Raw values
in messages are escaped (:func:`~symcere.data.records.printable`): control characters and terminal escape
sequences are never echoed.

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
import re
import stat
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from symcere.data.records import ID_FORBIDDEN, Review, printable, shown
from symcere.errors import SymcereError

FORMATS = ("auto", "amazon2014", "amazon2018", "amazon2023", "yelp", "table")
ON_BAD_RECORD = ("error", "skip")
COLUMN_KEYS = ("user", "item", "rating", "time", "text", "title")
_REQUIRED_KEYS = ("user", "item", "time")
_MS_THRESHOLD = 1e11  # numeric times above this are milliseconds (1e11 s is the year 5138)
MIN_TIME = 631_152_000  # 1990-01-01 00:00:00 UTC: earlier review times are kept with a note (0 = missing?)
FUTURE_SLACK = 2 * 86_400  # times up to this many seconds after "now" are accepted (clock skew, time zones)
MAX_ID_LENGTH = 1000  # longer ids are refused: almost always a wrong column mapping (a text in the id column)
MAX_EXAMPLES = 5  # skipped-record messages kept in a ReadReport
_DATA_EXTS = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq")
_DATE_FORMATS = ("%m %d, %Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y")
_BAD_BYTE = re.compile("[\udc80-\udcff]")  # an undecodable byte, as decoded with errors="surrogateescape"
_SURROGATE = re.compile("[\ud800-\udfff]")

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
    """Which source keys feed each :class:`Review` field (first present, non-empty key wins).

    ``time_unit`` fixes the unit of numeric times per source key (``s`` / ``ms``; other keys: detected per
    value); ``rating_range`` the allowed ratings (None = any finite number)."""

    name: str
    user: tuple[str, ...]
    item: tuple[str, ...]
    time: tuple[str, ...]
    rating: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    title: tuple[str, ...] = ()
    time_unit: tuple[tuple[str, str], ...] = ()
    rating_range: tuple[float, float] | None = None


_AMAZON = (
    ("reviewerID",),
    ("asin",),
    ("unixReviewTime", "reviewTime"),
    ("overall",),
    ("reviewText",),
    ("summary",),
    (("unixReviewTime", "s"),),
    (1.0, 5.0),
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
        (("timestamp", "ms"),),
        (1.0, 5.0),
    ),
    "yelp": _Schema("yelp", ("user_id",), ("business_id",), ("date",), ("stars",), ("text",), (), (), (1.0, 5.0)),
}


@dataclass
class ReadReport:
    """What a :func:`read_reviews` call read: records yielded, bad records skipped (by reason, with the
    first messages) and notes (e.g. the members of a zip archive that were read)."""

    records: int = 0
    skipped: int = 0
    early: int = 0  # records kept with a time before 1990 (Amazon / Yelp formats)
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, bad: BadRecord) -> None:
        self.skipped += 1
        self.reasons[bad.reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(str(bad))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (recorded in ``dataset.json`` under ``stats.skipped``)."""
        return {"count": self.skipped, "by_reason": dict(sorted(self.reasons.items())), "examples": self.examples}

    def summary(self) -> str:
        """One line: how many records were skipped and why (empty when none were)."""
        if not self.skipped:
            return ""
        why = ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return f"skipped {self.skipped:,} bad record(s) ({why}); first: {self.examples[0]}"


class BadRecord(SymcereError):
    """One record that does not fit (skippable with ``on_bad_record="skip"``); ``reason`` is a short tag."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# ----------------------------------------------------------------------------------------------------------
# value parsing


def parse_time(value: Any) -> int:
    """Unix seconds from numeric seconds, numeric milliseconds (> 1e11) or a date / datetime string (UTC)."""
    seconds, _ = _time_value(value)
    return seconds


def _time_value(value: Any, unit: str | None = None) -> tuple[int, str]:
    """``(unix seconds, what the value was)``; ``unit`` (``s`` / ``ms``) refuses a numeric value of the other
    unit. Raises ValueError with the reason."""
    if isinstance(value, bool):
        raise ValueError("is a boolean")
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(math.floor(dt.timestamp())), "a datetime"
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()), "a date"
    if isinstance(value, str):
        s = value.strip()
        if not s:
            raise ValueError("is empty")
        try:
            num = float(s)
        except ValueError:
            return _parse_date(s), "a date string"
    elif isinstance(value, int | float):
        num = float(value)
    else:
        raise ValueError(f"is {type(value).__name__} {shown(value)}")
    if not math.isfinite(num):
        raise ValueError(f"is not a finite number ({shown(value)})")
    ms = abs(num) > _MS_THRESHOLD
    if unit == "s" and ms:
        raise ValueError(f"is {shown(value)}, which looks like milliseconds")
    if unit == "ms" and not ms and num != 0:
        raise ValueError(f"is {shown(value)}, which looks like seconds")
    if ms or unit == "ms":
        num /= 1000.0
    if abs(num) > 1e13:
        raise ValueError(f"is {shown(value)}, out of any date range")
    return int(math.floor(num)), "unix milliseconds" if ms or unit == "ms" else "unix seconds"


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
            raise ValueError(f"is {shown(s)}, not a recognised date") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(math.floor(dt.timestamp()))


def _utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} s"


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
                raise SymcereError(f"--columns: expected key=column, got {shown(part)}")
            mapping[key.strip()] = col.strip()
    if mapping is None:
        return None
    unknown = sorted(set(mapping) - set(COLUMN_KEYS))
    if unknown:
        names = ", ".join(shown(k) for k in unknown)
        raise SymcereError(f"--columns: unknown key(s) {names}; allowed: {', '.join(COLUMN_KEYS)}")
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


def _names(keys: Iterable[Any], limit: int = 30) -> str:
    """Field names for a message: escaped, sorted, at most ``limit`` of them."""
    names = sorted({printable(str(k), 40) for k in keys})
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "[" + ", ".join(f"'{n}'" for n in names[:limit]) + "]" + more


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
        f"{label}, {where}: cannot detect the format from fields {_names(k)}; expected the fields of a known "
        "format, or pass --format table --columns user=COL,item=COL,time=COL[,rating=COL,text=COL,title=COL]"
    )


# ----------------------------------------------------------------------------------------------------------
# record -> Review


def _first(rec: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    for key in keys:
        value = rec.get(key)
        if value is not None and value != "":
            return key, value
    return keys[0], None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


class _Check:
    """The field checks of one record; ``fail`` builds the :class:`BadRecord` naming file, place and field."""

    def __init__(self, rec: dict[str, Any], schema: _Schema, label: str, where: str, max_time: int) -> None:
        self.rec, self.schema, self.label, self.where, self.max_time = rec, schema, label, where, max_time

    def fail(self, key: str, problem: str, expected: str, reason: str) -> BadRecord:
        return BadRecord(
            f"{self.label}, {self.where}: field '{printable(key, 40)}' {problem}; expected {expected} "
            f"(format {self.schema.name})",
            reason,
        )

    def present(self, keys: tuple[str, ...], expected: str, what: str) -> tuple[str, Any]:
        key, value = _first(self.rec, keys)
        if value is None or _is_nan(value):
            absent = not any(k in self.rec for k in keys)
            if _is_nan(value):
                raise self.fail(key, "is NaN", expected, f"bad {what}")
            raise self.fail(key, "is missing" if absent else "is empty", expected, f"{what} missing")
        return key, value

    def ident(self, keys: tuple[str, ...], what: str) -> str:
        expected = f"a {what} id (non-blank text or an integer)"
        key, value = self.present(keys, expected, what)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail(key, f"is {shown(value)}", expected, f"bad {what} id")
            if value.is_integer():
                value = int(value)
        if isinstance(value, dict | list | tuple | set | bool | bytes) or not isinstance(value, str | int | float):
            raise self.fail(key, f"is malformed: {shown(value)}", expected, f"bad {what} id")
        text = str(value).strip()
        if not text:
            raise self.fail(key, f"is blank ({shown(value)})", expected, f"{what} missing")
        bad = ID_FORBIDDEN.search(text)
        if bad:
            raise self.fail(
                key,
                f"contains a control character or invalid text ({shown(bad.group())} in {shown(text, 40)})",
                "an id of printable characters",
                f"bad {what} id",
            )
        if len(text) > MAX_ID_LENGTH:
            raise self.fail(
                key,
                f"is {len(text):,} characters long ({shown(text, 30)})",
                f"an id of at most {MAX_ID_LENGTH} characters (is the column mapping right?)",
                f"bad {what} id",
            )
        return text

    def timestamp(self) -> int:
        expected = "a review time between 1970 and now (unix seconds, unix milliseconds or a date)"
        key, value = self.present(self.schema.time, expected, "time")
        unit = dict(self.schema.time_unit).get(key)
        if unit == "s":
            expected = f"unix seconds between {MIN_TIME} ({_utc(MIN_TIME)[:10]}) and now"
        elif unit == "ms":
            expected = f"unix milliseconds between {MIN_TIME * 1000} ({_utc(MIN_TIME)[:10]}) and now"
        try:
            seconds, _ = _time_value(value, unit)
        except (ValueError, OverflowError, OSError) as exc:
            raise self.fail(key, f"is malformed: it {exc}", expected, "bad time") from None
        if self.schema.name == "table":  # a table of unknown origin may hold relative or synthetic times
            return seconds
        if seconds < 0:
            raise self.fail(key, f"is {shown(value)} = {_utc(seconds)}, before 1970", expected, "time out of range")
        if seconds > self.max_time:
            raise self.fail(key, f"is {shown(value)} = {_utc(seconds)}, in the future", expected, "time out of range")
        return seconds

    def rating(self) -> float | None:
        if not self.schema.rating:
            return None
        lo_hi = self.schema.rating_range
        expected = f"a rating from {lo_hi[0]:g} to {lo_hi[1]:g}" if lo_hi else "a finite number"
        key, raw = self.present(self.schema.rating, expected, "rating")
        try:
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise ValueError
            rating = float(raw)
        except (TypeError, ValueError):
            raise self.fail(key, f"is malformed: {shown(raw)}", expected, "bad rating") from None
        if not math.isfinite(rating):
            raise self.fail(key, f"is malformed: {shown(raw)} is not finite", expected, "bad rating")
        if lo_hi and not lo_hi[0] <= rating <= lo_hi[1]:
            raise self.fail(key, f"is {shown(raw)}, out of range", expected, "rating out of range")
        return rating

    def text(self, keys: tuple[str, ...]) -> str:
        if not keys:
            return ""
        key, value = _first(self.rec, keys)
        if value is None or _is_nan(value):
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(key, f"is malformed: {shown(value)}", "a text (a string, or empty / null)", "bad text")
        # a lone surrogate (a JSON escape like \ud800) cannot be stored as UTF-8: it becomes U+FFFD
        return _SURROGATE.sub("\ufffd", str(value).strip())


def _to_review(rec: dict[str, Any], schema: _Schema, label: str, where: str, max_time: int) -> Review:
    c = _Check(rec, schema, label, where, max_time)
    return Review(
        user=c.ident(schema.user, "user"),
        item=c.ident(schema.item, "item"),
        timestamp=c.timestamp(),
        rating=c.rating(),
        text=c.text(schema.text),
        title=c.text(schema.title),
    )


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


def _kind(name: str) -> str:
    lower = name.lower().removesuffix(".gz")
    return {
        ".json": "json",
        ".jsonl": "json",
        ".ndjson": "json",
        ".csv": "csv",
        ".tsv": "tsv",
        ".tab": "tsv",
        ".parquet": "parquet",
        ".pq": "parquet",
    }.get(os.path.splitext(lower)[1], "sniff")


def _magic(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    return "plain"


def _sources(path: Path) -> list[_Source]:
    label = printable(str(path), 200)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SymcereError(f"input file not found: {label}; expected an existing review file") from None
    except OSError as exc:
        raise SymcereError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SymcereError(
            f"{label} is a directory; expected a review file (.json, .jsonl, .csv, .tsv, .parquet; "
            "optionally .gz or .zip)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise SymcereError(f"{label} is not a regular file; expected a review file")
    try:
        with open(path, "rb") as fh:
            magic = _magic(fh.read(4))
    except OSError as exc:
        raise SymcereError(f"{label}: cannot read ({exc.strerror or exc})") from None
    if path.suffix.lower() != ".zip" and magic != "zip":
        return [_Source(label, path, None, _kind(path.name), magic == "gzip")]
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [
                i
                for i in zf.infolist()
                if not i.is_dir()
                and not i.filename.startswith("__MACOSX/")
                and not Path(i.filename).name.startswith(".")
            ]
            members = []
            for info in infos:
                with zf.open(info) as fh:
                    members.append((info.filename, _magic(fh.read(4))))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, OSError) as exc:
        raise SymcereError(f"{label}: not a valid zip archive ({exc}); expected a zip of review files") from None
    except (RuntimeError, NotImplementedError) as exc:  # encrypted or unsupported compression
        raise SymcereError(f"{label}: cannot open the zip archive ({exc}); expected an unencrypted zip") from None
    data = [m for m in members if m[0].lower().removesuffix(".gz").endswith(_DATA_EXTS)] or members
    if not data:
        raise SymcereError(f"{label}: the zip archive holds no data member; expected one review file inside")
    return [
        _Source(f"{label} (member {printable(n, 120)})", path, n, _kind(n), magic == "gzip")
        for n, magic in sorted(data)
    ]


def _bad_bytes(text: str, label: str, where: str) -> BadRecord | None:
    """A BadRecord when ``text`` holds bytes that were not UTF-8 (decoded with ``surrogateescape``)."""
    bad = _BAD_BYTE.search(text)
    if bad is None:
        return None
    byte = ord(bad.group()) - 0xDC00
    return BadRecord(
        f"{label}, {where}: byte 0x{byte:02x} at character {bad.start() + 1} is not UTF-8; expected UTF-8 text "
        "(convert the file, e.g. `iconv -f latin1 -t utf-8`)",
        "not UTF-8",
    )


_Raw = tuple[str, "dict[str, Any] | BadRecord", bool]


def _records(src: _Source) -> Iterator[_Raw]:
    """Yield ``(where, record or BadRecord, tabular)`` for every raw record of a source (tabular: fixed columns)."""
    kind = src.kind
    if kind == "parquet":
        for where, rec in _parquet_records(src):
            yield where, rec, True
        return
    with src.open_binary() as raw:
        head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise SymcereError(f"{src.label}: the file is UTF-16 text; expected UTF-8 (convert it, e.g. with iconv)")
        if kind == "sniff" and head == b"PAR1":
            yield from ((w, r, True) for w, r in _parquet_records(src))
            return
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
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
    stripped = first.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("{", "[")):
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


def _json_records(lines: Iterable[str], label: str) -> Iterator[tuple[str, dict[str, Any] | BadRecord]]:
    first = True
    for lineno, line in enumerate(lines, start=1):
        s = line.strip().lstrip("\ufeff")
        if not s:
            continue
        where = f"line {lineno}"
        if first and s in ("[", "{"):
            raise SymcereError(
                f"{label}, {where}: the file is one JSON document spread over many lines; expected JSON lines "
                "(one object per line)"
            )
        first = False
        bad = _bad_bytes(s, label, where)
        if bad is not None:
            yield where, bad
            continue
        yield where, _json_line(s, label, where)


def _json_line(s: str, label: str, where: str) -> dict[str, Any] | BadRecord:
    try:
        rec = json.loads(s)
    except json.JSONDecodeError as exc:
        try:  # some 2014 Amazon dumps are Python-literal lines; literal_eval evaluates literals only
            rec = ast.literal_eval(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            nul = " (it contains a NUL byte)" if "\x00" in s else ""
            return BadRecord(
                f"{label}, {where}: not a JSON object ({exc.msg} at character {exc.pos + 1}){nul}; "
                "expected one JSON object per line",
                "unparsable line",
            )
    except RecursionError:
        return BadRecord(
            f"{label}, {where}: the JSON is nested too deeply; expected a flat JSON object", "unparsable line"
        )
    if isinstance(rec, list) and rec and all(isinstance(r, dict) for r in rec):
        return BadRecord(
            f"{label}, {where}: a JSON array of {len(rec)} objects; expected one JSON object per line (JSON lines)",
            "not an object",
        )
    if not isinstance(rec, dict):
        kind = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
            type(rec), type(rec).__name__
        )
        return BadRecord(f"{label}, {where}: a JSON {kind}; expected a JSON object", "not an object")
    if not all(isinstance(k, str) for k in rec):
        return BadRecord(f"{label}, {where}: the object has non-text keys; expected field names", "not an object")
    return rec


def _csv_records(lines: Iterable[str], label: str, delimiter: str) -> Iterator[tuple[str, dict[str, Any] | BadRecord]]:
    csv.field_size_limit(2**31 - 1)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    header: list[str] = []
    try:
        while not header:  # leading blank lines
            header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise SymcereError(
            f"{label}, line {reader.line_num}: malformed header ({exc}); expected column names"
        ) from None
    header = [h.strip() for h in header]
    bad = _bad_bytes("".join(header), label, f"line {reader.line_num} (the header)")
    if bad is not None:
        raise SymcereError(str(bad))
    dup = sorted({h for h in header if h and header.count(h) > 1})
    if dup:
        raise SymcereError(
            f"{label}, line {reader.line_num}: column(s) {_names(dup)} appear more than once in the header; "
            "expected distinct column names"
        )
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield (
                f"line {start}",
                BadRecord(
                    f"{label}, line {start}: malformed CSV record ({exc}); expected properly quoted fields",
                    "malformed CSV",
                ),
            )
            start = reader.line_num + 1
            continue
        where = f"line {start}"
        if row:
            bad = _bad_bytes("".join(row), label, where)
            if bad is not None:
                yield where, bad
            elif len(row) != len(header):
                yield (
                    where,
                    BadRecord(
                        f"{label}, {where}: record has {len(row)} fields, the header has {len(header)}; expected "
                        f"{len(header)} fields (an unquoted delimiter in a field?)",
                        "ragged row",
                    ),
                )
            else:
                yield where, dict(zip(header, row, strict=True))
        start = reader.line_num + 1


def _parquet_records(src: _Source) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with src.open_binary() as raw:
        handle: IO[bytes] = io.BytesIO(raw.read()) if (src.member is not None or src.gz) else raw
        try:
            pf = pq.ParquetFile(handle)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise SymcereError(f"{src.label}: not a readable Parquet file ({exc}); expected a Parquet table") from None
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=65536):
                for rec in batch.to_pylist():
                    row += 1
                    yield f"row {row}", rec
        except (pa.ArrowException, OSError) as exc:
            raise SymcereError(f"{src.label}, after row {row}: the Parquet data is corrupt ({exc})") from None


# ----------------------------------------------------------------------------------------------------------
# public entry point


def read_reviews(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    fmt: str = "auto",
    columns: dict[str, str] | str | None = None,
    *,
    on_bad_record: str = "error",
    report: ReadReport | None = None,
) -> Iterator[Review]:
    """Stream :class:`Review` records from one or more files (plain, gzip or zip).

    ``fmt`` is one of :data:`FORMATS`; ``columns`` (``table`` / ``auto`` only) maps the keys user, item,
    rating, time, text, title to source columns (a dict or the CLI string ``user=col,item=col,...``). Without
    a mapping, ``table`` recognises common column names (Amazon, Yelp, ``user``/``item``/``timestamp``, ...).
    A bad record raises :class:`SymcereError` naming file, line and field (``on_bad_record="error"``) or is
    skipped and counted in ``report`` (``"skip"``); ``report`` also receives notes and the record count.
    """
    if fmt not in FORMATS:
        raise SymcereError(f"unknown format {shown(fmt)}; choose one of {', '.join(FORMATS)}")
    if on_bad_record not in ON_BAD_RECORD:
        raise SymcereError(f"on_bad_record must be one of {', '.join(ON_BAD_RECORD)}, got {shown(on_bad_record)}")
    mapping = parse_columns(columns)
    if mapping is not None and fmt not in ("auto", "table"):
        raise SymcereError(f"--columns applies to --format table or auto, not {fmt}")
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise SymcereError("no input files given")
    report = report if report is not None else ReadReport()
    max_time = int(time.time()) + FUTURE_SLACK
    for path in path_list:
        sources = _sources(path)
        if len(sources) > 1:
            members = ", ".join(s.member or "" for s in sources)
            report.notes.append(
                f"{printable(str(path), 200)}: read {len(sources)} data members in name order: {printable(members, 300)}"
            )
        for src in sources:
            yield from _read_source(src, fmt, mapping, on_bad_record, report, max_time)
    if report.early > 1:
        report.notes.append(f"{report.early:,} records in all have a time before 1990; they were kept as given")
    if report.records == 0 and report.skipped:
        raise SymcereError(
            f"no valid record in the input: all {report.skipped:,} records were bad and skipped; first: "
            f"{report.examples[0]}"
        )


def _schema_for(rec: dict[str, Any], fmt: str, label: str, where: str) -> _Schema:
    if fmt != "table":
        return _detect(rec, label, where)
    inferred = _infer_mapping(rec)
    missing = [k for k in _REQUIRED_KEYS if k not in inferred]
    if missing:
        raise SymcereError(
            f"{label}, {where}: no column recognised for {missing} among {_names(rec)}; "
            "expected common column names, or pass --columns user=COL,item=COL,time=COL,..."
        )
    return _table_schema(inferred)


def _check_columns(schema: _Schema, rec: dict[str, Any], tabular: bool, label: str, where: str) -> None:
    """A mapped column absent from the first record (the header of a table) stops reading."""
    # tabular sources share one header: check every mapped column once; JSON lines may legitimately omit the
    # optional text/title keys in some records.
    keys = COLUMN_KEYS if tabular else ("user", "item", "time", "rating")
    for key in keys:
        cols = getattr(schema, key)
        if cols and cols[0] not in rec:
            raise SymcereError(
                f"{label}, {where}: missing column '{printable(cols[0], 60)}' (mapped to {key}); expected one of "
                f"the available columns: {_names(rec)}"
            )


def _read_source(
    src: _Source,
    fmt: str,
    mapping: dict[str, str] | None,
    on_bad_record: str,
    report: ReadReport,
    max_time: int,
) -> Iterator[Review]:
    schema: _Schema | None = None
    if mapping is not None:
        schema = _table_schema(mapping)
    elif fmt in _SCHEMAS:
        schema = _SCHEMAS[fmt]
    checked = False
    n_raw = 0
    try:
        for where, rec, tabular in _records(src):
            n_raw += 1
            try:
                if isinstance(rec, BadRecord):
                    raise rec
                if not checked:
                    if schema is None:
                        schema = _schema_for(rec, fmt, src.label, where)
                    if schema.name == "table":
                        _check_columns(schema, rec, tabular, src.label, where)
                    checked = True
                review = _to_review(rec, schema, src.label, where, max_time)
            except BadRecord as bad:
                if on_bad_record == "error":
                    raise
                report.skip(bad)
                continue
            report.records += 1
            if review.timestamp < MIN_TIME and schema is not None and schema.name != "table":
                report.early += 1
                if report.early == 1:
                    report.notes.append(
                        f"{src.label}, {where}: time {review.timestamp} = {_utc(review.timestamp)} is before 1990 "
                        "(often a missing time stored as 0); kept as given"
                    )
            yield review
    except UnicodeDecodeError as exc:
        raise SymcereError(f"{src.label}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected UTF-8") from None
    except (zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zipfile.LargeZipFile, zlib.error) as exc:
        raise SymcereError(
            f"{src.label}: cannot read the archive ({exc}); it is corrupt or truncated (expected a complete file)"
        ) from None
    except (RuntimeError, NotImplementedError) as exc:
        raise SymcereError(f"{src.label}: cannot read the archive member ({exc})") from None
    except OSError as exc:
        raise SymcereError(f"{src.label}: cannot read ({exc.strerror or exc})") from None
    if n_raw == 0:
        raise SymcereError(f"{src.label}: no records (the file is empty or holds only a header); expected reviews")
