"""The bad-input corpus: >= 80 review files, each with one defect in an otherwise valid file (or an odd but valid
input), run through ``symcere prepare`` exactly as a user would.

Every case is generated here, deterministically (no stored data files). An error case must exit 2 with one
``symcere: error:`` line that names the file, the line / row / member, the field and what was expected, with no
traceback and no raw control character; nothing may be left at ``--out`` or next to it (no temporary files) and
the input files must be byte-for-byte unchanged. An odd-but-valid case must give a loadable dataset.
``corpus()`` is also used by ``benchmarks/fault_injection.py`` (cases tried / handled).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from symcere.cli import main

T0 = 1_400_000_000  # 2014-05-13
N_USERS, N_ITEMS = 6, 5
BAD = 2  # the 0-based record that carries the defect: line 3 of JSON lines, line 4 of a CSV (header = line 1)


def base_rows() -> list[dict[str, Any]]:
    """6 users x 5 items, every user reviews every item (canonical field names)."""
    rows = []
    for u in range(N_USERS):
        for i in range(N_ITEMS):
            rows.append(
                {
                    "user": f"u{u}",
                    "item": f"i{i}",
                    "rating": float(1 + (u + i) % 5),
                    "time": T0 + 1000 * (u * N_ITEMS + i),
                    "text": f"review of item {i} by user {u}",
                    "title": f"Title {u}-{i}",
                }
            )
    return rows


# -- rendering in each format ----------------------------------------------------------------------------------
KEYS = {
    "amazon2014": {
        "user": "reviewerID",
        "item": "asin",
        "rating": "overall",
        "time": "unixReviewTime",
        "text": "reviewText",
        "title": "summary",
    },
    "amazon2023": {
        "user": "user_id",
        "item": "parent_asin",
        "rating": "rating",
        "time": "timestamp",
        "text": "text",
        "title": "title",
    },
    "yelp": {"user": "user_id", "item": "business_id", "rating": "stars", "time": "date", "text": "text"},
    "table": {"user": "uid", "item": "iid", "rating": "r", "time": "ts", "text": "body", "title": "head"},
}
TABLE_COLUMNS = "user=uid,item=iid,rating=r,time=ts,text=body,title=head"


def records(fmt: str, rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows with the source keys of ``fmt`` (amazon2023 times in ms, yelp times as day strings)."""
    out = []
    for row in rows if rows is not None else base_rows():
        rec = {}
        for key, src in KEYS[fmt].items():
            value = row[key]
            if key == "time" and fmt == "amazon2023":
                value = value * 1000 + 123
            if key == "time" and fmt == "yelp":
                value = pd.Timestamp(value, unit="s").strftime("%Y-%m-%d %H:%M:%S")
            rec[src] = value
        if fmt == "yelp":
            rec["review_id"] = f"r{len(out)}"
        out.append(rec)
    return out


def jsonl(recs: list[Any]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs).encode("utf-8")


def csv_bytes(recs: list[dict[str, Any]], delimiter: str = ",", lineterminator: str = "\r\n") -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(recs[0]), delimiter=delimiter, lineterminator=lineterminator)
    w.writeheader()
    w.writerows(recs)
    return buf.getvalue().encode("utf-8")


def mutate(fmt: str, change: Callable[[dict[str, Any]], Any], index: int = BAD) -> list[dict[str, Any]]:
    recs = records(fmt)
    change(recs[index])
    return recs


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():  # a fixed member time: the same bytes on every run
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


# -- the corpus ------------------------------------------------------------------------------------------------
@dataclass
class Err:
    """What the one error line must contain: ``parts`` (regexes), in addition to the file name."""

    parts: tuple[str, ...] = ()
    file: bool = True  # the message names the input file
    expected: bool = True  # the message says what was expected


@dataclass
class Case:
    name: str
    files: dict[str, bytes | None]  # name -> content (None: a directory); the first name is the input
    expect: Err | None = None  # None: odd but valid, must be accepted
    args: tuple[str, ...] = ("--k-core", "0")
    check: Callable[[Path, str], None] | None = None  # extra checks of an accepted case (dataset dir, stderr)
    inputs: tuple[str, ...] | None = None  # input names when not just the first file
    tags: set[str] = field(default_factory=set)


def _meta(out: Path) -> dict[str, Any]:
    return json.loads((out / "dataset.json").read_text(encoding="utf-8"))


def _users(out: Path) -> list[str]:
    return pd.read_parquet(out / "users.parquet")["user_id"].tolist()


def _texts(out: Path) -> list[str]:
    return pd.read_parquet(out / "interactions.parquet")["review"].tolist()


def line(n: int) -> str:
    return rf"line {n}\b"


def corpus() -> list[Case]:
    """Every case, in a fixed order."""
    a = "amazon2014"
    good_json = jsonl(records(a))
    good_csv = csv_bytes(records(a))
    L = BAD + 1  # JSON line of the bad record
    C = BAD + 2  # CSV line of the bad record
    cases: list[Case] = []

    def err(name: str, files: dict[str, bytes | None], *parts: str, **kw: Any) -> None:
        flags = {k: kw.pop(k) for k in ("file", "expected") if k in kw}
        cases.append(Case(name, files, Err(tuple(parts), **flags), **kw))

    def ok(name: str, files: dict[str, bytes | None], check: Callable[[Path, str], None] | None = None, **kw) -> None:
        cases.append(Case(name, files, None, check=check, **kw))

    def field_err(name: str, fmt: str, change: Callable[[dict[str, Any]], Any], fld: str, *parts: str, csv_=False):
        recs = mutate(fmt, change)
        if csv_:
            err(name, {"r.csv": csv_bytes(recs)}, line(C), f"field '{fld}'", *parts)
        else:
            err(name, {"r.json": jsonl(recs)}, line(L), f"field '{fld}'", *parts)

    # ---- containers ------------------------------------------------------------------------------------------
    gz = gzip.compress(good_json, mtime=0)
    err("gzip truncated", {"r.json.gz": gz[: len(gz) // 2]}, "corrupt or truncated")
    err("gzip corrupt data", {"r.json.gz": gz[:20] + bytes(b ^ 0x5A for b in gz[20:60]) + gz[60:]}, "archive")
    err("zip corrupt", {"r.zip": b"PK\x03\x04" + b"\x00garbage" * 20}, "not a valid zip")
    err("zip name, not a zip", {"r.zip": good_json}, "not a valid zip")
    err("zip without members", {"r.zip": zip_bytes({})}, "no data member")
    zbad = bytearray(zip_bytes({"r.json": good_json * 3}))
    zbad[60:90] = bytes(b ^ 0xFF for b in zbad[60:90])
    err("zip member corrupt", {"r.zip": bytes(zbad)}, "archive|zip")
    err("zip member empty", {"r.zip": zip_bytes({"r.json": b""})}, r"member r\.json", "no records")
    ok(
        "zip with two members (read in name order, noted)",
        {"r.zip": zip_bytes({"b.json": jsonl(records(a)[15:]), "a.json": jsonl(records(a)[:15])})},
        lambda out, err_: (
            _meta(out)["stats"]["records_read"] == 30 or pytest.fail("both members read"),
            "2 data members" in err_ or pytest.fail("note about the members"),
        ),
    )
    ok("zip with a gzip member", {"r.zip": zip_bytes({"r.json.gz": gz})})
    ok("zip without the .zip name", {"data.bin": zip_bytes({"r.csv": good_csv})})
    ok("gzip without the .gz name", {"r.json": gz})
    ok("a .gz name on plain text", {"r.json.gz": good_json})
    err("empty file", {"r.json": b""}, "no records")
    err("only blank lines", {"r.json": b"\n\n  \n\r\n"}, "no records")
    err("csv header only", {"r.csv": good_csv.split(b"\r\n")[0] + b"\r\n"}, "no records")
    err("empty gzip", {"r.json.gz": gzip.compress(b"", mtime=0)}, "no records")
    err("a directory", {"d": None}, "is a directory")
    err("a missing file", {}, "not found", inputs=("missing.json",))
    err("utf-16 text", {"r.json": good_json.decode().encode("utf-16")}, "UTF-16")

    # ---- encodings ---------------------------------------------------------------------------------------------
    lines = good_json.split(b"\n")
    latin = b"\n".join([*lines[:BAD], lines[BAD].replace(b"review", b"r\xe9view"), *lines[BAD + 1 :]])
    err("latin-1 byte in a JSON line", {"r.json": latin}, line(L), "0xe9", "UTF-8")
    crows = good_csv.split(b"\r\n")
    clatin = b"\r\n".join([*crows[: C - 1], crows[C - 1].replace(b"review", b"r\xe9view"), *crows[C:]])
    err("latin-1 byte in a CSV record", {"r.csv": clatin}, line(C), "UTF-8")
    err("latin-1 byte in the CSV header", {"r.csv": good_csv.replace(b"summary", b"summ\xe4ry", 1)}, "header")
    ok("BOM before JSON lines", {"r.json": b"\xef\xbb\xbf" + good_json})
    ok("BOM before a CSV header", {"r.csv": b"\xef\xbb\xbf" + good_csv})
    nul = b"\n".join([*lines[:BAD], lines[BAD].replace(b"review", b"rev\x00iew"), *lines[BAD + 1 :]])
    err("NUL byte in a JSON line", {"r.json": nul}, line(L), "NUL")
    ok(
        "NUL byte in a CSV review text (kept)",
        {"r.csv": good_csv.replace(b"review of item 0 by user 0", b"review\x00 0 0")},
    )
    err(
        "NUL byte in a CSV id",
        {"r.csv": good_csv.replace(b"\r\nu1,", b"\r\nu\x001,", 1)},
        r"line \d+",
        "field 'reviewerID'",
        "control character",
    )
    ok("CRLF JSON lines", {"r.json": good_json.replace(b"\n", b"\r\n")})
    ok("LF-only CSV", {"r.csv": csv_bytes(records(a), lineterminator="\n")})
    mixed = b"".join(ln + (b"\r\n" if k % 2 else b"\n") for k, ln in enumerate(lines[:-1]))
    ok("mixed newlines", {"r.json": mixed})
    ok("old-Mac CR newlines in a CSV", {"r.csv": csv_bytes(records(a), lineterminator="\r")})

    # ---- JSON and Python-literal lines --------------------------------------------------------------------------
    broken = b"\n".join([*lines[:BAD], lines[BAD][: len(lines[BAD]) // 2], *lines[BAD + 1 :]])
    err("a broken JSON line", {"r.json": broken}, line(L), "not a JSON object")
    err(
        "a top-level array on one line",
        {"r.json": json.dumps(records(a)).encode() + b"\n"},
        line(1),
        "array",
    )
    err(
        "a pretty-printed JSON document",
        {"r.json": json.dumps(records(a), indent=2).encode()},
        line(1),
        "JSON lines",
    )
    err(
        "a line that is a string",
        {"r.json": b"\n".join([*lines[:BAD], b'"just text"', *lines[BAD + 1 :]])},
        line(L),
        "JSON string",
    )
    err(
        "a line that is a number",
        {"r.json": b"\n".join([*lines[:BAD], b"42", *lines[BAD + 1 :]])},
        line(L),
        "JSON number",
    )
    field_err("nested garbage in an id", a, lambda r: r.update(reviewerID={"$oid": [1, 2]}), "reviewerID", "malformed")
    deep = json.dumps(records(a)[BAD])[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    err(
        "nesting too deep",
        {"r.json": b"\n".join([*lines[:BAD], deep.encode(), *lines[BAD + 1 :]])},
        line(L),
    )
    code = b"__import__('os').system('touch PWNED')"
    err(
        "a line that tries to run code",
        {"r.json": b"\n".join([*lines[:BAD], code, *lines[BAD + 1 :]])},
        line(L),
        "not a JSON object",
        tags={"code"},
    )
    code2 = repr({**records(a)[BAD], "reviewText": "x"}).replace("'x'", "__import__('os').system('touch PWNED')")
    err(
        "a literal line with a call inside",
        {"r.json": b"\n".join([*lines[:BAD], code2.encode(), *lines[BAD + 1 :]])},
        line(L),
        tags={"code"},
    )
    err(
        "a literal line with non-text keys",
        {"r.json": b"\n".join([*lines[:BAD], b"{1: 2, 3: 4}", *lines[BAD + 1 :]])},
        line(L),
        "keys",
    )
    literal = b"".join(repr(r).encode() + b"\n" for r in records(a))
    ok("Python-literal lines (2014 dumps)", {"r.json": literal})
    err(
        "a NaN rating literal",
        {"r.json": good_json.replace(b'"overall": 4.0', b'"overall": NaN', 1)},
        r"line \d+",
        "field 'overall'",
        "NaN",
    )

    # ---- fields ---------------------------------------------------------------------------------------------------
    field_err("missing user", a, lambda r: r.pop("reviewerID"), "reviewerID", "is missing")
    field_err("missing item", a, lambda r: r.pop("asin"), "asin", "is missing")
    field_err("missing time", a, lambda r: r.pop("unixReviewTime"), "unixReviewTime", "is missing")
    field_err("empty user id", a, lambda r: r.update(reviewerID=""), "reviewerID", "is empty")
    field_err("whitespace user id", a, lambda r: r.update(reviewerID="   "), "reviewerID", "blank")
    field_err("whitespace item id in a CSV", a, lambda r: r.update(asin=" \t "), "asin", "blank", csv_=True)
    field_err("null item id", a, lambda r: r.update(asin=None), "asin", "is empty")
    field_err("boolean user id", a, lambda r: r.update(reviewerID=True), "reviewerID", "malformed")
    ok(
        "null review text",
        {"r.json": jsonl(mutate(a, lambda r: r.update(reviewText=None)))},
    )
    ok(
        "absent review text",
        {"r.json": jsonl(mutate(a, lambda r: r.pop("reviewText")))},
    )
    field_err("non-numeric rating", a, lambda r: r.update(overall="five"), "overall", "malformed", "1 to 5")
    field_err("negative rating", a, lambda r: r.update(overall=-1), "overall", "out of range")
    field_err("rating above the scale", a, lambda r: r.update(overall=7), "overall", "out of range")
    field_err("null rating", a, lambda r: r.update(overall=None), "overall", "empty")
    field_err("boolean rating", a, lambda r: r.update(overall=True), "overall", "malformed")
    field_err("rating out of range in a CSV", a, lambda r: r.update(overall="55"), "overall", "out of range", csv_=True)
    field_err("non-numeric time", a, lambda r: r.update(unixReviewTime="someday"), "unixReviewTime", "malformed")
    field_err("negative time", a, lambda r: r.update(unixReviewTime=-5), "unixReviewTime", "before 1970")
    field_err(
        "milliseconds in a seconds field",
        a,
        lambda r: r.update(unixReviewTime=r["unixReviewTime"] * 1000),
        "unixReviewTime",
        "milliseconds",
        "unix seconds",
    )
    field_err("far-future time", a, lambda r: r.update(unixReviewTime=7_258_118_400), "unixReviewTime", "future")
    field_err("infinite time", a, lambda r: r.update(unixReviewTime=1e400), "unixReviewTime", "finite")
    field_err("time as a list", a, lambda r: r.update(unixReviewTime=[1]), "unixReviewTime", "malformed")
    field_err(
        "NaN time",
        a,
        lambda r: r.update(unixReviewTime=float("nan")),
        "unixReviewTime",
        "NaN",
    )
    ok(
        "a time before 1990 (kept, with a note)",
        {"r.json": jsonl(mutate(a, lambda r: r.update(unixReviewTime=100_000_000)))},
        lambda out, err_: "before 1990" in err_ or pytest.fail("a note about the early time"),
    )
    ok(
        "an ISO date in the seconds field",
        {"r.json": jsonl(mutate(a, lambda r: r.update(unixReviewTime="2014-05-01")))},
    )
    ok(
        "a day string in reviewTime only",
        {"r.json": jsonl(mutate(a, lambda r: (r.pop("unixReviewTime"), r.update(reviewTime="05 13, 2014"))))},
    )
    ok("fractional seconds", {"r.json": jsonl(mutate(a, lambda r: r.update(unixReviewTime=T0 + 0.5)))})
    ms23 = mutate("amazon2023", lambda r: r.update(timestamp=T0))
    err(
        "seconds in the amazon2023 milliseconds field",
        {"r.jsonl": jsonl(ms23)},
        line(L),
        "field 'timestamp'",
        "seconds",
    )
    ok("amazon2023 JSON lines", {"r.jsonl": jsonl(records("amazon2023"))})
    yelp_bad = mutate("yelp", lambda r: r.update(date="2016-13-45"))
    err("a malformed Yelp date", {"review.json": jsonl(yelp_bad)}, line(L), "field 'date'", "date")
    ok("Yelp JSON lines", {"review.json": jsonl(records("yelp"))})
    ok("Yelp CSV", {"yelp.csv": csv_bytes(records("yelp"))})
    err(
        "a terminal escape sequence in an id",
        {"r.json": jsonl(mutate(a, lambda r: r.update(reviewerID="u\x1b[2J\x1b[31mred")))},
        line(L),
        "field 'reviewerID'",
        r"\\x1b",
    )
    field_err("a newline in an id", a, lambda r: r.update(asin="i\n9"), "asin", "control character")
    field_err("a tab in an id", a, lambda r: r.update(asin="i\t9"), "asin", "control character")
    field_err("a C1 control in an id", a, lambda r: r.update(asin="i\x9b9"), "asin", "control character")
    ok(
        "a lone surrogate in a review (replaced)",
        {"r.json": good_json.replace(b"review of item 2 by user 0", b"review \\ud800 of item 2", 1)},
        lambda out, _: any("\ufffd" in t for t in _texts(out)) or pytest.fail("U+FFFD in the review"),
    )
    err(
        "a lone surrogate in an id",
        {"r.json": good_json.replace(b'"reviewerID": "u0"', b'"reviewerID": "u\\udc80"', 1)},
        line(1),
        "field 'reviewerID'",
    )
    uni = [
        dict(r, user={"u0": "ü", "u1": "日本", "u2": "😀", "u3": "Ωmega"}.get(r["user"], r["user"]))
        for r in base_rows()
    ]
    ok(
        "unicode ids",
        {"r.json": jsonl(records(a, uni))},
        lambda out, _: {"ü", "日本", "😀"} <= set(_users(out)) or pytest.fail("unicode ids kept"),
    )
    num = [dict(r, user=int(r["user"][1:]) + 100, item=int(r["item"][1:])) for r in base_rows()]
    ok(
        "numeric ids",
        {"r.json": jsonl(records(a, num))},
        lambda out, _: "100" in _users(out) or pytest.fail("numeric ids as text"),
    )
    ok("integral float ids", {"r.json": jsonl(records(a, [dict(r, item=float(r["item"][1:])) for r in base_rows()]))})
    ok(
        "duplicate rows",
        {"r.json": good_json + good_json},
        lambda out, _: _meta(out)["stats"]["duplicates_removed"] == 30 or pytest.fail("duplicates removed"),
    )
    ok("empty review texts", {"r.json": jsonl(records(a, [dict(r, text="", title="") for r in base_rows()]))})
    lonely = [*base_rows(), *({**base_rows()[0], "user": f"lone{k}", "item": "i0"} for k in range(5))]
    ok(
        "one-review users before filtering",
        {"r.json": jsonl(records(a, lonely))},
        lambda out, _: "lone0" not in _users(out) or pytest.fail("removed by the 5-core"),
        args=("--k-core", "5"),
    )
    ok("a 5 MB review text", {"r.json": jsonl(mutate(a, lambda r: r.update(reviewText="word " * 1_000_000)))})
    field_err("a 5000-character id", a, lambda r: r.update(reviewerID="u" * 5000), "reviewerID", "characters long")
    sparse = [{**r, "user": f"u{k}", "item": f"i{k}"} for k, r in enumerate(base_rows())]
    err(
        "a dataset that vanishes under 5-core",
        {"r.json": jsonl(records(a, sparse))},
        "k-core",
        "--k-core",
        file=False,
        expected=False,
        args=("--k-core", "5"),
    )
    ok("amazon2014 CSV", {"r.csv": good_csv})
    ok("amazon2018 JSON lines, gzip", {"Beauty_5.json.gz": gzip.compress(jsonl(records(a)), mtime=0)})

    # ---- CSV / TSV / Parquet tables ---------------------------------------------------------------------------------
    t = records("table")
    tab = ("--format", "table", "--columns", TABLE_COLUMNS, "--k-core", "0")
    ok("table CSV with a mapping", {"t.csv": csv_bytes(t)}, args=tab)
    err(
        "a wrong column mapping (time -> a text column)",
        {"t.csv": csv_bytes(t)},
        line(2),
        "field 'body'",
        args=("--format", "table", "--columns", "user=uid,item=iid,time=body", "--k-core", "0"),
    )
    err(
        "a mapped column missing",
        {"t.csv": csv_bytes(t)},
        line(2),
        "missing column 'stamp'",
        args=("--format", "table", "--columns", "user=uid,item=iid,time=stamp", "--k-core", "0"),
    )
    ragged = csv_bytes(t).split(b"\r\n")
    ragged[C - 1] += b",extra"
    err("a ragged row", {"t.csv": b"\r\n".join(ragged)}, line(C), "fields", args=tab)
    short = csv_bytes(t).split(b"\r\n")
    short[C - 1] = b",".join(short[C - 1].split(b",")[:3])
    err("a short row", {"t.csv": b"\r\n".join(short)}, line(C), "fields", args=tab)
    ok(
        "quoted newlines",
        {"t.csv": csv_bytes(mutate("table", lambda r: r.update(body="line one\nline two, with comma\r\nthree")))},
        args=tab,
    )
    unterminated = csv_bytes(t).replace(b"review of item 2 by user 0", b'"review never closed', 1)
    err("an unterminated quote", {"t.csv": unterminated}, line(C), "malformed CSV", args=tab)
    stray = csv_bytes(t).replace(b"review of item 2 by user 0", b'"review" stray', 1)
    err("a stray quote", {"t.csv": stray}, line(C), "malformed CSV", args=tab)
    ok("table TSV", {"t.tsv": csv_bytes(t, "\t")}, args=tab)
    tsv_ragged = csv_bytes(t, "\t").split(b"\r\n")
    tsv_ragged[C - 1] += b"\tmore"
    err("a ragged TSV row", {"t.tsv": b"\r\n".join(tsv_ragged)}, line(C), "fields", args=tab)
    err(
        "a duplicated header name",
        {"t.csv": csv_bytes(t).replace(b"head", b"body", 1)},
        line(1),
        "more than once",
        args=tab,
    )
    err(
        "an empty id in a table",
        {"t.csv": csv_bytes(mutate("table", lambda r: r.update(uid="")))},
        line(C),
        "'uid'",
        args=tab,
    )
    ok(
        "table CSV, negative ratings (any finite number)",
        {"t.csv": csv_bytes(mutate("table", lambda r: r.update(r=-3)))},
        args=tab,
    )
    err(
        "a non-finite rating in a table",
        {"t.csv": csv_bytes(mutate("table", lambda r: r.update(r="inf")))},
        line(C),
        "field 'r'",
        "finite",
        args=tab,
    )
    ok("blank lines before the header", {"t.csv": b"\r\n\r\n" + csv_bytes(t)}, args=tab)
    ok("table JSON lines", {"t.jsonl": jsonl(t)}, args=tab)
    frame = pd.DataFrame(t)
    ok("Parquet table", {"t.parquet": parquet_bytes(frame)}, args=tab)
    ok("Parquet without the .parquet name", {"t.dat": parquet_bytes(frame)}, args=tab)
    err(
        "Parquet: a mapped column missing",
        {"t.parquet": parquet_bytes(frame.drop(columns=["ts"]))},
        r"row 1\b",
        "missing column 'ts'",
        args=tab,
    )
    nulls = frame.astype({"uid": object})
    nulls.loc[BAD, "uid"] = None
    err("Parquet: a null user", {"t.parquet": parquet_bytes(nulls)}, rf"row {BAD + 1}\b", "field 'uid'", args=tab)
    nan_time = frame.astype({"ts": float})
    nan_time.loc[BAD, "ts"] = float("nan")
    err("Parquet: a NaN time", {"t.parquet": parquet_bytes(nan_time)}, rf"row {BAD + 1}\b", "field 'ts'", args=tab)
    pq = parquet_bytes(frame)
    err("Parquet: truncated", {"t.parquet": pq[: len(pq) // 2]}, "Parquet", args=tab)
    err(
        "an undetectable format",
        {"x.csv": csv_bytes([{"foo": 1, "bar": 2}])},
        line(2),
        "cannot detect the format",
        "--columns",
    )
    err(
        "table format, no recognisable column",
        {"x.csv": csv_bytes([{"foo": 1, "bar": 2}])},
        line(2),
        "no column recognised",
        args=("--format", "table"),
    )
    ms18 = jsonl(mutate(a, lambda r: r.update(unixReviewTime=r["unixReviewTime"] * 1000)))
    err("milliseconds in a gzip 2018 file", {"All_5.json.gz": gzip.compress(ms18, mtime=0)}, line(L), "milliseconds")

    # ---- --on-bad-record=skip -----------------------------------------------------------------------------------------
    two_bad = mutate(a, lambda r: r.update(overall=9))
    two_bad[7]["reviewerID"] = ""
    ok(
        "skip: two bad records dropped and counted",
        {"r.json": jsonl(two_bad)},
        lambda out, err_: (
            _meta(out)["stats"]["skipped"]["count"] == 2 or pytest.fail("skipped count in dataset.json"),
            "skipped 2 bad record" in err_ or pytest.fail("skipped count on stderr"),
        ),
        args=("--k-core", "0", "--on-bad-record", "skip"),
    )
    ok(
        "skip: a broken line and a ragged CSV row",
        {"r.json": broken},
        lambda out, _: _meta(out)["stats"]["records_read"] == 29 or pytest.fail("29 records kept"),
        args=("--k-core", "0", "--on-bad-record", "skip"),
    )
    err(
        "skip: every record bad",
        {"r.json": jsonl([dict(r, overall=0) for r in records(a)])},
        "all 30 records were bad",
        line(1),
        args=("--k-core", "0", "--on-bad-record", "skip"),
    )
    return cases


CASES = corpus()
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")  # raw control characters (newline allowed)


def write_case(case: Case, root: Path) -> tuple[list[str], dict[str, str]]:
    """Write the case's files into ``root/in``; returns the input paths and the sha256 of every file."""
    src = root / "in"
    src.mkdir(parents=True)
    for name, content in case.files.items():
        if content is None:
            (src / name).mkdir()
        else:
            (src / name).write_bytes(content)
    names = case.inputs or (next(iter(case.files)),)
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir() if p.is_file()}
    return [str(src / n) for n in names], digests


def run_case(case: Case, root: Path, capsys: Any) -> tuple[int, str]:
    inputs, _ = write_case(case, root)
    rc = main(["prepare", "--input", *inputs, "--out", str(root / "outs" / "data"), *case.args])
    return rc, capsys.readouterr().err


def test_the_corpus_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 80
    assert len({c.name for c in CASES}) == len(CASES)
    assert sum(c.expect is None for c in CASES) >= 25 and sum(c.expect is not None for c in CASES) >= 50
    # deterministic: the same bytes every time
    again = corpus()
    assert [c.files for c in again] == [c.files for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a code-running line would touch PWNED here
    inputs, digests = write_case(case, tmp_path)
    out = tmp_path / "outs" / "data"
    (tmp_path / "outs").mkdir()
    rc = main(["prepare", "--input", *inputs, "--out", str(out), *case.args])
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err
    assert not _CONTROL.search(err), f"raw control character in {err!r}"
    assert not (tmp_path / "PWNED").exists(), "a line was evaluated"
    # the user's files are untouched
    src = tmp_path / "in"
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir() if p.is_file()} == digests
    if case.expect is None:
        assert rc == 0, err
        from symcere.data import Dataset

        ds = Dataset.load(out)
        assert ds.n_users > 0 and ds.n_items > 0
        if case.check is not None:
            case.check(out, err)
        assert sorted(p.name for p in (tmp_path / "outs").iterdir()) == ["data"]  # no temp or lock files
        return
    assert rc == 2, err
    messages = [ln for ln in err.splitlines() if ln.strip()]
    assert len(messages) == 1 and messages[0].startswith("symcere: error: "), err
    msg = messages[0]
    if case.expect.file:
        assert Path(inputs[0]).name in msg, msg
    if case.expect.expected:
        assert "expected" in msg, msg
    for part in case.expect.parts:
        assert re.search(part, msg), f"{part!r} not in {msg!r}"
    # nothing at --out, nothing next to it (no temporary directory, no lock file)
    assert not out.exists()
    assert list((tmp_path / "outs").iterdir()) == []
