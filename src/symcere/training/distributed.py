"""Data-parallel training across processes launched by ``torchrun`` (PyTorch ``DistributedDataParallel``).

``torchrun --nproc_per_node N -m symcere train ...`` starts N copies of the ordinary command; each reads its
place from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``,
``MASTER_ADDR``/``MASTER_PORT``) and joins one process group (:func:`setup`, idempotent): gloo for CPU
tensors, NCCL for CUDA tensors, one GPU per local rank (:func:`resolve_training_device` refuses two ranks on
one GPU). Without torchrun every helper here is the identity of the single-process run.

What each rank does (``training/trainer.py`` calls in at these points):

- model: the same seeded initialisation on every rank, wrapped by :func:`wrap` so that gradients are
  averaged across ranks in ``backward`` (DDP); derived buffers (the adjacency, text tables) are built by every
  rank from the same data and never broadcast;
- data: a disjoint seeded shard of every epoch's interactions (``InteractionSampler(shard=(rank, world))``):
  every interaction is used exactly once per epoch across the ranks, each optimizer step sees one global batch
  of ``train.batch_size`` interactions split across the ranks, so steps per epoch and early stopping are those
  of the single-process run;
- evaluation: whole user batches dealt round-robin (``evaluate(shard=...)``) and gathered exactly
  (:func:`gather_eval`): the per-user values and the means are bit-identical to the single-process evaluator;
- files: rank 0 writes the log, checkpoints and metrics; the other ranks write nothing; decisions that depend
  on a clock (``train.max_minutes``) are rank 0's (:func:`agree`); a loss that is not finite on any rank stops
  every rank (:func:`loss_values`);
- text: the frozen cache is encoded in slices, one per rank, and assembled on every rank
  (:func:`encode_sharded`); LoRA forwards run on each rank's own batch.
"""

from __future__ import annotations

import atexit
import io
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from symcere.errors import ConfigError, SymcereError
from symcere.training.seeding import cores

#: the variables torchrun sets for every worker
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> bool:
    """True when this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
    except ValueError:
        return False


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def setup() -> bool:
    """Join torchrun's process group once (no-op when not launched by torchrun); True when distributed.

    Backend: ``gloo`` for CPU tensors plus ``nccl`` for CUDA tensors when this machine has CUDA, so object
    collectives and CPU training work either way."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched():
        return False
    if not dist.is_available():
        raise SymcereError("launched by torchrun, but this torch build has no torch.distributed")
    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing:
        raise SymcereError(f"launched with WORLD_SIZE > 1 but without {', '.join(missing)}: start with torchrun")
    backend = "gloo"
    if torch.cuda.is_available():
        backend = "cpu:gloo,cuda:nccl"
        if local_rank() < torch.cuda.device_count():
            torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, init_method="env://")
    atexit.register(shutdown)
    return dist.get_world_size() > 1


def shutdown() -> None:
    """Leave the process group (registered at exit by :func:`setup`)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    """True when this process trains with others (the process group is set up on first use)."""
    return setup()


def world_size() -> int:
    return _dist().get_world_size() if active() else 1


def rank() -> int:
    return _dist().get_rank() if active() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if launched() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes files and prints."""
    return rank() == 0


def is_local_main() -> bool:
    """Local rank 0: the one process per machine that writes machine-local caches."""
    return local_rank() == 0


def shard() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: the sampler's and the evaluator's shard."""
    return rank(), world_size()


def describe() -> dict[str, Any]:
    """What ``env.json`` records about the process group."""
    if not active():
        return {"world_size": 1}
    return {"world_size": world_size(), "backend": str(_dist().get_backend())}


def default_threads() -> int | None:
    """Torch threads per rank when ``train.threads`` is null: this machine's cores shared by its local ranks
    (None when not distributed: the single-process default)."""
    if not active():
        return None
    return max(1, cores() // max(1, local_world_size()))


def resolve_training_device(spec: str | torch.device | None) -> torch.device:
    """``train.device`` for this rank: under torchrun with CUDA, ``auto`` / ``cuda`` mean ``cuda:LOCAL_RANK``;
    a pinned ``cuda:N`` with several local ranks, or more local ranks than GPUs, is a ``ConfigError``."""
    from symcere.training.device import resolve_device

    device = resolve_device(spec)
    if device.type != "cuda" or not active():
        return device
    n_local, n_gpus = local_world_size(), torch.cuda.device_count()
    if re.fullmatch(r"cuda:\d+", str(spec).strip().lower()) and n_local > 1:
        raise ConfigError(
            f"train.device={spec} would put all {n_local} local ranks on one GPU; use train.device=auto (or cuda): "
            "each rank then takes the GPU of its LOCAL_RANK"
        )
    if n_local > n_gpus:
        raise ConfigError(
            f"torchrun started {n_local} processes on this machine but it has {n_gpus} CUDA device(s); two ranks "
            f"never share a GPU: use --nproc_per_node {n_gpus} (or train.device=cpu)"
        )
    torch.cuda.set_device(local_rank())
    return torch.device("cuda", local_rank())


# -- the model --------------------------------------------------------------------------------------------
class LossForward(nn.Module):
    """``forward(batch) = model.loss(batch)``: the call DDP wraps (its gradient hooks are armed in forward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.model.loss(batch)


def wrap(model: nn.Module, device: torch.device) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """The training call: ``model.loss`` alone, or under torchrun ``DistributedDataParallel`` around it
    (gradients averaged across ranks in backward). Buffers are data every rank derives itself (adjacency, text
    tables): they are never broadcast. Parameters the loss leaves unused (e.g. the text tower when its terms are
    off) are found in the first step (``static_graph``: the same parameters take part in every step)."""
    if not active():
        return model.loss
    from torch.nn.parallel import DistributedDataParallel

    module = LossForward(model)
    buffers = [f"model.{name}" for name, _ in model.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, buffers)  # no sync, ever
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        # the graph is the same every step: unused parameters are found once, in the first step
        static_graph=True,
    )


def seed_epoch(seed: int, epoch: int) -> None:
    """Under torchrun: a per-(seed, epoch, rank) torch seed at each epoch start, so that dropout differs across
    ranks and a resumed run draws what the uninterrupted one drew (no-op in a single process)."""
    if active():
        torch.manual_seed(int(np.random.SeedSequence([seed, epoch, rank(), 0x0DD]).generate_state(1)[0]))


def loss_values(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss components as floats: this process's, or under torchrun their mean over the ranks (one
    all-reduce), so a component that is not finite on any rank is not finite on every rank."""
    if not active():
        return {name: float(value.detach()) for name, value in terms.items()}
    names = list(terms)
    vec = torch.stack([terms[n].detach().float().reshape(()) for n in names]).cpu()
    _dist().all_reduce(vec)
    vec /= world_size()
    return dict(zip(names, vec.tolist(), strict=True))


# -- agreement and files ----------------------------------------------------------------------------------
def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; identity in a single process)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def agree(flag: bool) -> bool:
    """Rank 0's decision on every rank (e.g. the wall-clock budget)."""
    return bool(broadcast(bool(flag)))


def all_true(flag: bool) -> bool:
    """True on every rank when ``flag`` holds on every rank."""
    if not active():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64)
    _dist().all_reduce(t, op=_dist().ReduceOp.MIN)
    return bool(t.item())


def on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only; its result, or the ``SymcereError`` it raised, on every rank."""
    if not active():
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    if is_main():
        try:
            outcome = ("ok", fn())
        except SymcereError as exc:
            outcome = ("error", str(exc))
    outcome = broadcast(outcome)
    if outcome[0] == "error":
        raise SymcereError(outcome[1])
    return outcome[1]


def load_on_main(path: Path) -> Any:
    """A checkpoint read by rank 0 and sent to every rank (ranks need not share a file system); None when rank 0
    has no such file."""
    from symcere.training.checkpoint import load_checkpoint

    if not active():
        return load_checkpoint(path) if path.exists() else None
    payload = None
    if is_main() and path.exists():
        payload = path.read_bytes()
    payload = broadcast(payload)
    return None if payload is None else torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def barrier() -> None:
    if active():
        _dist().barrier()


# -- evaluation ---------------------------------------------------------------------------------------------
def gather_eval(part: Any) -> Any:
    """The full ``EvalResult`` from every rank's shard (``evaluate(..., shard=shard())``): per-user values
    concatenated in user order and averaged by the evaluator's own reduction, so the metrics are bit-identical
    to a single-process evaluation (each user counted once)."""
    if not active():
        return part
    from symcere.evaluation.evaluator import EvalResult, mean_metrics

    parts: list[Any] = [None] * world_size()
    _dist().all_gather_object(parts, (part.users, part.per_user))
    users = np.concatenate([u for u, _ in parts])
    if len(np.unique(users)) != len(users):
        raise RuntimeError("evaluation shards overlap: a user was evaluated by two ranks")
    order = np.argsort(users, kind="stable")
    keys = next((list(p) for _, p in parts if p), [])
    per_user = {k: np.concatenate([p[k] for u, p in parts if len(u)])[order] for k in keys}
    return EvalResult(metrics=mean_metrics(per_user), per_user=per_user, users=users[order], n_users=int(users.size))


# -- text ---------------------------------------------------------------------------------------------------
def slice_bounds(n: int, parts: int, index: int) -> tuple[int, int]:
    """``[lo, hi)`` of part ``index`` when ``n`` items are cut into ``parts`` contiguous, balanced slices."""
    return n * index // parts, n * (index + 1) // parts


def encode_sharded(encode: Callable[..., torch.Tensor], texts: Sequence[str], **kw: Any) -> torch.Tensor:
    """``encode(texts, **kw)`` -> (n, hidden), under torchrun computed in one contiguous slice per rank and
    assembled on every rank (all-gather, in text order)."""
    if not active():
        return encode(list(texts), **kw)
    w, r = world_size(), rank()
    bounds = [slice_bounds(len(texts), w, k) for k in range(w)]
    lo, hi = bounds[r]
    kw = {**kw, "progress": bool(kw.get("progress")) and is_main()}
    mine = encode(list(texts[lo:hi]), **kw)
    padded = mine.new_zeros((max(b - a for a, b in bounds), *mine.shape[1:]))
    padded[: len(mine)] = mine
    out = [torch.empty_like(padded) for _ in range(w)]
    _dist().all_gather(out, padded)
    return torch.cat([part[: b - a] for part, (a, b) in zip(out, bounds, strict=True)])


def union(texts: list[str]) -> list[str]:
    """Every rank's ``texts`` in one list (first occurrence order, rank 0 first); identity in one process."""
    if not active():
        return texts
    parts: list[Any] = [None] * world_size()
    _dist().all_gather_object(parts, texts)
    return list(dict.fromkeys(t for part in parts for t in part))
