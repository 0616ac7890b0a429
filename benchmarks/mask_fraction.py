"""How many in-batch negatives does SINCERE's false-negative mask remove (study hypothesis 7)?

For a prepared dataset and several batch sizes, draws random training batches of interactions (as the trainer
does: uniform over training interactions without replacement) and reports, per anchor, the share of the B-1
in-batch candidates that Eq. 7 excludes (same item, or an item in the anchor user's training history), split
into "same item" and "other item the user interacted with". SINCERE and InfoNCE differ only through these
entries, so a fraction near 0 means the two losses are nearly the same. Writes ``mask_fraction.{md,csv}``.

    python benchmarks/mask_fraction.py DATASET_DIR --out benchmarks/results/mask_fraction_mi [--batches 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 2048, 4096])
    ap.add_argument("--batches", type=int, default=20, help="random batches per batch size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from symcere import losses
    from symcere.data import Dataset
    from symcere.tables import csv_table, markdown_table

    dataset = Dataset.load(args.data)
    users, items = dataset.split_arrays("train")
    history = losses.UserHistory.from_scipy(dataset.matrix("train"))
    rng = np.random.default_rng(args.seed)
    rows = []
    for b in args.batch_sizes:
        b = min(b, len(users))
        same, other = [], []
        for _ in range(args.batches):
            idx = rng.choice(len(users), size=b, replace=False)
            u, i = torch.from_numpy(users[idx]), torch.from_numpy(items[idx])
            mask = losses.false_negative_mask(u, i, history)
            same_item = (i[:, None] == i[None, :]) & ~torch.eye(b, dtype=torch.bool)
            same.append(same_item.float().sum().item() / (b * (b - 1)))
            other.append((mask & ~same_item).float().sum().item() / (b * (b - 1)))
        rows.append(
            {
                "dataset": dataset.name,
                "batch size": b,
                "masked %": 100 * (np.mean(same) + np.mean(other)),
                "same item %": 100 * np.mean(same),
                "other history item %": 100 * np.mean(other),
                "masked per anchor": (np.mean(same) + np.mean(other)) * (b - 1),
            }
        )
        print(markdown_table(rows[-1:]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mask_fraction.csv").write_text(csv_table(rows), encoding="utf-8")
    (out / "mask_fraction.md").write_text(markdown_table(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
