"""RecBole 1.2.1's side of bench_recbole.py; runs INSIDE the RecBole virtual environment (not symcere's).

    RECBOLE_VENV/bin/python benchmarks/recbole_side.py ATOMIC_DIR NAME --epochs 5 [--device cpu] [--threads N]

Applies the runtime shims RecBole 1.2.1 needs with numpy 2, scipy >= 1.13 and torch >= 2.6, trains LightGCN on
the exported split (NAME.{train,valid,test}.inter) with the benchmark's settings and prints one JSON line:
per-epoch training and full-sort validation seconds, the validation metrics and the threads used.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def apply_shims() -> None:
    """numpy 2 removed the aliases RecBole's Config assigns; scipy 1.13 removed ``dok_matrix._update`` (its
    LightGCN adjacency); torch 2.6 loads with ``weights_only=True`` (RecBole's checkpoints hold more)."""
    import numpy as np

    for name, value in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if not hasattr(np, name):
            setattr(np, name, value)
    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):

        def _update(self, data):  # type: ignore[no-untyped-def]
            self._dict.update(data)

        sp.dok_matrix._update = _update
    import torch

    original = torch.load

    def load(*args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    torch.load = load


def protocol_config(atomic_dir: str, name: str, checkpoint_dir: str, device: str = "cpu") -> dict:
    """RecBole settings of symcere's protocol, shared by every RecBole run of the benchmarks: the exported
    split as is (NAME.{train,valid,test}.inter), full-sort evaluation at 10 and 20 with NDCG@10 selecting,
    seed 0, quiet, nothing written beside the checkpoints."""
    return {
        "data_path": atomic_dir,
        "dataset": name,
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id"]},
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "group_by": "user", "mode": "full"},
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "device": device,
        "use_gpu": device != "cpu",
        "gpu_id": device.partition(":")[2] or "0" if device != "cpu" else "",
        "seed": 0,
        "reproducibility": True,
        "show_progress": False,
        "checkpoint_dir": checkpoint_dir,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "worker": 0,
        "state": "ERROR",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("atomic_dir")
    ap.add_argument("name")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    apply_shims()
    import resource

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    with tempfile.TemporaryDirectory() as ckpt:
        cfg = {
            **protocol_config(args.atomic_dir, args.name, ckpt, args.device),
            "embedding_size": 64,
            "n_layers": 2,
            "reg_weight": 1e-4,
            "train_batch_size": 2048,
            "learning_rate": 1e-3,
            "epochs": args.epochs,
            "eval_step": 1,
            "stopping_step": 10**6,
            "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": 1.0, "dynamic": False,
                                      "candidate_num": 0},
            "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
            "eval_batch_size": 16_777_216,  # the same score-block budget as symcere's eval.max_batch_elements
        }
        config = Config(model="LightGCN", dataset=args.name, config_dict=cfg)
        init_seed(config["seed"], config["reproducibility"])
        dataset = create_dataset(config)
        train_data, valid_data, _ = data_preparation(config, dataset)
        model = LightGCN(config, train_data.dataset).to(config["device"])
        trainer = Trainer(config, model)
        setup = time.perf_counter() - t_start
        epochs, evals, valid = [], [], {}
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            trainer._train_epoch(train_data, epoch, show_progress=False)
            epochs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _, result = trainer._valid_epoch(valid_data, show_progress=False)
            evals.append(time.perf_counter() - t0)
            valid = {k: float(v) for k, v in result.items()}
    print(json.dumps({
        "side": "recbole",
        "epoch_seconds": epochs,
        "eval_seconds": evals,
        "setup_seconds": setup,
        "valid": valid,
        "threads": torch.get_num_threads(),
        "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "n_users": int(dataset.user_num),
        "n_items": int(dataset.item_num),
    }))


if __name__ == "__main__":
    main()
