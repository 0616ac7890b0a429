"""Preprocessing: split rounding, stable order, dedup, k-core, re-index, item texts, atomic writing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from symcere.data import Review, build_dataset
from symcere.data.preprocess import content_hash, review_text, split_counts
from symcere.errors import SymcereError


def _inter(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path / "interactions.parquet")


def _meta(path: Path) -> dict:
    return json.loads((path / "dataset.json").read_text())


def _grid(n_users: int, n_items: int, t0: int = 0) -> list[Review]:
    """Every user reviews every item; review text names user, item and time."""
    return [
        Review(f"u{u}", f"i{i}", t0 + 10 * i + u, 4.0, f"text-u{u}-i{i}", f"title{i}")
        for u in range(n_users)
        for i in range(n_items)
    ]


@pytest.mark.parametrize(
    ("n", "expected"),
    [(5, (3, 1, 1)), (10, (8, 1, 1)), (19, (17, 1, 1)), (20, (16, 2, 2)), (29, (25, 2, 2))],
)
def test_split_rounding_pins(n: int, expected: tuple[int, int, int]) -> None:
    assert split_counts(n, (0.8, 0.1, 0.1)) == expected
    assert split_counts(n, (8, 1, 1)) == expected  # ratios are normalised


def test_split_rounding_small_and_edge_cases() -> None:
    assert split_counts(1) == (1, 0, 0)
    assert split_counts(2) == (1, 0, 1)  # test raised first; train must keep more than one to give
    assert split_counts(3) == (1, 1, 1)
    assert split_counts(9) == (7, 1, 1)
    assert split_counts(30) == (24, 3, 3)
    assert split_counts(4, (0, 1, 1)) == (0, 2, 2)


def test_build_writes_contract(tmp_path: Path) -> None:
    out = build_dataset(_grid(6, 6), tmp_path / "ds", name="grid", k_core=5, extra_meta={"synthetic": {"a": 1}})
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.json",
        "interactions.parquet",
        "items.parquet",
        "users.parquet",
    ]
    inter = _inter(out)
    assert list(inter.columns) == ["user", "item", "rating", "timestamp", "split", "review", "order"]
    assert {str(d) for d in inter.dtypes[["user", "item", "timestamp", "order"]]} == {"int64"}
    assert str(inter["rating"].dtype) == "float64"
    users = pd.read_parquet(out / "users.parquet")
    items = pd.read_parquet(out / "items.parquet")
    assert list(users.columns) == ["user", "user_id"]
    assert list(items.columns) == ["item", "item_id", "text", "n_train"]
    meta = _meta(out)
    assert meta["format_version"] == 1 and meta["name"] == "grid" and meta["synthetic"] == {"a": 1}
    assert meta["params"] == {
        "name": "grid",
        "k_core": 5,
        "user_k": None,
        "item_k": None,
        "ratios": [0.8, 0.1, 0.1],
        "text_budget": 4000,
    }
    assert meta["content_hash"] == content_hash(inter)
    stats = meta["stats"]
    assert (stats["users"], stats["items"], stats["interactions"]) == (6, 6, 36)
    assert stats["splits"] == {"train": 24, "valid": 6, "test": 6}  # 6 -> 4/1/1
    assert stats["density"] == 1.0
    # every user's two latest items (i4, i5) are held out: those items have no training interaction
    assert items["n_train"].tolist() == [6, 6, 6, 6, 0, 0]
    assert items["text"].tolist()[4:] == ["", ""]
    assert stats["items_without_train"] == 2


def test_deterministic_and_input_order_matters_only_for_ties(tmp_path: Path) -> None:
    recs = _grid(6, 6)
    a = build_dataset(recs, tmp_path / "a", name="x")
    b = build_dataset(recs, tmp_path / "b", name="x")
    assert _meta(a)["content_hash"] == _meta(b)["content_hash"]
    pd.testing.assert_frame_equal(pd.read_parquet(a / "items.parquet"), pd.read_parquet(b / "items.parquet"))


def test_reindex_sorted_by_original_id(tmp_path: Path) -> None:
    recs = [Review(u, i, t) for t, (u, i) in enumerate([("b", "z"), ("a", "y"), ("c", "x"), ("a", "z")])]
    out = build_dataset(recs, tmp_path / "d", name="d", k_core=0)
    assert pd.read_parquet(out / "users.parquet")["user_id"].tolist() == ["a", "b", "c"]
    assert pd.read_parquet(out / "items.parquet")["item_id"].tolist() == ["x", "y", "z"]
    inter = _inter(out)
    assert inter[["user", "item"]].values.tolist() == [[0, 1], [0, 2], [1, 2], [2, 0]]
    assert inter["rating"].isna().all()  # no ratings in the input


def test_stable_tie_order(tmp_path: Path) -> None:
    # one user, 10 records all at the same time: input order decides -> 8/1/1 by position
    recs = [Review("u", f"i{k}", 100, text=f"r{k}") for k in (3, 1, 4, 0, 5, 9, 2, 6, 8, 7)]
    out = build_dataset(recs, tmp_path / "d", name="d", k_core=0)
    inter = _inter(out)
    items = pd.read_parquet(out / "items.parquet")["item_id"].tolist()
    by_split = {s: [items[i] for i in g["item"]] for s, g in inter.groupby("split")}
    assert by_split["valid"] == ["i8"] and by_split["test"] == ["i7"]
    assert [items[i] for i in inter["item"]] == [f"i{k}" for k in (3, 1, 4, 0, 5, 9, 2, 6, 8, 7)]
    assert inter["order"].tolist() == list(range(10))


def test_chronological_split_per_user(tmp_path: Path) -> None:
    recs = [Review("u", f"i{k}", 1000 - k) for k in range(5)]  # input order is reverse-chronological
    out = build_dataset(recs, tmp_path / "d", name="d", k_core=0)
    inter = _inter(out)
    assert inter["timestamp"].is_monotonic_increasing
    assert inter["split"].tolist() == ["train"] * 3 + ["valid", "test"]


def test_dedup_keeps_earliest_with_its_text_ties_by_input_order(tmp_path: Path) -> None:
    recs = [
        Review("u", "i", 50, 1.0, "late"),
        Review("u", "i", 10, 2.0, "early-first"),
        Review("u", "i", 10, 3.0, "early-second"),
        Review("u", "j", 20, 4.0, "other"),
    ]
    out = build_dataset(recs, tmp_path / "d", name="d", k_core=0)
    inter = _inter(out)
    assert inter[["rating", "timestamp", "review"]].values.tolist() == [[2.0, 10, "early-first"], [4.0, 20, "other"]]
    # order is the position in the input after dedup
    assert inter["order"].tolist() == [0, 1]
    assert _meta(out)["stats"]["duplicates_removed"] == 2


def _is_k_core(inter: pd.DataFrame, k: int) -> bool:
    return bool(inter.groupby("user").size().min() >= k and inter.groupby("item").size().min() >= k)


def test_kcore_iterates_to_fixed_point(tmp_path: Path) -> None:
    # a dense 3x3 block is a 3-core; a chain hanging off it must be peeled off in several rounds:
    # item c1 has 3 users but two of them (x1, x2) only survive through c1/c2, which die after x3 goes.
    recs = _grid(3, 3)
    recs += [Review("x1", "c1", 1), Review("x2", "c1", 1), Review("x3", "c1", 1)]
    recs += [Review("x1", "c2", 2), Review("x2", "c2", 2), Review("x1", "c3", 3), Review("x2", "c3", 3)]
    recs += [Review("x3", "i0", 4), Review("x3", "i1", 4)]
    out = build_dataset(recs, tmp_path / "d", name="d", k_core=3)
    inter = _inter(out)
    assert _is_k_core(inter, 3)
    meta = _meta(out)
    assert pd.read_parquet(out / "users.parquet")["user_id"].tolist() == ["u0", "u1", "u2"]
    assert meta["stats"]["interactions"] == 9 and meta["stats"]["removed_by_kcore"] == len(recs) - 9
    assert meta["stats"]["kcore_iterations"] >= 3


def test_separate_user_and_item_k(tmp_path: Path) -> None:
    recs = [Review(f"u{u}", "i0", u) for u in range(4)] + [Review("u0", "i1", 9)]
    out = build_dataset(recs, tmp_path / "d", name="d", k_core=5, user_k=1, item_k=2)
    assert _meta(out)["stats"]["items"] == 1 and _meta(out)["stats"]["users"] == 4


def test_kcore_empty_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SymcereError, match=r"k-core filtering left no interactions.*--k-core 0/2"):
        build_dataset([Review("u", "i", 1)], tmp_path / "d", name="d", k_core=5)
    assert not (tmp_path / "d").exists()
    with pytest.raises(SymcereError, match="no records"):
        build_dataset([], tmp_path / "d", name="d")


def test_item_text_uses_training_reviews_only(tmp_path: Path) -> None:
    recs = _grid(6, 6)
    out = build_dataset(recs, tmp_path / "d", name="d", k_core=0, text_budget=0)
    inter = _inter(out)
    items = pd.read_parquet(out / "items.parquet")
    held_out = inter.loc[inter["split"] != "train", "review"]
    assert len(held_out) == 12
    for review in held_out:
        assert not any(review in text for text in items["text"])
    # train reviews appear, as "title. text", in time order, joined with " \n"
    for item, group in inter[inter["split"] == "train"].sort_values("timestamp").groupby("item"):
        assert items.loc[item, "text"] == " \n".join(group["review"])
    assert "title0. text-u0-i0" in items.loc[0, "text"]


def test_text_budget_truncates(tmp_path: Path) -> None:
    out = build_dataset(_grid(6, 6), tmp_path / "d", name="d", k_core=0, text_budget=25)
    texts = pd.read_parquet(out / "items.parquet")["text"]
    assert texts.str.len().max() == 25


def test_review_text_format() -> None:
    assert review_text("Great", "works") == "Great. works"
    assert review_text("Great!", "works") == "Great! works"
    assert review_text("", "works") == "works"
    assert review_text("Title", "") == "Title"


def test_stats_empty_texts_and_users_without_train(tmp_path: Path) -> None:
    recs = [Review("a", "x", 1, text=""), Review("a", "y", 2, text="abcd"), Review("b", "x", 3, text="ab")]
    out = build_dataset(recs, tmp_path / "d", name="d", k_core=0, ratios=(0, 1, 1))
    stats = _meta(out)["stats"]
    assert stats["empty_texts"] == 1
    assert stats["mean_review_length"] == pytest.approx(2.0)
    # a: 2 records -> 0/1/1; b: 1 record -> 1/0/0 (the train part keeps a lone record)
    assert stats["users_without_train"] == {"count": 1, "ids": ["a"]}
    assert stats["records_read"] == 3


def test_overwrite_protection(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    for ow in (False, True):
        with pytest.raises(SymcereError, match="not a dataset"):
            build_dataset(_grid(6, 6), other, name="x", overwrite=ow)
    assert (other / "keep.txt").read_text() == "precious"

    empty = tmp_path / "empty"
    empty.mkdir()
    build_dataset(_grid(6, 6), empty, name="x")  # an empty directory is fine
    with pytest.raises(SymcereError, match="already exists"):
        build_dataset(_grid(6, 6), empty, name="x")
    build_dataset(_grid(7, 6), empty, name="y", overwrite=True)
    assert _meta(empty)["name"] == "y" and _meta(empty)["stats"]["users"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "other"]  # no temp dirs left


def test_write_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = build_dataset(_grid(6, 6), tmp_path / "d", name="first")
    import symcere.data.preprocess as pre

    calls = {"n": 0}
    real = pre.pq.write_table

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(pre.pq, "write_table", flaky)
    with pytest.raises(OSError, match="disk full"):  # the pandas path's writer (duckdb: test_duckdb_prepare.py)
        build_dataset(_grid(7, 6), out, name="second", overwrite=True, engine="pandas")
    assert _meta(out)["name"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SymcereError, match="ratios"):
        build_dataset(_grid(2, 2), tmp_path / "d", name="d", ratios=(1, 1))
    with pytest.raises(SymcereError, match="reserved"):
        build_dataset(_grid(2, 2), tmp_path / "d", name="d", extra_meta={"stats": 1})
    (tmp_path / "f").write_text("x")
    with pytest.raises(SymcereError, match="not a directory"):
        build_dataset(_grid(2, 2), tmp_path / "f", name="d")


def test_dataset_json_written_through_symcere_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import symcere.data.preprocess as pre

    out = build_dataset(_grid(6, 6), tmp_path / "d", name="first")
    assert (out / "dataset.json").read_text(encoding="utf-8") == pre.meta_json(_meta(out))
    # same permission bits as the parquet files (symcere.io's temporary file is created 0600)
    assert len({p.stat().st_mode & 0o777 for p in out.iterdir()}) == 1
    written: list[str] = []

    def failing(path, text):
        written.append(Path(path).name)
        raise OSError("disk full")

    monkeypatch.setattr(pre, "write_text", failing)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(_grid(7, 6), out, name="second", overwrite=True)
    assert written == ["dataset.json"]
    assert _meta(out)["name"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
