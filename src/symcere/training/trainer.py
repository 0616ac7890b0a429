"""One trainer for every model: shuffled epochs, validation-based early stopping, checkpoints, resume.

Early stopping is counted in optimizer STEPS, not epochs, so it behaves the same on small and large data:
at batch 2048 an epoch of Musical Instruments is 4 steps, and an epoch-counted patience of 10 would stop on
noise. Validation runs at the end of the first epoch after at least ``train.eval_every_steps`` steps since
the last validation; the run stops when ``train.patience_steps`` steps passed without a better validation
``eval.metric`` (and at least ``train.min_steps`` were taken), or at ``train.max_epochs`` /
``train.max_minutes``. The best weights are then restored and the test split is scored exactly once.
A run that stops early while its ranking loss is still within ``PLATEAU`` of its first epoch's value (the
best validation came from the other terms before the ranking term started to learn) gets a ``warning`` in
``metrics.json``: more ``train.min_steps`` would let it leave that plateau.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from symcere import __version__
from symcere.config import changed_keys, config_hash, dump
from symcere.errors import SymcereError
from symcere.evaluation.evaluator import evaluate_split
from symcere.evaluation.metrics import METRICS
from symcere.io import atomic_write, write_json, write_text
from symcere.locks import locked, remove_leftovers, temp_leftovers
from symcere.training import distributed
from symcere.training.checkpoint import load_checkpoint, save_checkpoint
from symcere.training.device import to_device
from symcere.training.sampler import InteractionSampler
from symcere.training.seeding import configure_threads, cores, seed_everything, torch_threads

#: the ranking term of a loss, by the name models give it (the first present counts)
RANK_TERMS = ("rank", "bpr", "bce", "ssm", "sm")
#: relative change of the ranking loss below which an early-stopped run is flagged as stopped on a plateau
PLATEAU = 0.02


def plateau_warning(first: float | None, last: float | None, epochs: int) -> str:
    """The warning for a run stopped early after ``epochs`` epochs whose ranking loss in its last epoch
    (``last``) is still within ``PLATEAU`` of its first epoch's (``first``); ``""`` otherwise."""
    if first is None or last is None or not first > 0 or last < (1.0 - PLATEAU) * first:
        return ""
    return (
        f"stopped early with the ranking loss still at its starting value ({first:.4f} in epoch 1, {last:.4f} "
        f"in epoch {epochs}): the best validation came before the ranking term started to learn; raise "
        "train.min_steps (or train.lr)"
    )


def rank_term(losses: dict[str, float]) -> float | None:
    """The epoch's ranking-loss value (``RANK_TERMS``), or None when the model logs none."""
    return next((float(losses[k]) for k in RANK_TERMS if k in losses), None)


class Diverged(RuntimeError):
    """A loss component became NaN or infinite."""

    def __init__(self, epoch: int, step: int, component: str, value: float):
        super().__init__(f"loss component '{component}' became {value} at epoch {epoch} (step {step})")
        self.epoch, self.step, self.component, self.value = epoch, step, component, value


@dataclass
class RunResult:
    status: str  # finished | diverged | interrupted
    run_dir: str
    valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    best_step: int = 0
    epochs: int = 0
    steps: int = 0
    seconds_per_epoch: float = 0.0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    device: str = ""
    message: str = ""
    warning: str = ""  # e.g. ``plateau_warning``: the result is valid, but probably not the model's best
    world_size: int = 1  # processes of a torchrun data-parallel run (training/distributed.py)


def term_grad_norms(terms: dict[str, torch.Tensor], params: list[torch.Tensor]) -> dict[str, float]:
    """L2 norm of each loss term's gradient (every term but ``total``) on ``params``; the graph is retained
    for the step's own backward, no ``.grad`` is touched."""
    out: dict[str, float] = {}
    for name, value in terms.items():
        if name == "total" or not value.requires_grad:
            continue
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        out[name] = float(torch.stack(squares).sum().sqrt()) if squares else 0.0
    return out


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def environment(cfg: dict[str, Any], device: torch.device | str = "cpu") -> dict[str, Any]:
    import numpy
    import scipy

    return {
        "symcere": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "device": str(device),
        "cuda": torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "seed": cfg.get("seed"),
    }


class Trainer:
    """Train ``model`` on ``dataset`` with ``cfg`` into ``run_dir`` (see the module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: Any,
        cfg: dict[str, Any],
        run_dir: str | Path,
        *,
        progress: bool = True,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        test: bool = True,
    ):
        self.model, self.dataset, self.cfg = model, dataset, cfg
        self.on_epoch = on_epoch  # called after every epoch with {epoch, max_epochs, step, best}
        self.test = test  # False (tuning trials): the finished run is evaluated on validation only
        self.run_dir = Path(run_dir)
        self.progress = progress and distributed.is_main()  # under torchrun only rank 0 shows progress
        t = cfg["train"]
        self.ks = tuple(int(k) for k in cfg["eval"]["ks"])
        self.metric = str(cfg["eval"]["metric"])
        name, _, k_text = self.metric.partition("@")
        if name not in METRICS or not k_text.isdigit() or int(k_text) < 1:
            raise SymcereError(
                f"eval.metric must look like NAME@K with NAME one of {', '.join(sorted(METRICS))} "
                f"(e.g. ndcg@10), got {self.metric!r}"
            )
        k_needed = int(k_text)
        if k_needed not in self.ks:
            self.ks = tuple(sorted({*self.ks, k_needed}))
        self.max_batch_elements = int(cfg["eval"]["max_batch_elements"])
        # full-ranking evaluation is dense (a users x items score block and its top-k): every core unless
        # train.threads fixes the count (benchmarks/results/threads.md)
        self.eval_threads = None if t.get("threads") else (distributed.default_threads() or cores())
        self.device = distributed.resolve_training_device(t["device"])  # under torchrun: cuda:LOCAL_RANK
        self.model.to(self.device)
        self.sampler = InteractionSampler(
            dataset.matrix("train"), int(t["batch_size"]), model.num_negatives, shard=distributed.shard()
        )
        self.train_step = distributed.wrap(model, self.device)  # model.loss, or DDP around it under torchrun
        groups = getattr(model, "param_groups", None)
        params = groups(float(t["lr"])) if callable(groups) else model.parameters()
        self.optimizer = torch.optim.Adam(params, lr=float(t["lr"]))
        # the graph parameters: the first group (SymCERE's graph side; the only group of every other model)
        self.graph_params = [p for p in self.optimizer.param_groups[0]["params"] if p.requires_grad]
        self.grad_share = bool(t.get("grad_share")) and distributed.world_size() == 1
        if bool(t.get("grad_share")) and not self.grad_share and distributed.is_main():
            print("warning: train.grad_share is off under torchrun (one process only); no grad_norm is logged",
                  file=sys.stderr)

    # -- files ---------------------------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    #: the files of a run killed before its first checkpoint: nothing worth keeping, it starts again
    SCRATCH_FILES = frozenset({"config.yaml", "env.json", "log.jsonl", "best.pt"})

    def _is_scratch(self) -> bool:
        """True when the run dir holds only what a run writes before its first checkpoint (and is a run's)."""
        names = {p.name for p in self.run_dir.iterdir()}
        if not names:  # killed right after creating it
            return True
        if not names <= self.SCRATCH_FILES or not names & {"config.yaml", "env.json"}:
            return False
        try:
            env = json.loads((self.run_dir / "env.json").read_text(encoding="utf-8")) if "env.json" in names else {}
            cfg_file = self.run_dir / "config.yaml"
            saved = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) if "config.yaml" in names else {}
        except (OSError, ValueError, yaml.YAMLError):
            return False
        return isinstance(env, dict) and isinstance(saved, dict) and ("config_hash" in env or "model" in saved)

    def _restart_scratch(self) -> None:
        """Remove a scratch run's partial files (config.yaml and env.json are rewritten)."""
        for name in ("log.jsonl", "best.pt"):
            (self.run_dir / name).unlink(missing_ok=True)

    def _prepare_dir(self, resume: bool) -> None:
        # the run-dir lock is held (fit): temporary files of a killed writer are leftovers
        remove_leftovers(temp_leftovers(self.run_dir))
        scratch = self.run_dir.is_dir() and not self.ckpt_path.exists() and self._is_scratch()
        if scratch:  # killed after config.yaml, before its first checkpoint: start again (same config to resume)
            if resume:
                self._check_resume_config()
            self._restart_scratch()
            resume = False
        elif resume and not self.ckpt_path.exists():
            raise SymcereError(f"--resume: {self.run_dir} has no checkpoint.pt to resume from")
        if self.run_dir.exists() and not scratch and any(self.run_dir.iterdir()):
            status_file = self.run_dir / "metrics.json"
            if resume:
                if status_file.exists():
                    raise SymcereError(
                        f"--resume: {self.run_dir} holds a run that already ended "
                        f"(status '{json.loads(status_file.read_text()).get('status')}'); nothing to resume"
                    )
                self._check_resume_config()
                return
            if status_file.exists():
                raise SymcereError(
                    f"{self.run_dir} already holds a finished run; choose another --out "
                    "(symcere never overwrites a run)"
                )
            raise SymcereError(
                f"{self.run_dir} is not empty; use --resume to continue the run there, or choose another --out"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "config.yaml", dump(self.cfg))
        write_json(
            self.run_dir / "env.json",
            {
                **environment(self.cfg, self.device),
                **distributed.describe(),
                "config_hash": config_hash(self.cfg),
                "dataset": str(Path(self.dataset.path).resolve()) if getattr(self.dataset, "path", None) else "",
            },
        )

    #: settings that may change when a run is resumed (they do not change what is computed)
    RESUMABLE_CHANGES = frozenset({"train.threads", "train.max_minutes", "train.device"})

    def _check_resume_config(self) -> None:
        """Refuse to resume with another configuration than the run's (it would silently mix two runs)."""
        path = self.run_dir / "config.yaml"
        if not path.exists():
            return
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        changed = changed_keys(saved, self.cfg, ignore=self.RESUMABLE_CHANGES, source=str(path))
        if changed:
            raise SymcereError(
                f"--resume: the configuration differs from the run's config.yaml in {', '.join(changed[:5])}"
                + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
                + "; resume with the same settings (or start a new run)"
            )

    def _truncate_log(self, epoch: int) -> None:
        """On resume, drop log lines of epochs after the checkpoint (they are trained again), and a line cut
        short by a kill (unparsable)."""
        path = self.run_dir / "log.jsonl"
        if path.exists() and distributed.is_main():
            kept = []
            for ln in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(ln)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("epoch", 0) <= epoch:
                    kept.append(ln)
            write_text(path, "".join(ln + "\n" for ln in kept))

    def _log(self, record: dict[str, Any]) -> None:
        if not distributed.is_main():
            return
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    # -- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, split: str, per_user: dict[str, np.ndarray] | None = None) -> dict[str, float]:
        """Metrics of ``split``; with ``per_user`` given, also fills it with per-user arrays (``split/metric``)."""
        self.model.eval()
        with torch.no_grad(), torch_threads(self.eval_threads):
            res = evaluate_split(
                self.model.score,
                self.dataset,
                split,
                ks=self.ks,
                max_batch_elements=self.max_batch_elements,
                device=self.device,
                shard=distributed.shard() if distributed.active() else None,
            )
            res = distributed.gather_eval(res)  # every rank's users, exactly (identity in one process)
        self.model.train()
        if per_user is not None:
            per_user[f"{split}/users"] = res.users
            per_user.update({f"{split}/{k}": v for k, v in res.per_user.items()})
        return res.metrics

    # -- main loop -----------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> RunResult:
        """Train (``resume``: continue from ``checkpoint.pt``; a run killed before its first checkpoint starts
        again); the run directory is locked for the whole call (``symcere.locks``)."""
        with contextlib.ExitStack() as stack:

            def lock() -> None:
                stack.enter_context(locked(self.run_dir, "run directory"))

            distributed.on_main(lock)  # under torchrun rank 0 holds it; a busy lock stops every rank
            return self._fit(resume)

    def _fit(self, resume: bool) -> RunResult:
        t = self.cfg["train"]
        configure_threads(
            t.get("threads") or distributed.default_threads(), model=self.model, n_train=len(self.sampler.users)
        )
        distributed.on_main(lambda: self._prepare_dir(resume))  # rank 0 checks and writes; errors on every rank
        resume = distributed.agree(resume and self.ckpt_path.exists())
        rng = seed_everything(int(self.cfg["seed"]))
        state = {
            "epoch": 0,
            "step": 0,
            "last_eval_step": -(10**9),
            "best": -math.inf,
            "best_step": 0,
            "best_epoch": 0,
            "train_seconds": 0.0,
            "eval_seconds": 0.0,
            "best_valid": {},
        }
        stopped = False
        if resume:
            ck = distributed.on_main(self._load_resume_checkpoint)  # rank 0's file, sent to every rank
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            state.update(ck["state"])
            rng.bit_generator.state = json.loads(ck["numpy_rng"])
            torch.set_rng_state(ck["torch_rng"])
            if self.device.type == "cuda" and "cuda_rng" in ck:
                torch.cuda.set_rng_state(ck["cuda_rng"], self.device)
            self._truncate_log(state["epoch"])
            # killed after the loop had stopped early (while scoring the test split): do not train on
            stopped = (
                state["last_eval_step"] == state["step"]
                and state["step"] - state["best_step"] >= int(t["patience_steps"])
                and state["step"] >= int(t["min_steps"])
            )
        eval_every, patience = int(t["eval_every_steps"]), int(t["patience_steps"])
        min_steps, max_epochs = int(t["min_steps"]), int(t["max_epochs"])
        if stopped:
            max_epochs = state["epoch"]
        deadline = time.time() + 60 * float(t["max_minutes"]) if t.get("max_minutes") else None
        bar = tqdm(
            total=max_epochs,
            initial=state["epoch"],
            desc=f"train {self.cfg['model']['name']}",
            unit="ep",
            disable=not self.progress,
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
            dynamic_ncols=True,
        )
        status, message = "finished", "early stop" if stopped else ""
        self.model.train()
        try:
            while state["epoch"] < max_epochs:
                epoch = state["epoch"] + 1
                t0 = time.time()
                distributed.seed_epoch(int(self.cfg["seed"]), epoch)
                self.model.on_epoch_start(epoch)
                sums: dict[str, float] = {}
                n_batches = 0
                for batch in self.sampler.epoch(rng):
                    batch = to_device(batch, self.device)
                    terms = self.train_step(batch)
                    values = distributed.loss_values(terms)  # under torchrun: the mean over ranks
                    for name, value in values.items():
                        if not math.isfinite(value):
                            raise Diverged(epoch, state["step"], name, value)
                    if self.grad_share and n_batches == 0:
                        grad_norm = term_grad_norms(terms, self.graph_params)
                    self.optimizer.zero_grad(set_to_none=True)
                    terms["total"].backward()
                    self.optimizer.step()
                    state["step"] += 1
                    n_batches += 1
                    for name, value in values.items():
                        sums[name] = sums.get(name, 0.0) + value
                seconds = time.time() - t0
                state["train_seconds"] += seconds
                state["epoch"] = epoch
                record: dict[str, Any] = {
                    "epoch": epoch,
                    "step": state["step"],
                    "seconds": round(seconds, 3),
                    "loss": {k: v / max(n_batches, 1) for k, v in sums.items()},
                }
                state["rank_last"] = rank_term(record["loss"])
                if epoch == 1:
                    state["rank_first"] = state["rank_last"]
                if self.grad_share and n_batches:
                    record["grad_norm"] = grad_norm
                stop = False
                out_of_time = distributed.agree(deadline is not None and time.time() > deadline)  # rank 0's clock
                if state["step"] - state["last_eval_step"] >= eval_every or epoch == max_epochs or out_of_time:
                    t1 = time.time()
                    valid = self.evaluate("valid")
                    record["eval_seconds"] = round(time.time() - t1, 3)
                    state["eval_seconds"] = state.get("eval_seconds", 0.0) + record["eval_seconds"]
                    state["last_eval_step"] = state["step"]
                    record["valid"] = valid
                    if valid[self.metric] > state["best"]:
                        state.update(
                            best=valid[self.metric],
                            best_step=state["step"],
                            best_epoch=epoch,
                            best_valid=valid,
                        )
                        if distributed.is_main():
                            save_checkpoint(self.run_dir / "best.pt", {"model": self.model.state_dict()})
                    stop = state["step"] - state["best_step"] >= patience and state["step"] >= min_steps
                # log first, then the checkpoint: a run killed in between re-trains this epoch on resume and
                # the log line is dropped (_truncate_log), so the log never lacks an epoch
                record["peak_rss_mb"] = round(peak_memory_mb(), 1)
                self._log(record)
                self._save(state, rng)  # every epoch: a killed run resumes from its last finished epoch
                bar.update(1)
                bar.set_postfix(
                    loss=f"{record['loss'].get('total', 0):.4f}",
                    best=f"{state['best']:.4f}",
                    step=state["step"],
                )
                if self.on_epoch is not None:
                    self.on_epoch({"epoch": epoch, "max_epochs": max_epochs, "step": state["step"], "best": state["best"]})
                if stop or out_of_time:
                    message = "early stop" if stop else f"stopped by train.max_minutes={t['max_minutes']}"
                    break
        except Diverged as exc:
            status, message = "diverged", str(exc)
            self._log({"epoch": exc.epoch, "step": exc.step, "diverged": exc.component, "value": exc.value})
        finally:
            bar.close()
        return self._finish(status, message, state)

    def _load_resume_checkpoint(self) -> dict[str, Any]:
        """``checkpoint.pt`` (tensors only: ``torch.load(weights_only=True)``), or a clear error."""
        import pickle

        try:
            return load_checkpoint(self.ckpt_path)
        except pickle.UnpicklingError as exc:
            raise SymcereError(
                f"--resume: refused to load {self.ckpt_path}: it holds objects other than tensors, so it was not "
                f"written by symcere ({str(exc).splitlines()[0][:200]})"
            ) from None
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise SymcereError(f"--resume: cannot load {self.ckpt_path} ({exc}); it is damaged") from None

    def _save(self, state: dict[str, Any], rng: np.random.Generator) -> None:
        if not distributed.is_main():
            return
        save_checkpoint(
            self.ckpt_path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": dict(state),
                "numpy_rng": json.dumps(rng.bit_generator.state),
                "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
            },
        )

    def _finish(self, status: str, message: str, state: dict[str, Any]) -> RunResult:
        result = RunResult(
            status=status,
            run_dir=str(self.run_dir),
            epochs=state["epoch"],
            steps=state["step"],
            best_epoch=state["best_epoch"],
            best_step=state["best_step"],
            message=message,
            warning=plateau_warning(state.get("rank_first"), state.get("rank_last"), state["epoch"])
            if message == "early stop"
            else "",
            train_seconds=round(state["train_seconds"], 2),
            eval_seconds=round(state.get("eval_seconds", 0.0), 2),
            device=str(self.device),
            seconds_per_epoch=round(state["train_seconds"] / max(state["epoch"], 1), 4),
            world_size=distributed.world_size(),
        )
        if status == "finished":
            best = distributed.load_on_main(self.run_dir / "best.pt")  # rank 0's file on every rank; None: none
            if best is not None:
                self.model.load_state_dict(best["model"])
            per_user: dict[str, np.ndarray] = {}
            result.valid = self.evaluate("valid", per_user)
            if self.test:
                result.test = self.evaluate("test", per_user)
            # per-user metrics of the final model, for paired significance tests across runs
            if distributed.is_main():
                atomic_write(self.run_dir / "per_user.npz", lambda fh: np.savez_compressed(fh, **per_user))
        result.peak_memory_mb = round(peak_memory_mb(), 1)
        if distributed.is_main():
            write_json(self.run_dir / "metrics.json", asdict(result))
        distributed.barrier()  # the run directory is complete when any rank returns
        return result
