"""The DuckDB preparation path writes the bytes the pandas path writes (data/duckdb_prepare.py)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from symcere.data.preprocess import DATASET_FILES, build_dataset, resolve_engine
from symcere.data.records import Review
from symcere.errors import SymcereError

duckdb = pytest.importorskip("duckdb")

from symcere.data import duckdb_prepare  # noqa: E402  (needs duckdb)

MI = "amazon2014_musical_instruments_5/Musical_instruments_reviews.csv.zip"


def digests(d: Path) -> dict[str, str]:
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in DATASET_FILES}


def both(records, tmp_path: Path, **kw) -> tuple[Path, Path]:
    records = list(records)
    a = build_dataset(records, tmp_path / "pandas", engine="pandas", **kw)
    b = build_dataset(records, tmp_path / "duckdb", engine="duckdb", memory_limit="256MB", **kw)
    return a, b


def assert_identical(a: Path, b: Path) -> None:
    da, db = digests(a), digests(b)
    if da != db:  # say what differs before failing
        for f in ("interactions.parquet", "users.parquet", "items.parquet"):
            ta, tb = pq.read_table(a / f), pq.read_table(b / f)
            assert ta.equals(tb), f"{f}: content differs"
        assert (a / "dataset.json").read_text() == (b / "dataset.json").read_text()
    assert da == db


def tricky_reviews() -> list[Review]:
    """Duplicates with tied times, missing / NaN ratings, empty and title-only reviews, non-ASCII ids and texts
    (combining marks, emoji beyond the BMP), users and items without training interactions."""
    rng = np.random.default_rng(7)
    users = ["u10", "u9", "Zed", "alice", "émile", "ß", "😀user", "u1", "u2", "u3", "u4", "u5"]
    items = ["i1", "i10", "i2", "é-item", "👍🏽", "Item", "i3", "i4", "i5", "i6"]
    texts = ["great sound", "", "e\u0301te\u0301 fine " * 8, "👍🏽 ok", "x" * 70, "a. b. c"]
    out = []
    for k in range(400):
        u, i = users[int(rng.integers(len(users)))], items[int(rng.integers(len(items)))]
        t = 1_500_000_000 + int(rng.integers(0, 30)) * 3600  # many equal timestamps
        rating = None if k % 17 == 0 else (math.nan if k % 23 == 0 else float(rng.integers(1, 6)) + 0.5 * (k % 2))
        title = "" if k % 3 else ["Nice!", "meh", "  spaced  "][k % 9 // 3]
        out.append(Review(u, i, t, rating, texts[k % len(texts)], title))
    out.append(Review("lonely", "i1", 1_400_000_000, 5.0, "only one"))  # a single interaction: no split rows
    return out


@pytest.mark.parametrize(
    "kw",
    [
        {"k_core": 0},
        {"k_core": 3},
        {"k_core": 0, "text_budget": 0},
        {"k_core": 2, "text_budget": 40, "ratios": (0.5, 0.25, 0.25)},
        {"user_k": 4, "item_k": 0, "text_budget": 13, "ratios": (0.7, 0.3, 0.0)},
    ],
)
def test_tricky_corpus_byte_identical(tmp_path: Path, kw: dict) -> None:
    a, b = both(tricky_reviews(), tmp_path, name="tricky", **kw)
    assert_identical(a, b)


def test_builtin_generator_corpus_byte_identical(tmp_path: Path) -> None:
    from symcere.data.synthetic import SynthConfig, generate_reviews

    reviews, truth = generate_reviews(SynthConfig())
    a, b = both(reviews, tmp_path, name="synthetic", extra_meta={"synthetic": truth})
    assert_identical(a, b)


@pytest.mark.shared_data
def test_musical_instruments_byte_identical(shared_data: Path, tmp_path: Path) -> None:
    from symcere.data.readers import read_reviews

    path = shared_data / MI
    if not path.exists():
        pytest.skip(f"{path} not found")
    a, b = both(read_reviews(path), tmp_path, name="musical_instruments")
    assert_identical(a, b)


def test_same_errors_as_pandas(tmp_path: Path) -> None:
    for engine in ("pandas", "duckdb"):
        with pytest.raises(SymcereError, match="no records read"):
            build_dataset([], tmp_path / f"empty_{engine}", name="e", engine=engine)
        with pytest.raises(SymcereError, match="k-core filtering left no interactions"):
            build_dataset(tricky_reviews(), tmp_path / f"sparse_{engine}", name="s", k_core=50, engine=engine)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir()), "temporary directories left behind"
    with pytest.raises(SymcereError, match="memory-limit"):
        build_dataset(tricky_reviews(), tmp_path / "bad", name="b", engine="duckdb", memory_limit="lots")
    with pytest.raises(SymcereError, match="engine must be one of"):
        resolve_engine("spark")


def test_row_groups_streamed_like_write_table(tmp_path: Path, monkeypatch) -> None:
    """Batches of any size are re-cut into write_table's row groups (here 1,000 rows instead of 1 Mi)."""
    n = 4321
    rng = np.random.default_rng(0)
    words = np.array(["", "alpha", "béta", "👍🏽 gamma", "d" * 300], dtype=object)
    table = pa.table(
        {"a": np.arange(n), "s": pa.array(words[rng.integers(0, 5, n)].tolist(), pa.string()), "f": rng.random(n)}
    )
    pq.write_table(table, tmp_path / "whole.parquet", row_group_size=1000)
    monkeypatch.setattr(duckdb_prepare, "ROW_GROUP_ROWS", 1000)
    batches = [b for start in range(0, n, 777) for b in table.slice(start, 777).to_batches()]
    assert duckdb_prepare.write_parquet(tmp_path / "streamed.parquet", table.schema, batches) == n
    assert (tmp_path / "whole.parquet").read_bytes() == (tmp_path / "streamed.parquet").read_bytes()


def test_cli_prepare_engine(tmp_path: Path) -> None:
    from symcere.cli import main

    src = tmp_path / "reviews.jsonl"
    lines = [
        f'{{"user_id": "{r.user}", "parent_asin": "{r.item}", "timestamp": {r.timestamp * 1000}, "rating": 4.0, '
        f'"text": "{r.text}", "title": "{r.title}"}}'
        for r in tricky_reviews()
        if '"' not in r.text + r.title
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["prepare", "--input", str(src), "--k-core", "2", "--name", "cli"]
    assert main([*args, "--out", str(tmp_path / "p"), "--engine", "pandas"]) == 0
    assert main([*args, "--out", str(tmp_path / "d"), "--engine", "duckdb", "--memory-limit", "300MB"]) == 0
    assert digests(tmp_path / "p") == digests(tmp_path / "d")
    assert main([*args, "--out", str(tmp_path / "x"), "--engine", "duckdb", "--memory-limit", "much"]) == 2


def test_write_is_atomic_on_failure(tmp_path: Path, monkeypatch) -> None:
    out = build_dataset(tricky_reviews(), tmp_path / "d", name="first", k_core=0, engine="duckdb")
    calls = {"n": 0}
    real = duckdb_prepare.write_parquet

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(duckdb_prepare, "write_parquet", flaky)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(tricky_reviews(), out, name="second", k_core=0, overwrite=True, engine="duckdb")
    import json

    assert json.loads((out / "dataset.json").read_text())["name"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # neither the DuckDB work dir nor a temp dir
