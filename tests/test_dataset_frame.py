"""``Dataset.from_frame`` (the prepare protocol on a pandas frame, in memory) and ``Dataset.save``."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from symcere.data import Dataset, Review, build_dataset
from symcere.data.preprocess import DATASET_FILES
from symcere.data.synthetic import SynthConfig, generate_reviews
from symcere.errors import SymcereError

FRAME_COLUMNS = {"time": "timestamp", "rating": "rating", "text": "text", "title": "title"}


def _records() -> list[Review]:
    """Duplicates (earliest kept, ties by input order), equal timestamps, missing ratings, a user and an item
    that the 2-core removes, reverse-chronological input, titles with and without a final dot."""
    recs = [
        Review(
            f"u{u}",
            f"i{i}",
            1000 - 10 * i + (u % 3),
            None if (u + i) % 4 == 0 else float(1 + (u * i) % 5),
            f"text {u} {i} ",
            "Nice!" if i % 2 else f"t{i}",
        )
        for u in range(8)
        for i in range(7)
        if (u + 2 * i) % 5 != 0
    ]
    recs += [Review("u1", "i1", 5, 5.0, "older duplicate"), Review("u1", "i1", 5, 1.0, "tied duplicate")]
    recs += [Review("u2", "i3", 990, 3.0, "later duplicate"), Review("lonely", "rare", 7, 2.0, "gone")]
    return recs


def _frame(recs: list[Review]) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(r) for r in recs])


def _sha(path: Path) -> dict[str, str]:
    return {f: hashlib.sha256((path / f).read_bytes()).hexdigest() for f in DATASET_FILES}


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    """Every array, text and meta field equal (``path`` excepted)."""
    for attr in ("name", "n_users", "n_items", "user_ids", "item_ids", "item_texts", "train_reviews", "meta"):
        assert getattr(a, attr) == getattr(b, attr), attr
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.users, b.users)
    pd.testing.assert_frame_equal(a.items, b.items)
    for split in ("train", "valid", "test"):
        for x, y in zip(a.split_arrays(split), b.split_arrays(split), strict=True):
            assert x.dtype == y.dtype == np.int64 and np.array_equal(x, y)
        assert (a.matrix(split) != b.matrix(split)).nnz == 0
    assert np.array_equal(a.train_degree_items(), b.train_degree_items())
    assert np.array_equal(a.train_degree_users(), b.train_degree_users())


@pytest.mark.parametrize("kwargs", [{"k_core": 2}, {"k_core": 0, "ratios": (0.6, 0.2, 0.2), "text_budget": 30}])
def test_from_frame_equals_build_and_load(tmp_path: Path, kwargs: dict) -> None:
    recs = _records()
    ds = Dataset.from_frame(_frame(recs), user="user", item="item", name="same", **FRAME_COLUMNS, **kwargs)
    disk = Dataset.load(build_dataset(recs, tmp_path / "d", name="same", **kwargs))
    assert ds.path is None and disk.path == tmp_path / "d"
    assert_same_dataset(ds, disk)
    assert ds.meta["stats"]["duplicates_removed"] == 3 and ds.meta["content_hash"]
    if kwargs["k_core"]:
        assert "lonely" not in ds.user_ids and ds.meta["stats"]["removed_by_kcore"] > 0
    assert "path=None" in repr(ds)


def test_from_frame_equals_build_on_a_generated_corpus(tmp_path: Path) -> None:
    recs, truth = generate_reviews(SynthConfig.tiny())
    extra = {"synthetic": truth}
    ds = Dataset.from_frame(_frame(recs), name="synth", extra_meta=extra, **FRAME_COLUMNS)
    out = build_dataset(recs, tmp_path / "d", name="synth", extra_meta=extra)
    assert_same_dataset(ds, Dataset.load(out))
    # the in-memory tables are the written ones: saving gives byte-identical files
    saved = ds.save(tmp_path / "saved")
    assert _sha(saved) == _sha(out)


def test_save_round_trip_and_overwrite_protection(tmp_path: Path) -> None:
    ds = Dataset.from_frame(_frame(_records()), k_core=2, **FRAME_COLUMNS)
    out = ds.save(tmp_path / "ds")
    assert out == (tmp_path / "ds").absolute() and sorted(p.name for p in out.iterdir()) == sorted(DATASET_FILES)
    back = Dataset.load(out)
    assert back.path == out and back.name == "frame"
    assert_same_dataset(ds, back)
    assert _sha(back.save(tmp_path / "again")) == _sha(out)  # a loaded dataset saves to the same bytes

    with pytest.raises(SymcereError, match="already exists"):
        ds.save(out)
    small = Dataset.from_frame(_frame(_records()[:20]), k_core=0, name="small", **FRAME_COLUMNS)
    small.save(out, overwrite=True)
    assert Dataset.load(out).name == "small"

    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    for ow in (False, True):
        with pytest.raises(SymcereError, match="not a dataset"):
            ds.save(other, overwrite=ow)
    assert (other / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "ds", "other"]  # no temp dirs left

    ds.interactions.loc[0, "review"] = "edited"
    with pytest.raises(SymcereError, match="content_hash"):
        ds.save(tmp_path / "edited")
    assert not (tmp_path / "edited").exists()


def test_defaults_optional_columns_and_hashable_ids() -> None:
    df = pd.DataFrame({"user": [1, 1, 2, 2, 3.0], "item": [10, ("t", 1), 10, 11, 10], "time": [5, 3, 4, 2, 1]})
    original = df.copy()
    ds = Dataset.from_frame(df, k_core=0)
    pd.testing.assert_frame_equal(df, original)  # the input is not modified
    assert ds.user_ids == ["1", "2", "3"]  # the float 3.0 is stored like prepare stores it: "3"
    assert ds.item_ids == ["('t', 1)", "10", "11"]
    assert ds.interactions["rating"].isna().all() and set(ds.interactions["review"]) == {""}
    assert ds.item_texts == ["", "", ""] and ds.meta["stats"]["mean_rating"] is None
    assert ds.meta["params"]["text_budget"] == 4000 and ds.name == "frame"


def test_datetime_times_are_unix_seconds() -> None:
    secs = [1_600_000_000, 1_600_000_100, 1_500_000_000, 1_700_000_050]
    base = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": ["x", "y", "x", "y"], "time": secs})
    ref = Dataset.from_frame(base, k_core=0)
    naive = pd.to_datetime(secs, unit="s")
    variants = {
        "naive": naive,
        "aware": naive.tz_localize("UTC").tz_convert("Europe/Berlin"),
        "objects": pd.Series([datetime.fromtimestamp(s, UTC) for s in secs], dtype=object),
        "subsecond floats": [s + 0.75 for s in secs],
        "subsecond datetimes": naive + pd.Timedelta(milliseconds=999),
    }
    for label, times in variants.items():
        ds = Dataset.from_frame(base.assign(time=times), k_core=0)
        assert ds.interactions["timestamp"].tolist() == ref.interactions["timestamp"].tolist(), label
        assert ds.meta == ref.meta, label
    before_epoch = Dataset.from_frame(base.assign(time=pd.to_datetime([-1.5, 0, 1, 2], unit="s")), k_core=0)
    assert sorted(before_epoch.interactions["timestamp"]) == [-2, 0, 1, 2]


def _bad(df: pd.DataFrame, match: str, **kwargs) -> None:
    with pytest.raises(SymcereError, match=match):
        Dataset.from_frame(df, k_core=0, **kwargs)


def test_bad_input_is_a_clear_error() -> None:
    ok = pd.DataFrame({"user": ["a", "b", "c"], "item": ["x", "y", "z"], "time": [1, 2, 3], "stars": [1.0, 2, 3]})
    _bad(ok, r"missing column 'uid' \(the user column\); available: \['user', 'item', 'time', 'stars'\]", user="uid")
    _bad(ok, r"missing column 'txt' \(the text column\)", text="txt")
    _bad(ok, "the time column is required", time=None)
    _bad(ok.assign(time=[1.0, np.nan, 3.0]), r"row 1: time column 'time' is missing \(nan\)")
    _bad(ok.assign(time=[1, 2, "soon"]), r"row 2: time column 'time' is not a number \(unix seconds\) or a datetime")
    _bad(ok.assign(time=[True, False, True]), r"row 0: time column 'time' is not a number")
    _bad(ok.assign(time=[1, 2, np.inf]), r"row 2: time column 'time' is not a valid time: inf")
    _bad(ok.assign(time=pd.to_datetime([1, None, 3], unit="s")), "row 1: time column 'time' is missing")
    _bad(ok.assign(user=["a", "", "c"]), r"row 1: user column 'user' is empty: ''")
    _bad(ok.assign(user=["a", "  ", "c"]), "row 1: user column 'user' is empty")
    _bad(ok.assign(item=["x", None, "z"]), r"row 1: item column 'item' is missing")
    _bad(ok.assign(item=pd.Series(["x", None, "z"], dtype=object)), r"row 1: item column 'item' is missing \(None\)")
    _bad(ok.assign(item=["x", "y", ["z"]]), r"row 2: item column 'item' is not hashable: \['z'\]")
    _bad(ok.assign(stars=[1, "five", 3]), r"row 1: rating column 'stars' is not a number: 'five'", rating="stars")
    _bad(ok.assign(stars=[1, 2, np.inf]), "row 2: rating column 'stars' is not finite", rating="stars")
    _bad(ok.set_index(pd.Index(["p", "q", "r"])).assign(time=[1, None, 3]), r"row 1 \(index 'q'\): time column")
    _bad(pd.concat([ok, ok[["user"]]], axis=1), "column 'user' .* appears 2 times")
    _bad(ok.iloc[:0], "no records read")
    _bad(ok, "ratios", ratios=(1, 1))
    _bad(ok, "reserved", extra_meta={"stats": {}})
    _bad(ok, "not JSON-serialisable", extra_meta={"x": object()})
    with pytest.raises(SymcereError, match="k-core filtering left no interactions"):
        Dataset.from_frame(ok)
    with pytest.raises(SymcereError, match="expected a pandas DataFrame, got list"):
        Dataset.from_frame([{"user": "a", "item": "x", "time": 1}])  # type: ignore[arg-type]


def test_missing_ratings_and_texts_are_allowed() -> None:
    df = pd.DataFrame(
        {"u": ["a", "a", "b"], "i": ["x", "y", "x"], "t": [1, 2, 3], "r": [4.0, None, 2.0], "body": ["ok", None, 7]}
    )
    ds = Dataset.from_frame(df, user="u", item="i", time="t", rating="r", text="body", k_core=0, ratios=(1, 0, 0))
    assert ds.interactions["review"].tolist() == ["ok", "", "7"]
    assert ds.interactions["rating"].isna().tolist() == [False, True, False]
    assert ds.meta["stats"]["mean_rating"] == 3.0 and ds.meta["stats"]["empty_texts"] == 1
