"""Dataset loading, RecBole export round trip, and the data CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from symcere.cli import main
from symcere.data import Dataset, Review, build_dataset
from symcere.data.export import RECBOLE_HEADER, export_recbole
from symcere.errors import SymcereError


@pytest.fixture()
def ds_dir(tmp_path: Path) -> Path:
    recs = [
        Review(f"user{u}", f"item{i}", 1000 * i + u, float(1 + (u + i) % 5), f"text {u} {i}", f"t{i}")
        for u in range(7)
        for i in range(6)
        if (u + i) % 7 != 0
    ]
    return build_dataset(recs, tmp_path / "ds", name="tiny", k_core=2)


def test_load_attributes(ds_dir: Path) -> None:
    ds = Dataset.load(ds_dir)
    assert (ds.name, ds.path) == ("tiny", ds_dir)
    assert ds.n_users == len(ds.user_ids) == 7 and ds.n_items == len(ds.item_ids) == 6
    assert ds.user_ids == sorted(ds.user_ids) and all(isinstance(x, str) for x in ds.user_ids)
    assert len(ds.item_texts) == ds.n_items
    assert ds.meta["format_version"] == 1 and ds.meta["stats"]["users"] == 7
    total = 0
    for split in ("train", "valid", "test"):
        users, items = ds.split_arrays(split)
        assert users.dtype == np.int64 and items.dtype == np.int64 and len(users) == len(items)
        m = ds.matrix(split)
        assert isinstance(m, sp.csr_matrix) and m.shape == (7, 6) and m.dtype == np.float32
        assert m.nnz == len(users) and set(m.data.tolist()) <= {1.0}
        assert ds.matrix(split) is m  # cached
        total += m.nnz
    assert total == ds.meta["stats"]["interactions"]
    assert len(ds.train_reviews) == len(ds.split_arrays("train")[0])
    items_tab = pd.read_parquet(ds_dir / "items.parquet")
    assert ds.train_degree_items().tolist() == items_tab["n_train"].tolist()
    assert ds.train_degree_users().sum() == ds.meta["stats"]["splits"]["train"]
    with pytest.raises(SymcereError, match="unknown split"):
        ds.split_arrays("dev")


def test_texts_are_read_on_first_use(ds_dir: Path) -> None:
    """An ID-only model never holds the texts: load() leaves the review and item-text columns on disk; the
    first access reads them, and the tables then equal the files exactly (columns, order, values)."""
    ds = Dataset.load(ds_dir)
    assert "review" not in ds._interactions.columns and "text" not in ds._items.columns
    users, items = ds.split_arrays("train")  # the ID path does not read texts
    assert ds.matrix("train").nnz == len(users) and "review" not in ds._interactions.columns
    pd.testing.assert_frame_equal(ds.interactions, pd.read_parquet(ds_dir / "interactions.parquet"))
    on_disk = pd.read_parquet(ds_dir / "items.parquet").sort_values("item").reset_index(drop=True)
    pd.testing.assert_frame_equal(ds.items, on_disk)
    assert ds.item_texts == on_disk["text"].tolist()
    train = pd.read_parquet(ds_dir / "interactions.parquet").query("split == 'train'")
    assert ds.train_reviews == train["review"].tolist()
    later = Dataset.load(ds_dir)  # a changed file is a clear error, not misaligned texts
    pd.read_parquet(ds_dir / "items.parquet").iloc[:-1].to_parquet(ds_dir / "items.parquet")
    with pytest.raises(SymcereError, match="items.parquet: changed since the dataset was loaded"):
        _ = later.item_texts


def test_load_errors(tmp_path: Path, ds_dir: Path) -> None:
    with pytest.raises(SymcereError, match="not found"):
        Dataset.load(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(SymcereError, match="not a symcere dataset directory"):
        Dataset.load(tmp_path / "plain")
    meta = json.loads((ds_dir / "dataset.json").read_text())
    (ds_dir / "dataset.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(SymcereError, match="format_version 99"):
        Dataset.load(ds_dir)
    (ds_dir / "dataset.json").write_text(json.dumps(meta))
    (ds_dir / "items.parquet").unlink()
    with pytest.raises(SymcereError, match="missing.*items.parquet"):
        Dataset.load(ds_dir)


def test_export_round_trip(ds_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rb"
    paths = export_recbole(ds_dir, out)
    assert [p.name for p in paths] == ["tiny.train.inter", "tiny.valid.inter", "tiny.test.inter"]
    ds = Dataset.load(ds_dir)
    inter = pd.read_parquet(ds_dir / "interactions.parquet")
    for split, path in zip(("train", "valid", "test"), paths, strict=True):
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        assert "\t".join(rows[0]) == RECBOLE_HEADER
        part = inter[inter["split"] == split]
        expected = [
            [ds.user_ids[u], ds.item_ids[i], float(r), int(t)]
            for u, i, r, t in part[["user", "item", "rating", "timestamp"]].itertuples(index=False)
        ]
        assert [[u, i, float(r), int(t)] for u, i, r, t in rows[1:]] == expected
    # identical re-export is fine; differing content is refused unless forced
    assert export_recbole(ds_dir, out) == paths
    paths[1].write_text("changed\n")
    with pytest.raises(SymcereError, match="exists with different content"):
        export_recbole(ds_dir, out)
    assert paths[1].read_text() == "changed\n"
    export_recbole(ds_dir, out, force=True)
    assert paths[1].read_text().startswith(RECBOLE_HEADER)
    assert export_recbole(ds_dir, out, "other")[0].name == "other.train.inter"


def test_cli_prepare_stats_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    with src.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "iid", "ts", "stars", "body"])
        for u in range(5):
            for i in range(5):
                w.writerow([f"u{u}", f"i{i}", 100 * i + u, 3, f"review {u}\n{i}"])
    out = tmp_path / "ds"
    argv = [
        "prepare",
        "--input",
        str(src),
        "--format",
        "table",
        "--columns",
        "user=uid,item=iid,time=ts,rating=stars,text=body",
        "--out",
        str(out),
        "--k-core",
        "2",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| interactions | 25 |" in printed and "| train / valid / test | 15 / 5 / 5 |" in printed
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["name"] == "ds" and meta["params"]["k_core"] == 2
    assert meta["source"] == {
        "inputs": ["in.csv"],
        "format": "table",
        "columns": {"user": "uid", "item": "iid", "time": "ts", "rating": "stars", "text": "body"},
        "on_bad_record": "error",  # the policy it ran with (--on-bad-record)
    }
    assert main(argv) == 2  # exists, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--name", "renamed"]) == 0
    capsys.readouterr()

    assert main(["data", "stats", str(out)]) == 0
    assert "| users | 5 |" in capsys.readouterr().out
    assert main(["data", "stats", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 25
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "not a symcere dataset" in capsys.readouterr().err

    assert main(["data", "export-recbole", str(out), str(tmp_path / "rb")]) == 0
    assert (tmp_path / "rb" / "renamed.test.inter").is_file()


def test_cli_bad_record_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "x.json"
    src.write_text('{"reviewerID": "a", "asin": "b", "overall": 5, "unixReviewTime": 1}\n{"asin": "b"}\n')
    assert main(["prepare", "--input", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "x.json, line 2: field 'reviewerID' is missing" in err
    assert not (tmp_path / "o").exists()


def test_export_writes_through_symcere_io(ds_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import symcere.io

    out = tmp_path / "rb"
    calls = {"n": 0}
    real_fsync = symcere.io.os.fsync

    def flaky_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real_fsync(fd)

    monkeypatch.setattr(symcere.io.os, "fsync", flaky_fsync)
    with pytest.raises(OSError, match="disk full"):
        export_recbole(ds_dir, out)
    assert sorted(p.name for p in out.iterdir()) == ["tiny.train.inter"]  # no torn file, no temp file left
    monkeypatch.undo()
    assert [p.name for p in export_recbole(ds_dir, out)] == ["tiny.train.inter", "tiny.valid.inter", "tiny.test.inter"]
    assert sorted(p.name for p in out.iterdir()) == ["tiny.test.inter", "tiny.train.inter", "tiny.valid.inter"]
