"""The Python API: train, evaluate, recommend and compare models in a few lines.

    import symcere
    data = symcere.Dataset.from_frame(frame, user="user", item="item", time="time", text="review")
    run = symcere.fit(data, "lightgcn", config={"train.lr": 5e-3})
    run.evaluate("test")                      # {'hr@10': ..., 'ndcg@10': ...}
    run.recommend(["u1", "u2"], k=10)         # DataFrame: user, item, rank, score (original ids)
    symcere.Experiment(data, ["lightgcn", "symcere"], seeds=[0, 1]).run()   # the Table-2 frame

Runs follow the protocol of the CLI (the CLI is a layer over this module): early stopping on validation, the
best validation weights restored, the test split scored once. With ``out=None`` a run's files live in a
temporary directory that is removed when training ends; the returned ``Run`` keeps the trained model.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from symcere.config import load_config
from symcere.errors import SymcereError
from symcere.evaluation.evaluator import evaluate_split, topk_items

#: which interactions ``recommend`` never returns again, by name
EXCLUDE_SPLITS = {"train": ("train",), "train+valid": ("train", "valid"), "all": ("train", "valid", "test")}
Settings = Mapping[str, Any] | Sequence[str] | None


@dataclass
class Run:
    """A trained model with its dataset and resolved configuration (``result``: the training summary)."""

    model: torch.nn.Module
    dataset: Any
    config: dict[str, Any]
    result: Any = None
    run_dir: Path | None = None

    @classmethod
    def load(cls, run_dir: str | Path, data: Any = None, *, device: str = "auto") -> Run:
        """A finished run directory (its best weights), on ``device``; ``data``: the dataset (a ``Dataset`` or a
        dataset directory) when it moved since training."""
        from symcere.training.run import load_run

        model, dataset, cfg, result = load_run(run_dir, data, device=device)
        return cls(model, dataset, cfg, result or None, Path(run_dir))

    @property
    def device(self) -> torch.device:
        return getattr(self.model, "device", torch.device("cpu"))

    def evaluate(self, split: str = "test", ks: Iterable[int] = (10, 20), progress: bool = False) -> dict[str, float]:
        """Full-ranking metrics of ``split`` (``valid`` | ``test``) at each K."""
        self.model.eval()
        with torch.no_grad():
            res = evaluate_split(
                self.model.score,
                self.dataset,
                split,
                ks=tuple(int(k) for k in ks),
                max_batch_elements=int(self.config["eval"]["max_batch_elements"]),
                device=self.device,
                progress=progress,
            )
        return res.metrics

    def user_index(self, users: Iterable[Any] | None) -> np.ndarray:
        """Internal indices of original user ids (``None``: every user); unknown ids are a ``SymcereError``."""
        if users is None:
            return np.arange(self.dataset.n_users, dtype=np.int64)
        index = self.__dict__.get("_user_pos")
        if index is None:  # built once per run: a server asks for a few users per call
            index = self.__dict__["_user_pos"] = {u: i for i, u in enumerate(self.dataset.user_ids)}
        wanted = [str(u) for u in users]
        unknown = [u for u in wanted if u not in index]
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise SymcereError(f"unknown user ids: {', '.join(map(repr, unknown[:5]))}{more}")
        return np.array([index[u] for u in wanted], dtype=np.int64)

    def recommend(self, users: Iterable[Any] | None = None, k: int = 10, exclude: str = "train+valid") -> pd.DataFrame:
        """Top-``k`` items per user (original ids) as a frame ``user, item, rank, score``, never an interaction of
        the splits named by ``exclude`` (``train`` | ``train+valid`` | ``all``). Score descending, ties by item
        index; a user with fewer than ``k`` candidates gets fewer rows."""
        if exclude not in EXCLUDE_SPLITS:
            raise SymcereError(f"exclude must be one of {', '.join(EXCLUDE_SPLITS)}, got {exclude!r}")
        if int(k) < 1:
            raise SymcereError(f"k must be >= 1, got {k}")
        idx = self.user_index(users)
        seen = sum(self.dataset.matrix(s) for s in EXCLUDE_SPLITS[exclude]).tocsr()
        if self.model.training:  # model.eval() drops the embeddings cached in eval mode: not on every call
            self.model.eval()
        with torch.no_grad():
            items, scores = topk_items(
                self.model.score,
                seen,
                torch.from_numpy(idx),
                int(k),
                max_batch_elements=int(self.config["eval"]["max_batch_elements"]),
                device=self.device,
            )
        items_np, scores_np = items.cpu().numpy(), scores.cpu().double().numpy()
        keep = np.isfinite(scores_np)
        rows, ranks = np.nonzero(keep)
        user_ids = np.asarray(self.dataset.user_ids, dtype=object)
        item_ids = np.asarray(self.dataset.item_ids, dtype=object)
        return pd.DataFrame(
            {
                "user": user_ids[idx[rows]],
                "item": item_ids[items_np[rows, ranks]],
                "rank": ranks + 1,
                "score": scores_np[rows, ranks],
            }
        )

    def serving(self, **options: Any) -> Any:
        """The run's ``symcere.serving.Service`` (built on first use; ``options``, e.g. ``ann_threshold``, rebuild
        it): what ``symcere serve`` answers, including items added by ``Service.cold_start(..., item=id)``."""
        from symcere.serving import Service

        if options or "_service" not in self.__dict__:
            self.__dict__["_service"] = Service(self, **options)
        return self.__dict__["_service"]

    def similar_items(self, item: Any, k: int = 10) -> pd.DataFrame:
        """The ``k`` items closest to ``item`` (original id) by cosine in the scoring space: ``item, rank, score``."""
        return self.serving().similar_items(item, k=k)

    def cold_start(self, reviews: Iterable[str], k: int = 10) -> pd.DataFrame:
        """The ``k`` users a new item should be shown to, ranked from its ``reviews`` through the text tower
        (SymCERE): ``user, rank, score``."""
        return pd.DataFrame(self.serving().cold_start(list(reviews), k=k)["users"], columns=["user", "rank", "score"])

    def explain(self, user: Any, item: Any, n: int = 10) -> dict[str, Any]:
        """The ``n`` review words of ``item`` whose removal most changes its text similarity to ``user`` (exact
        leave-one-word-out), and the item's anchor words (see ``symcere.serving.explain``)."""
        return self.serving().explain(user, item, n=n)

    def export_embeddings(self, out: str | Path, format: str = "parquet", force: bool = False) -> list[Path]:
        """User, item and text-tower item embeddings as Parquet tables or one safetensors file in ``out``."""
        from symcere.serving.export import export_embeddings

        return export_embeddings(self, out, format, force=force)


def _dataset(data: Any) -> Any:
    from symcere.data import Dataset

    return Dataset.load(data) if isinstance(data, str | Path) else data


def fit(
    data: Any,
    model: str = "symcere",
    *,
    preset: str | None = None,
    config: Settings = None,
    files: Iterable[str | Path] = (),
    seed: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Run:
    """Train ``model`` (a name of ``symcere.models.MODELS``) on ``data`` (a ``Dataset`` or a dataset directory).

    ``config``: settings as a mapping (nested sections or dotted keys, e.g. ``{"train.lr": 5e-3}``) or
    ``key=value`` strings, applied after the YAML ``files``; ``out``: the run directory (``None``: a temporary
    one)."""
    from symcere.training.run import train_model

    dataset = _dataset(data)
    overrides: dict[str, Any] = {}
    if config is not None:
        from symcere.config import as_layer

        overrides = as_layer(config)
    if seed is not None:
        overrides["seed"] = int(seed)
    cfg = load_config(model, preset=preset, files=files, overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="symcere-run-") if out is None else contextlib.nullcontext(out) as d:
        run_dir = Path(d) / "run" if out is None else Path(d)
        net, result = train_model(dataset, cfg, run_dir, resume=resume, progress=progress)
    net.eval()
    return Run(net, dataset, cfg, result, None if out is None else run_dir)


def load(run_dir: str | Path, data: Any = None, *, device: str = "auto") -> Run:
    """A finished run directory as a ``Run`` (see ``Run.load``)."""
    return Run.load(run_dir, data, device=device)


@dataclass
class Experiment:
    """Models compared on one dataset over seeds: the paper's Table 2.

    ``models``: names, or ``{label: {"model": name, "preset": ..., "config": {...}}}``. ``run()`` trains every
    (model, seed), reads the test metrics once per run, and returns one row per model with the mean and the
    standard deviation over seeds of each metric (``ndcg@10``, ``ndcg@10 std``, ...)."""

    data: Any
    models: Sequence[str] | Mapping[str, Mapping[str, Any]]
    seeds: Sequence[int] = (0,)
    metrics: Sequence[str] = ("hr@10", "ndcg@10", "recall@10")
    out: str | Path | None = None
    progress: bool = False
    runs: dict[tuple[str, int], Run] = field(default_factory=dict)

    def specs(self) -> dict[str, dict[str, Any]]:
        if isinstance(self.models, Mapping):
            return {label: {"model": label, **dict(spec)} for label, spec in self.models.items()}
        return {name: {"model": name} for name in self.models}

    def run(self) -> pd.DataFrame:
        dataset = _dataset(self.data)
        rows = []
        for label, spec in self.specs().items():
            unknown = set(spec) - {"model", "preset", "config"}
            if unknown:
                raise SymcereError(
                    f"Experiment model {label!r}: unknown keys {sorted(unknown)} (model, preset, config)"
                )
            per_seed = []
            for seed in self.seeds:
                out = None if self.out is None else Path(self.out) / label / f"seed{seed}"
                run = fit(
                    dataset,
                    spec["model"],
                    preset=spec.get("preset"),
                    config=spec.get("config"),
                    seed=int(seed),
                    out=out,
                    resume=out is not None and (out / "checkpoint.pt").exists(),
                    progress=self.progress,
                )
                self.runs[(label, int(seed))] = run
                per_seed.append(run.result.test)
            row: dict[str, Any] = {"model": label, "seeds": len(per_seed)}
            for metric in self.metrics:
                values = np.array([m[metric] for m in per_seed], dtype=float)
                row[metric] = float(values.mean())
                row[f"{metric} std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            rows.append(row)
        return pd.DataFrame(rows)
