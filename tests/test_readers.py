"""Readers: every format, containers (gz / zip), auto detection, error messages."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from symcere.data import Review, read_reviews
from symcere.data.readers import parse_columns, parse_time
from symcere.errors import SymcereError

AMAZON_ROWS = [
    {
        "reviewerID": "u1",
        "asin": "i1",
        "overall": 5.0,
        "reviewText": "great",
        "summary": "Nice",
        "unixReviewTime": 1400000000,
    },
    {
        "reviewerID": "u2",
        "asin": "i1",
        "overall": 3.0,
        "reviewText": "ok",
        "summary": "Meh",
        "unixReviewTime": 1400000100,
    },
]


def _csv_bytes(rows: list[dict], delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_amazon_json_lines_strict_and_python_literal(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json"
    literal = repr({**AMAZON_ROWS[1], "helpful": [0, 1]})  # Python-literal line (single quotes)
    path.write_text(json.dumps(AMAZON_ROWS[0]) + "\n\n" + literal + "\n")
    got = list(read_reviews(path, "amazon2014"))
    assert got == [
        Review("u1", "i1", 1400000000, 5.0, "great", "Nice"),
        Review("u2", "i1", 1400000100, 3.0, "ok", "Meh"),
    ]
    assert list(read_reviews(path)) == got  # auto


def test_amazon2018_gz_extra_fields_and_missing_text(tmp_path: Path) -> None:
    rows = [
        {**AMAZON_ROWS[0], "vote": "2", "verified": True, "style": {"Size:": "M"}, "image": ["x"]},
        {k: v for k, v in AMAZON_ROWS[1].items() if k != "reviewText"},
    ]
    path = tmp_path / "Beauty_5.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(_jsonl(rows))
    got = list(read_reviews(path))
    assert [r.text for r in got] == ["great", ""]
    assert got[1].title == "Meh"
    assert list(read_reviews(path, "amazon2018")) == got


def test_zip_with_csv_quoted_newlines_auto_and_table(tmp_path: Path) -> None:
    rows = [dict(AMAZON_ROWS[0], reviewText="line one\nline two, with comma"), AMAZON_ROWS[1]]
    path = tmp_path / "mi.csv.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mi.csv", _csv_bytes(rows))
        zf.writestr("__MACOSX/._mi.csv", b"junk")
    for fmt in ("auto", "table", "amazon2014"):
        got = list(read_reviews(path, fmt))
        assert [(r.user, r.item, r.timestamp, r.rating) for r in got] == [
            ("u1", "i1", 1400000000, 5.0),
            ("u2", "i1", 1400000100, 3.0),
        ]
        assert got[0].text == "line one\nline two, with comma"
        assert got[0].title == "Nice"


def test_zip_with_several_members_in_name_order(tmp_path: Path) -> None:
    path = tmp_path / "parts.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("b.json", _jsonl([AMAZON_ROWS[1]]))
        zf.writestr("a.json", _jsonl([AMAZON_ROWS[0]]))
        zf.writestr("README.md", "not data")
    assert [r.user for r in read_reviews(path)] == ["u1", "u2"]


def test_tsv_with_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "x.tsv"
    rows = [{"uid": "a", "iid": "x", "when": "2020-01-02", "body": "hi", "stars": "4"}]
    path.write_bytes(_csv_bytes(rows, "\t"))
    (r,) = read_reviews(path, "table", "user=uid,item=iid,time=when,text=body,rating=stars")
    assert r == Review("a", "x", 1577923200, 4.0, "hi", "")
    # a mapping with format auto means table
    assert list(read_reviews(path, columns={"user": "uid", "item": "iid", "time": "when"})) == [
        Review("a", "x", 1577923200, None, "", "")
    ]


def test_parquet_with_mapping_ms_and_seconds(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pd.DataFrame({"u": ["a", "b"], "i": ["x", "y"], "t": [1_600_000_000_123, 1_600_000_001]}).to_parquet(path)
    got = list(read_reviews(path, "table", {"user": "u", "item": "i", "time": "t"}))
    assert [r.timestamp for r in got] == [1_600_000_000, 1_600_000_001]


def test_amazon2023_ms_timestamps_and_parent_asin(tmp_path: Path) -> None:
    rows = [
        {
            "user_id": "U",
            "parent_asin": "P1",
            "asin": "A1",
            "rating": 4.0,
            "title": "T",
            "text": "body",
            "timestamp": 1588687728923,
        },
        {"user_id": "U", "asin": "A2", "rating": 2, "title": "", "text": "x", "timestamp": 1588687729000},
    ]
    path = tmp_path / "All_Beauty.jsonl"
    path.write_text(_jsonl(rows))
    for fmt in ("auto", "amazon2023"):
        got = list(read_reviews(path, fmt))
        assert [(r.item, r.timestamp, r.rating) for r in got] == [("P1", 1588687728, 4.0), ("A2", 1588687729, 2.0)]
        assert (got[0].title, got[0].text) == ("T", "body")


def test_yelp_json_and_csv(tmp_path: Path) -> None:
    rows = [
        {
            "review_id": "r1",
            "user_id": "u",
            "business_id": "b",
            "stars": 5,
            "text": "yum",
            "date": "2016-03-09 00:00:01",
        },
        {"review_id": "r2", "user_id": "v", "business_id": "b", "stars": 1, "text": "", "date": "2016-03-09"},
    ]
    jpath = tmp_path / "review.json"
    jpath.write_text(_jsonl(rows))
    cpath = tmp_path / "yelp.csv"
    cpath.write_bytes(_csv_bytes(rows))
    for path in (jpath, cpath):
        for fmt in ("auto", "yelp"):
            got = list(read_reviews(path, fmt))
            assert [(r.user, r.item, r.timestamp, r.rating, r.text) for r in got] == [
                ("u", "b", 1457481601, 5.0, "yum"),
                ("v", "b", 1457481600, 1.0, ""),
            ]


def test_several_paths_and_mixed_formats(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text(_jsonl([AMAZON_ROWS[0]]))
    b = tmp_path / "b.csv"
    b.write_bytes(_csv_bytes([{"user": "z", "item": "q", "timestamp": "5"}]))
    assert [r.user for r in read_reviews([a, b])] == ["u1", "z"]


def test_parse_time() -> None:
    assert parse_time(1_400_000_000) == 1_400_000_000
    assert parse_time("1400000000") == 1_400_000_000
    assert parse_time(1_400_000_000_999) == 1_400_000_000  # ms
    assert parse_time("2014-05-13") == 1_399_939_200
    assert parse_time("2014-05-13 00:00:10") == 1_399_939_210
    assert parse_time("05 13, 2014") == 1_399_939_200  # Amazon reviewTime
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_parse_columns() -> None:
    assert parse_columns("user=a, item=b,time=c") == {"user": "a", "item": "b", "time": "c"}
    with pytest.raises(SymcereError, match="unknown key"):
        parse_columns("user=a,item=b,time=c,colour=d")
    with pytest.raises(SymcereError, match="missing required"):
        parse_columns("user=a,item=b")
    with pytest.raises(SymcereError, match="key=column"):
        parse_columns("user")


# ---------------------------------------------------------------------------------------------- errors


def test_malformed_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(_jsonl(AMAZON_ROWS) + "{not json at all\n")
    with pytest.raises(SymcereError, match=r"bad\.json, line 3: not a JSON object"):
        list(read_reviews(path))


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "miss.json.gz"
    rows = [AMAZON_ROWS[0], {k: v for k, v in AMAZON_ROWS[1].items() if k != "reviewerID"}]
    with gzip.open(path, "wt") as fh:
        fh.write(_jsonl(rows))
    with pytest.raises(SymcereError, match=r"miss\.json\.gz, line 2: field 'reviewerID' is missing"):
        list(read_reviews(path, "amazon2014"))


def test_malformed_rating_and_time(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(_jsonl([dict(AMAZON_ROWS[0], overall="five")]))
    with pytest.raises(SymcereError, match=r"line 1: field 'overall' is malformed"):
        list(read_reviews(path))
    path.write_text(_jsonl([dict(AMAZON_ROWS[0], unixReviewTime="someday")]))
    with pytest.raises(SymcereError, match=r"x\.json, line 1: field 'unixReviewTime' is malformed"):
        list(read_reviews(path))


def test_csv_error_line_is_record_start_line(tmp_path: Path) -> None:
    rows = [dict(AMAZON_ROWS[0], reviewText="a\nb\nc"), dict(AMAZON_ROWS[1], reviewerID="")]
    path = tmp_path / "r.csv.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("r.csv", _csv_bytes(rows))
    # header = line 1, first record spans lines 2-4, the bad record starts on line 5
    with pytest.raises(SymcereError, match=r"r\.csv\.zip \(member r\.csv\), line 5: field 'reviewerID' is empty"):
        list(read_reviews(path))


def test_table_mapping_to_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(_csv_bytes([{"a": "1", "b": "2", "c": "3"}]))
    with pytest.raises(SymcereError, match=r"x\.csv, line 2: missing column 'zz' \(mapped to text\)"):
        list(read_reviews(path, "table", "user=a,item=b,time=c,text=zz"))


def test_undetectable_format(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(_csv_bytes([{"foo": "1", "bar": "2"}]))
    with pytest.raises(SymcereError, match=r"x\.csv, line 2: cannot detect the format.*--columns"):
        list(read_reviews(path))
    with pytest.raises(SymcereError, match="no column recognised"):
        list(read_reviews(path, "table"))


def test_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(SymcereError, match="not found"):
        list(read_reviews(tmp_path / "nope.json"))
    with pytest.raises(SymcereError, match="unknown format"):
        list(read_reviews(tmp_path / "nope.json", "csv"))
    with pytest.raises(SymcereError, match="--columns applies"):
        list(read_reviews(tmp_path / "nope.json", "yelp", "user=a,item=b,time=c"))
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SymcereError, match="not a valid zip"):
        list(read_reviews(bad))


def test_reader_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(_jsonl(AMAZON_ROWS) + "garbage\n")
    it = read_reviews(path)
    assert next(it).user == "u1"  # the bad line 3 is not read yet


# ---------------------------------------------------------------------------------------------- policy


def test_skip_mode_counts_bad_records_by_reason(tmp_path: Path) -> None:
    from symcere.data.readers import ReadReport

    path = tmp_path / "x.json"
    rows = [AMAZON_ROWS[0], dict(AMAZON_ROWS[1], overall=9), dict(AMAZON_ROWS[1], reviewerID=""), AMAZON_ROWS[1]]
    path.write_text(_jsonl(rows) + "{broken\n")
    with pytest.raises(
        SymcereError, match=r"line 2: field 'overall' is 9.*out of range; expected a rating from 1 to 5"
    ):
        list(read_reviews(path))
    report = ReadReport()
    got = list(read_reviews(path, on_bad_record="skip", report=report))
    assert [r.user for r in got] == ["u1", "u2"]
    assert report.records == 2 and report.skipped == 3
    assert report.reasons == {"rating out of range": 1, "user missing": 1, "unparsable line": 1}
    assert report.examples[0].endswith("(format amazon2014)") and "line 2" in report.examples[0]
    assert report.as_dict()["count"] == 3 and "skipped 3 bad record(s)" in report.summary()
    with pytest.raises(SymcereError, match="on_bad_record"):
        list(read_reviews(path, on_bad_record="ignore"))


def test_containers_are_recognised_by_content(tmp_path: Path) -> None:
    data = _jsonl(AMAZON_ROWS).encode()
    plain_gz = tmp_path / "plain.json.gz"
    plain_gz.write_bytes(data)
    hidden_gz = tmp_path / "hidden.json"
    hidden_gz.write_bytes(gzip.compress(data))
    hidden_zip = tmp_path / "hidden.bin"
    with zipfile.ZipFile(hidden_zip, "w") as zf:
        zf.writestr("r.json", data)
    for path in (plain_gz, hidden_gz, hidden_zip):
        assert [r.user for r in read_reviews(path)] == ["u1", "u2"], path.name


def test_units_of_known_time_fields_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(_jsonl([dict(AMAZON_ROWS[0], unixReviewTime=1_400_000_000_000)]))
    with pytest.raises(SymcereError, match="looks like milliseconds; expected unix seconds"):
        list(read_reviews(path))
    path.write_text(_jsonl([{"user_id": "U", "parent_asin": "P", "rating": 4, "timestamp": 1_588_687_728}]))
    with pytest.raises(SymcereError, match="looks like seconds; expected unix milliseconds"):
        list(read_reviews(path))


def test_printable_escapes_terminal_controls() -> None:
    from symcere.data.records import printable, shown

    assert printable("a\x1b[31mb\x07\u202ec\ud800") == "a\\x1b[31mb\\x07\\u202ec\\ud800"
    assert printable("ü日本😀") == "ü日本😀"
    assert printable("x" * 100, 10).startswith("xxxxxxxxxx... (100 characters)")
    assert shown("\n") == "'\\x0a'" and shown(3.5) == "3.5"


def test_python_literal_lines_are_never_evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "x.json"
    path.write_text("__import__('os').system('touch PWNED')\n" + _jsonl(AMAZON_ROWS))
    with pytest.raises(SymcereError, match="line 1: not a JSON object"):
        list(read_reviews(path))
    assert [r.user for r in read_reviews(path, on_bad_record="skip")] == ["u1", "u2"]
    assert not (tmp_path / "PWNED").exists()
