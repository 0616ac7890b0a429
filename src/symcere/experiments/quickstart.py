"""``symcere quickstart``: the built-in dataset, LightGCN vs SymCERE, one results table, in minutes on a CPU."""

from __future__ import annotations

import json
import time
from pathlib import Path

from symcere.config import load_config
from symcere.io import write_text
from symcere.tables import markdown_table

#: The quickstart's settings: budgets in epochs (results do not depend on the machine's speed), early stopping
#: on validation as everywhere; bf16 text encoding (frozen MiniLM, checked against fp32 in the tests).
QUICK_OVERRIDES = {
    "lightgcn": ["train.lr=0.005", "train.max_epochs=300"],
    "mf": ["train.lr=0.005", "train.max_epochs=300"],
    "symcere": ["train.max_epochs=300", "text.bf16=true"],
}


def run_quickstart(workdir: Path, models: list[str], progress: bool = True) -> int:
    from symcere.data import Dataset
    from symcere.data.synthetic import make_synthetic_dataset
    from symcere.training.run import train

    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    if not (data_dir / "dataset.json").exists():
        print(f"making the built-in dataset in {data_dir} ...")
        make_synthetic_dataset(data_dir)
    dataset = Dataset.load(data_dir)
    stats = dataset.meta["stats"]
    print(f"dataset: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions")
    rows = []
    for name in models:
        run_dir = workdir / "runs" / name
        metrics_file = run_dir / "metrics.json"
        if metrics_file.exists():  # finished earlier: never retrain over a run
            result = json.loads(metrics_file.read_text())
            print(f"{name}: reusing the finished run in {run_dir}")
        else:
            cfg = load_config(name, overrides=QUICK_OVERRIDES.get(name, []))
            t0 = time.time()
            res = train(dataset, cfg, run_dir, resume=(run_dir / "checkpoint.pt").exists(), progress=progress)
            result = {**res.__dict__, "wall_seconds": round(time.time() - t0, 1)}
        row = {"model": name}
        for split in ("valid", "test"):
            for key in ("hr@10", "ndcg@10"):
                row[f"{split} {key}"] = result.get(split, {}).get(key)
        row["epochs"] = result.get("epochs")
        row["s/epoch"] = result.get("seconds_per_epoch")
        rows.append(row)
    table = markdown_table(rows)
    write_text(workdir / "results.md", table + "\n")
    print()
    print(table)
    print(f"\nruns in {workdir / 'runs'}; table in {workdir / 'results.md'}")
    return 0
