"""Embeddings of a run for other systems (``symcere export``): Parquet tables or one safetensors file.

Exported tables: ``users`` and ``items`` in the model's scoring space (their inner product is the model's score:
the final graph embeddings, L2-normalised when the model scores by cosine), ``item_text`` (the text tower's
projected item embeddings, SymCERE) and any further table of ``model.embeddings()`` (e.g. NeuMF's MLP
tables, DGCLR's review views), as they are.

- ``parquet``: ``<table>.parquet`` per table, columns ``id`` (original user / item id) and ``embedding``
  (fixed-size list of float32), plus ``embeddings.json`` (model, score, tables and their shapes).
- ``safetensors``: ``embeddings.safetensors`` (one float32 tensor per table; metadata: model, score) plus
  ``ids.json`` (the user and item ids in row order) and ``embeddings.json``.

Every file is written atomically (``symcere.io``); existing files are never replaced unless ``force``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from symcere.errors import SymcereError
from symcere.io import write_bytes, write_json
from symcere.serving.index import scoring_vectors

FORMATS = ("parquet", "safetensors")


def embedding_tables(run: Any) -> tuple[dict[str, np.ndarray], str]:
    """The run's embedding tables (float32, row = internal index) and how ``users``/``items`` score."""
    model = run.model
    model.eval()
    with torch.no_grad():
        emb = {k: v.detach() for k, v in model.embeddings().items()} if hasattr(model, "embeddings") else {}
        vectors = scoring_vectors(model)
    score = "none"
    if vectors is not None:
        emb["users"], emb["items"] = vectors
        score = "inner product of users and items = the model's score"
    elif "users" in emb:
        score = "users and items are the model's embedding tables; the model's score is not their inner product"
    if not emb:
        raise SymcereError(f"model {run.config['model']['name']} exposes no embeddings")
    return {k: v.float().cpu().numpy() for k, v in emb.items()}, score


def _ids_for(name: str, n: int, run: Any) -> list[str] | None:
    users, items = [str(u) for u in run.dataset.user_ids], [str(i) for i in run.dataset.item_ids]
    if name.startswith("user") and n == len(users):
        return users
    if name.startswith("item") and n == len(items):
        return items
    return None


def export_embeddings(run: Any, out: str | Path, fmt: str = "parquet", *, force: bool = False) -> list[Path]:
    """Write the run's embeddings to the directory ``out`` as ``fmt`` (``parquet`` | ``safetensors``)."""
    if fmt not in FORMATS:
        raise SymcereError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    tables, score = embedding_tables(run)
    out = Path(out)
    if fmt == "parquet":
        names = [f"{name}.parquet" for name in tables]
    else:
        names = ["embeddings.safetensors", "ids.json"]
    names.append("embeddings.json")
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise SymcereError(f"{out}: {', '.join(existing)} exist; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": run.config["model"]["name"],
        "run_dir": str(run.run_dir) if run.run_dir is not None else None,
        "score": score,
        "format": fmt,
        "tables": {k: list(v.shape) for k, v in tables.items()},
    }
    written = []
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        for name, arr in tables.items():
            n, d = arr.shape
            ids = _ids_for(name, n, run) or [str(j) for j in range(n)]
            flat = pa.array(np.ascontiguousarray(arr).reshape(-1), pa.float32())
            table = pa.table(
                {"id": pa.array(ids, pa.string()), "embedding": pa.FixedSizeListArray.from_arrays(flat, d)}
            )
            buf = io.BytesIO()
            pq.write_table(table, buf)
            written.append(write_bytes(out / f"{name}.parquet", buf.getvalue()))
    else:
        from symcere.extras import require

        st = require("safetensors.numpy", "safetensors export")
        data = st.save(
            {k: np.ascontiguousarray(v) for k, v in tables.items()},
            metadata={"model": str(meta["model"]), "score": score},
        )
        written.append(write_bytes(out / "embeddings.safetensors", data))
        ids = {"users": [str(u) for u in run.dataset.user_ids], "items": [str(i) for i in run.dataset.item_ids]}
        written.append(write_bytes(out / "ids.json", json.dumps(ids).encode("utf-8")))
    written.append(write_json(out / "embeddings.json", meta))
    return written
