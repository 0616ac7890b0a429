"""RecBole atomic-file export of a dataset directory (the exact same split, original ids)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from symcere.data.dataset import Dataset
from symcere.data.preprocess import SPLITS
from symcere.errors import SymcereError
from symcere.io import write_bytes

RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def _render(ds: Dataset, split: str) -> bytes:
    rows = ds.interactions.iloc[ds._split_rows(split)]
    users = np.asarray(ds.user_ids, dtype=object)[rows["user"].to_numpy()]
    items = np.asarray(ds.item_ids, dtype=object)[rows["item"].to_numpy()]
    lines = [RECBOLE_HEADER]
    for u, i, r, t in zip(users, items, rows["rating"].tolist(), rows["timestamp"].tolist(), strict=True):
        lines.append(f"{u}\t{i}\t{'' if r != r else repr(float(r))}\t{int(t)}")  # r != r: missing rating
    return ("\n".join(lines) + "\n").encode("utf-8")


def export_recbole(
    dataset_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    name: str | None = None,
    *,
    force: bool = False,
) -> list[Path]:
    """Write ``NAME.{train,valid,test}.inter`` (tab-separated, original ids) into ``out_dir``.

    ``NAME`` defaults to the dataset name. An existing file is left alone when identical and is an error
    otherwise, unless ``force``; nothing is written until every file has been checked.
    """
    ds = Dataset.load(dataset_dir)
    name = name or ds.name
    if not name or "/" in name or os.sep in name:
        raise SymcereError(f"invalid export name {name!r}")
    for ident in (*ds.user_ids, *ds.item_ids):
        if any(c in ident for c in "\t\r\n"):
            raise SymcereError(f"id {ident!r} contains a tab or newline; it cannot be written as a RecBole token")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SymcereError(f"export target {out} exists and is not a directory")
    planned: list[tuple[Path, bytes]] = []
    for split in SPLITS:
        path = out / f"{name}.{split}.inter"
        content = _render(ds, split)
        if path.exists() and not force and path.read_bytes() != content:
            raise SymcereError(f"{path} exists with different content; pass --force to overwrite")
        planned.append((path, content))
    out.mkdir(parents=True, exist_ok=True)
    for path, content in planned:
        if path.exists() and path.read_bytes() == content:
            continue
        write_bytes(path, content)
    return [p for p, _ in planned]
