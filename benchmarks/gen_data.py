"""Generated interaction datasets for the speed benchmarks (no review text): sizes that real data here lacks.

    python benchmarks/gen_data.py --users 22000 --items 12000 --interactions 140000 --out /tmp/beauty_like

Every user gets at least ``min_per_user`` interactions (activity log-normal above that), items are drawn with a
Zipf-like popularity (exponent ``--zipf``), duplicate pairs are dropped, timestamps are uniform over ten years;
the dataset is then built by ``Dataset.from_frame`` (the ``symcere prepare`` protocol: k-core, per-user
chronological 80/10/10). Seeded: the same arguments give the same dataset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def generate_frame(n_users: int, n_items: int, n_interactions: int, *, zipf: float = 0.6, min_per_user: int = 5,
                   seed: int = 0):  # type: ignore[no-untyped-def]
    """A frame of about ``n_interactions`` distinct (user, item, time) rows."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    extra = max(n_interactions - min_per_user * n_users, 0)
    weights = rng.lognormal(0.0, 1.0, n_users)
    per_user = min_per_user + rng.multinomial(extra, weights / weights.sum())
    users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    pop = (np.arange(n_items) + 10.0) ** -zipf
    pop = rng.permutation(pop / pop.sum())
    items = rng.choice(n_items, size=len(users), p=pop)
    frame = pd.DataFrame({"user": users, "item": items})
    frame = frame.drop_duplicates(["user", "item"]).reset_index(drop=True)
    frame["time"] = rng.integers(1_300_000_000, 1_615_000_000, size=len(frame))
    frame["user"] = "u" + frame["user"].astype(str)
    frame["item"] = "i" + frame["item"].astype(str)
    return frame


def build(out: str, n_users: int, n_items: int, n_interactions: int, *, k_core: int = 5, seed: int = 0,
          zipf: float = 0.6) -> Path:
    """Generate and write the dataset directory ``out`` (reused when it already holds a dataset)."""
    from symcere.data import Dataset

    path = Path(out)
    if (path / "dataset.json").is_file():
        return path
    frame = generate_frame(n_users, n_items, n_interactions, zipf=zipf, seed=seed)
    name = f"gen_{n_users}x{n_items}x{n_interactions}"
    ds = Dataset.from_frame(frame, user="user", item="item", time="time", k_core=k_core, name=name)
    return ds.save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, required=True)
    ap.add_argument("--items", type=int, required=True)
    ap.add_argument("--interactions", type=int, required=True)
    ap.add_argument("--k-core", type=int, default=5)
    ap.add_argument("--zipf", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    path = build(a.out, a.users, a.items, a.interactions, k_core=a.k_core, seed=a.seed, zipf=a.zipf)
    from symcere.data import Dataset

    print(path, Dataset.load(path).meta["stats"])


if __name__ == "__main__":
    main()
