"""RecBole 1.2.1's baselines with their default hyper-parameters on symcere's identical split: test metrics.

    python benchmarks/recbole_baselines.py --data DATASET_DIR [--models BPR NeuMF NGCF LightGCN SGL]
        [--venv DIR] [--out benchmarks/results/recbole_baselines.md]

What a new RecBole user gets (issue 13, item 4: every symcere baseline must at least match its reference
implementation). The dataset directory is exported with ``symcere.data.export.export_recbole`` (the same
users, items and chronological split); each model trains in RecBole's own venv (``bench_recbole.py`` installs
it; ``recbole_side.apply_shims`` makes RecBole 1.2.1 run on numpy 2, scipy >= 1.13 and torch >= 2.6) with
RecBole's defaults for the model and the optimiser (learning rate 1e-3, batch 2048, up to 300 epochs, early
stopping after 10 validations without a better NDCG@10, one uniform negative); only the protocol is set:
full-sort evaluation, HR / NDCG / Recall at 10 and 20, seed 0. The best validation epoch's model is tested.
Metrics, not timings: the machine may be busy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = ("BPR", "NeuMF", "NGCF", "LightGCN", "SGL")


def child(atomic_dir: str, name: str, model_name: str) -> None:
    """Inside the RecBole venv: train ``model_name`` with RecBole's defaults, print one JSON line."""
    from recbole_side import apply_shims, protocol_config

    apply_shims()
    import importlib

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as ckpt:
        cfg = {**protocol_config(atomic_dir, name, ckpt), "metrics": ["Recall", "NDCG", "Hit"]}
        config = Config(model=model_name, dataset=name, config_dict=cfg)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, test_data = data_preparation(config, dataset)
        cls = getattr(importlib.import_module("recbole.model.general_recommender"), model_name)
        model = cls(config, train_data.dataset).to(config["device"])
        trainer = Trainer(config, model)
        epochs = []
        train_epoch = trainer._train_epoch

        def counted(*a, **kw):  # type: ignore[no-untyped-def]
            epochs.append(1)
            return train_epoch(*a, **kw)

        trainer._train_epoch = counted
        _, valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        print(json.dumps({
            "model": model_name, "valid": {k: float(v) for k, v in valid.items()},
            "test": {k: float(v) for k, v in test.items()}, "epochs": len(epochs),
            "seconds": round(time.perf_counter() - t0, 1),
            "settings": {k: config[k] for k in ("learning_rate", "train_batch_size", "epochs", "stopping_step",
                                                 "embedding_size") if k in config},
        }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a symcere dataset directory (required)")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--venv", default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "recbole_baselines.md"))
    ap.add_argument("--child", nargs=3, metavar=("ATOMIC_DIR", "NAME", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if not args.data:
        ap.error("--data is required")
    from bench_recbole import recbole_python
    from common import write_results

    from symcere.data.export import export_recbole
    from symcere.text.models import default_cache_dir

    venv = Path(args.venv or Path(default_cache_dir()) / "bench" / "recbole-1.2.1")
    py = recbole_python(venv)
    rows, raw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        name = "data"
        export_recbole(args.data, Path(tmp) / name, name)
        for model in args.models:
            print(f"RecBole {model} ...", flush=True)
            out = subprocess.run(  # in tmp: RecBole writes log/ and log_tensorboard/ into its working directory
                [str(py), str(Path(__file__).resolve()), "--child", tmp, name, model],
                capture_output=True, text=True, cwd=tmp,
            )
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode != 0 or not lines:
                raw.append({"model": model, "error": out.stderr[-2000:]})
                rows.append(f"| {model} | failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else '?'} |"
                            " | | | | |")
                continue
            res = json.loads(lines[-1])
            raw.append(res)
            t = res["test"]
            rows.append(f"| {model} | {res['valid']['ndcg@10']:.4f} | {t['ndcg@10']:.4f} | {t['hit@10']:.4f} | "
                        f"{t['recall@20']:.4f} | {res['epochs']} | {res['seconds']} |")
            print(rows[-1], flush=True)
    body = "\n".join([
        "| RecBole model | valid NDCG@10 | test NDCG@10 | test HR@10 | test Recall@20 | epochs | seconds |",
        "|---|---|---|---|---|---|---|", *rows,
        "", f"`{args.data}` exported with `symcere data export-recbole`; RecBole's default hyper-parameters, seed 0."])
    write_results(Path(args.out), "RecBole 1.2.1 baselines with their defaults on the identical split",
                  [("test metrics", body)], {"args": vars(args), "results": raw})


if __name__ == "__main__":
    main()
