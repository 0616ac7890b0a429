"""Integration tests on the real review files in ``../shared/data`` (skipped when the folder is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symcere.cli import main
from symcere.data import Dataset, build_dataset, read_reviews
from symcere.errors import SymcereError

pytestmark = pytest.mark.shared_data

MI = "amazon2014_musical_instruments_5/Musical_instruments_reviews.csv.zip"
BEAUTY = "amazon2018_all_beauty_5/All_Beauty_5.json.gz"
FASHION = "amazon2018_amazon_fashion_5/AMAZON_FASHION_5.json.gz"
YELP = "yelp_kaggle_10k/yelp.csv.zip"


def _file(shared_data: Path, rel: str) -> Path:
    path = shared_data / rel
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


def _stats(out: Path) -> dict:
    return json.loads((out / "dataset.json").read_text())["stats"]


def test_musical_instruments_5core(shared_data: Path, tmp_path: Path) -> None:
    out = build_dataset(read_reviews(_file(shared_data, MI)), tmp_path / "mi", name="mi", k_core=5)
    s = _stats(out)
    assert (s["records_read"], s["duplicates_removed"], s["removed_by_kcore"]) == (10_261, 0, 0)
    assert (s["users"], s["items"], s["interactions"]) == (1_429, 900, 10_261)
    assert s["splits"] == {"train": 7_329, "valid": 1_466, "test": 1_466}
    assert s["empty_texts"] == 7 and round(s["mean_review_length"]) == 486
    assert s["users_without_train"]["count"] == 0
    ds = Dataset.load(out)
    assert ds.matrix("train").nnz == 7_329
    # the table path maps the Amazon columns by itself and gives the same data
    assert list(read_reviews(_file(shared_data, MI), "table")) == list(read_reviews(_file(shared_data, MI)))


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        # records read, duplicates removed, users, items, interactions, splits, empty texts
        (BEAUTY, (5_269, 1_177, 137, 24, 686, (412, 137, 137), 0)),
        (FASHION, (3_176, 134, 374, 8, 2_962, (2_214, 374, 374), 16)),
    ],
)
def test_amazon2018_dedup_then_5core(shared_data: Path, tmp_path: Path, rel: str, expected: tuple) -> None:
    out = build_dataset(read_reviews(_file(shared_data, rel), "amazon2018"), tmp_path / "d", name="d")
    s = _stats(out)
    got = (
        s["records_read"],
        s["duplicates_removed"],
        s["users"],
        s["items"],
        s["interactions"],
        tuple(s["splits"].values()),
        s["empty_texts"],
    )
    assert got == expected


def test_yelp_5core_is_empty_but_k0_and_k2_work(shared_data: Path, tmp_path: Path) -> None:
    path = _file(shared_data, YELP)
    with pytest.raises(SymcereError, match=r"k-core filtering left no interactions.*try --k-core 0/2"):
        build_dataset(read_reviews(path), tmp_path / "y5", name="y", k_core=5)
    assert not (tmp_path / "y5").exists()
    s0 = _stats(build_dataset(read_reviews(path, "yelp"), tmp_path / "y0", name="y", k_core=0))
    assert (s0["users"], s0["items"], s0["interactions"], s0["empty_texts"]) == (6_403, 4_174, 10_000, 0)
    assert main(["prepare", "--input", str(path), "--out", str(tmp_path / "y2"), "--k-core", "2"]) == 0
    s2 = _stats(tmp_path / "y2")
    assert (s2["users"], s2["items"], s2["interactions"]) == (908, 839, 2_716)


def test_musical_instruments_item_texts_split_back_into_reviews(shared_data: Path, tmp_path: Path) -> None:
    """``text.item_pooling=review_mean`` splits item texts at the review separator: on real reviews every
    item text whose reviews fit the text budget splits into exactly its training reviews."""
    from symcere.text import split_reviews

    ds = Dataset.load(build_dataset(read_reviews(_file(shared_data, MI)), tmp_path / "mi", name="mi", k_core=5))
    degree = ds.train_degree_items()
    budget = ds.meta.get("text_budget", 4000)
    users, items = ds.split_arrays("train")
    empty = {int(i) for i, r in zip(items, ds.train_reviews, strict=True) if not r.strip()}
    checked = 0
    for i, text in enumerate(ds.item_texts):
        if len(text) < budget - 100 and i not in empty and degree[i] > 0:
            assert len(split_reviews(text)) == degree[i], ds.item_ids[i]
            checked += 1
    assert checked > 300
