"""Resource faults: a full or read-only disk becomes a clear error, and a configuration that cannot fit the
machine's memory is refused before a run starts.

:func:`disk_errors` turns the ``OSError`` of a failed write (no space, quota, read-only filesystem, permission)
into a :class:`~symcere.errors.SymcereError` that names the file and says what survives. :func:`estimate_memory`
adds up the large allocations of a training run from its configuration and the dataset's size — the dense score
block of evaluation (``eval.max_batch_elements``), embeddings with their Adam state, the graph, the text
encoder's batches (a frozen encoding batch, or a LoRA / full training step, whose activations are kept for the
backward pass) — and :func:`check_memory` compares the total with the memory available to this process
(``MemAvailable``, and the cgroup limit when there is one). The estimates are deliberately rough upper bounds
of the dominant terms, not a profiler.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from symcere.data.records import printable
from symcere.errors import SymcereError

__all__ = ["MemoryTooSmall", "available_memory", "check_memory", "disk_errors", "estimate_memory"]

#: the errno values of a write that failed because of the disk, not of the program
DISK_ERRNOS = frozenset(
    e
    for e in (
        errno.ENOSPC,
        getattr(errno, "EDQUOT", None),
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EFBIG,
        errno.EIO,
    )
    if e is not None
)
EVAL_BYTES_PER_ELEMENT = 16  # scores, the masked copy, masks and top-k work per scored (user, item); measured ~12
_GIB = 1024**3


class MemoryTooSmall(SymcereError):
    """The configuration needs more memory than the machine has available."""


@contextmanager
def disk_errors(what: str, survives: str = "") -> Iterator[None]:
    """Turn a disk ``OSError`` raised in the block into a :class:`SymcereError` naming the file.

    ``what``: the job, e.g. ``"training"``; ``survives``: a sentence on what the user still has (e.g. that
    the run resumes with ``--resume``)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS or isinstance(exc, SymcereError):
            raise
        where = f" {printable(exc.filename, 200)}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        hint = {
            errno.ENOSPC: "free some space",
            errno.EROFS: "the filesystem is read-only: choose another output location",
            errno.EACCES: "no permission to write there: choose another output location",
            errno.EPERM: "no permission to write there: choose another output location",
        }.get(exc.errno, "check the disk")
        tail = f"; {survives}" if survives else ""
        raise SymcereError(
            f"{what} stopped: cannot write{where}: {reason} ({hint}); files already written are complete{tail}"
        ) from None


# ----------------------------------------------------------------------------------------------- memory
def available_memory() -> int | None:
    """Bytes this process can still allocate: ``MemAvailable``, capped by a cgroup memory limit; None if unknown."""
    avail: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max":
                continue
            limit, usage = int(limit_text), int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit < 2**60:
            room = max(0, limit - usage)
            avail = room if avail is None else min(avail, room)
    return avail


def _text_dims(model: str) -> dict[str, int]:
    """hidden size, layers, heads and parameter count of a text model (from its config.json; BERT-base if unknown)."""
    dims = {"hidden": 768, "layers": 12, "heads": 12, "params": 110_000_000, "inter": 3072}
    try:
        from symcere.text.models import resolve_model_path

        config = json.loads((Path(resolve_model_path(model)) / "config.json").read_text(encoding="utf-8"))
    except (SymcereError, OSError, ValueError, ImportError):
        return dims
    hidden = int(config.get("hidden_size") or config.get("d_model") or dims["hidden"])
    layers = int(config.get("num_hidden_layers") or config.get("num_layers") or dims["layers"])
    heads = int(config.get("num_attention_heads") or config.get("num_heads") or dims["heads"])
    inter = int(config.get("intermediate_size") or 4 * hidden)
    vocab = int(config.get("vocab_size") or 30522)
    params = vocab * hidden + layers * (4 * hidden * hidden + 2 * hidden * inter)
    return {"hidden": hidden, "layers": layers, "heads": heads, "params": params, "inter": inter}


def _token_layer_bytes(d: dict[str, int], tokens: int) -> int:
    """Activations of one sequence position in one transformer layer (float32): projections, MLP, attention."""
    return 4 * (8 * d["hidden"] + 2 * d["inter"] + 2 * d["heads"] * tokens)


def estimate_memory(cfg: dict[str, Any], dataset: Any) -> dict[str, int]:
    """Bytes of the large allocations of training ``cfg`` on ``dataset``, by component (see the module docstring)."""
    n_users, n_items = int(dataset.n_users), int(dataset.n_items)
    model, train, ev = cfg.get("model", {}), cfg["train"], cfg["eval"]
    dim = int(model.get("dim", 64))
    layers = int(model.get("layers", 0) or 0)
    nnz = int(dataset.matrix("train").nnz)
    mbe = int(ev["max_batch_elements"])
    per_batch = max(1, mbe // max(1, n_items))
    out: dict[str, int] = {
        "evaluation score block": min(per_batch, max(1, n_users)) * n_items * EVAL_BYTES_PER_ELEMENT,
        # parameters + gradient + two Adam moments, and the propagated layers kept for the backward pass
        "embeddings and optimizer": (n_users + n_items) * dim * 4 * (4 + 2 * (layers + 1)),
        "graph": nnz * 2 * 20 * (2 if cfg.get("views") else 1),
    }
    text = cfg.get("text")
    uses_text = text is not None and model.get("text_features", "text") == "text"
    if uses_text:
        d = _text_dims(str(text["model"]))
        tokens = int(text["max_tokens"])
        per_seq_layer = tokens * _token_layer_bytes(d, tokens)
        reviews_per_item = max(1.0, nnz / max(1, n_items)) if text.get("item_pooling") == "review_mean" else 1.0
        mode = text.get("mode", "frozen")
        n_views = int(text.get("n_views", 0)) if mode == "frozen" else 0
        out["text model weights"] = d["params"] * 4 * (4 if mode == "full" else 1)
        if mode == "frozen":
            # one no-grad batch at a time: the activations of one layer are alive at once (x2 for the in/out)
            out["text encoding batch"] = int(text["batch_size"]) * 2 * per_seq_layer
            out["text cache tables"] = n_items * (1 + n_views) * d["hidden"] * 4
        else:
            # a training step encodes the distinct items of the batch (positives, negatives; two views for the
            # intra-modal term), each as its reviews, and keeps every layer's activations for the backward pass
            items = min(n_items, int(train["batch_size"]) * (1 + int(train.get("num_negatives", 1))))
            sequences = int(items * reviews_per_item * 2)
            # only the layers with gradients keep activations (text.lora_layers: the top ones), and with
            # checkpointed micro-batches (text.checkpointing, null = when a step needs more than one) only one
            # micro-batch's at a time
            top = text.get("lora_layers") if mode == "lora" else None
            grad_layers = min(d["layers"], int(top)) if top else d["layers"]
            micro = int(text.get("micro_batch") or sequences)
            ckpt = text.get("checkpointing")
            held = sequences if ckpt is False or (ckpt is None and sequences <= micro) else min(micro, sequences)
            out["text training step"] = held * grad_layers * per_seq_layer
            if top and int(top) < d["layers"]:  # the lower layers' states of every text and masked view
                alpha = float(cfg.get("loss", {}).get("alpha", 0.0) or 0.0)
                views = int(text.get("n_views", 0)) if alpha > 0 else 0
                width = 2 if text.get("bf16") else 4
                out["text lower-layer cache"] = int(n_items * reviews_per_item) * (1 + views) * tokens * d["hidden"] * width
    return out


def _gib(n: float) -> str:
    return f"{n / _GIB:.1f} GiB"


def check_memory(cfg: dict[str, Any], dataset: Any, available: int | None = None) -> dict[str, int]:
    """Raise :class:`MemoryTooSmall` (before anything is built) when the estimate exceeds the available memory;
    returns the estimate. ``available`` overrides the measured value (tests)."""
    need = estimate_memory(cfg, dataset)
    have = available_memory() if available is None else available
    total = sum(need.values())
    if have is None or total <= have:
        return need
    parts = ", ".join(f"{k} {_gib(v)}" for k, v in sorted(need.items(), key=lambda kv: -kv[1]) if v >= 0.05 * total)
    biggest = max(need, key=need.__getitem__)
    fix = {
        "evaluation score block": "lower eval.max_batch_elements (results do not depend on it)",
        "text training step": "lower train.batch_size or text.max_tokens, or use text.mode=frozen",
        "text encoding batch": "lower text.batch_size",
        "text cache tables": "lower text.n_views",
        "text lower-layer cache": "lower text.n_views or text.max_tokens, or set text.bf16=true",
        "embeddings and optimizer": "lower model.dim",
        "graph": "use a smaller dataset (k-core) or fewer views",
    }.get(biggest, "lower the batch sizes")
    raise MemoryTooSmall(
        f"this configuration needs about {_gib(total)} of memory ({parts}) but only {_gib(have)} is available; "
        f"nothing was started: {fix}, or pass --no-memory-check to try anyway"
    )
