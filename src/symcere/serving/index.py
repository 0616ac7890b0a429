"""Top-K search over a catalogue: exact (one matrix product per batch of queries) or a FAISS inner-product index.

``scoring_vectors(model)`` gives user and item vectors whose inner product IS the model's score (the dot product,
or the cosine with ``model.normalize``), checked against ``model.score``; models whose score is not an inner
product (NeuMF) get ``None`` and are always searched exactly through ``model.score``.

``ExactIndex`` and ``FaissIndex`` share ``search(queries, k, exclude) -> (items, scores)``: rows of
``exclude`` (a CSR matrix, one row per query) are never returned; order is score descending, ties by item
index ascending (the evaluator's ``rank_scores``). FAISS is asked for ``k`` plus the row's excluded items and
its candidates are re-scored exactly, so only its recall is approximate; ``recall_at_k`` measures it against
exact search.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from symcere import losses
from symcere.errors import SymcereError
from symcere.evaluation.evaluator import rank_scores, topk_items
from symcere.extras import require

#: index kinds of ``FaissIndex``
FAISS_KINDS = ("hnsw", "ivf", "flat")


def scoring_vectors(
    model: Any, check_users: int = 16, emb: dict[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(users, items)`` with ``model.score(u) == users[u] @ items.T`` (checked on up to ``check_users`` users),
    or ``None`` when the model's score is not an inner product of its ``embeddings()`` (or of ``emb``, the
    tables already computed)."""
    if emb is None:
        emb = model.embeddings() if hasattr(model, "embeddings") else {}
    if "users" not in emb or "items" not in emb:
        return None
    users, items = emb["users"].detach(), emb["items"].detach()
    if bool(getattr(model, "normalize", False)):
        users, items = losses.l2_normalize(users), losses.l2_normalize(items)
    probe = torch.arange(min(check_users, users.shape[0]), device=users.device)
    with torch.no_grad():
        expected = model.score(probe)
    got = users[probe] @ items.T
    if expected.shape != got.shape or not torch.allclose(expected.float(), got.float(), rtol=1e-4, atol=1e-5):
        return None
    return users, items


def _exclude_rows(exclude: sp.csr_matrix | None, n_queries: int, n_items: int) -> sp.csr_matrix:
    if exclude is None:
        return sp.csr_matrix((n_queries, n_items), dtype=np.float32)
    if exclude.shape != (n_queries, n_items):
        raise SymcereError(f"exclude must be ({n_queries}, {n_items}), got {exclude.shape}")
    return exclude.tocsr()


class ExactIndex:
    """Exact maximum inner product search: ``queries @ items.T`` per batch of queries, ranked by ``rank_scores``."""

    kind = "exact"

    def __init__(self, items: torch.Tensor, max_batch_elements: int = 16_777_216):
        self.items = items
        self.max_batch_elements = int(max_batch_elements)

    @property
    def n_items(self) -> int:
        return int(self.items.shape[0])

    def search(
        self, queries: torch.Tensor, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = queries.to(device=self.items.device, dtype=self.items.dtype)
        seen = _exclude_rows(exclude, q.shape[0], self.n_items)
        return topk_items(
            lambda rows: q[rows] @ self.items.T,
            seen,
            np.arange(q.shape[0]),
            int(k),
            max_batch_elements=self.max_batch_elements,
            device=self.items.device,
        )


class FaissIndex:
    """A FAISS inner-product index over ``items`` (float32): ``hnsw`` (graph, default), ``ivf`` (inverted
    lists over ``nlist`` k-means cells, ``nprobe`` searched) or ``flat`` (exhaustive, exact up to float32)."""

    def __init__(
        self,
        items: torch.Tensor,
        kind: str = "hnsw",
        *,
        hnsw_m: int = 32,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 32,
        seed: int = 0,
    ):
        if kind not in FAISS_KINDS:
            raise SymcereError(f"index kind must be one of {', '.join(FAISS_KINDS)}, got {kind!r}")
        faiss = require("faiss", "the approximate top-K index")
        self.kind = f"faiss-{kind}"
        self.items = items
        x = np.ascontiguousarray(items.detach().cpu().float().numpy())
        n, d = x.shape
        metric = faiss.METRIC_INNER_PRODUCT
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, int(hnsw_m), metric)
            index.hnsw.efSearch = int(ef_search)
        elif kind == "ivf":
            cells = int(nlist or max(1, min(65536, round(np.sqrt(n)))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, min(cells, n), metric)
            index.cp.seed = int(seed)
            index.train(x)
            index.nprobe = int(min(nprobe, index.nlist))
        else:
            index = faiss.IndexFlatIP(d)
        index.add(x)
        self.index = index
        self.params = {"hnsw_m": hnsw_m, "ef_search": ef_search} if kind == "hnsw" else {}
        if kind == "ivf":
            self.params = {"nlist": int(index.nlist), "nprobe": int(index.nprobe)}

    @property
    def n_items(self) -> int:
        return int(self.items.shape[0])

    def search(
        self, queries: torch.Tensor, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if k < 1:
            raise SymcereError(f"k must be >= 1, got {k}")
        seen = _exclude_rows(exclude, queries.shape[0], self.n_items)
        per_row = np.diff(seen.indptr)
        fetch = int(min(self.n_items, k + (int(per_row.max()) if per_row.size else 0)))
        q = np.ascontiguousarray(queries.detach().cpu().float().numpy())
        _, cand = self.index.search(q, fetch)  # (B, fetch) item ids, -1 = none found
        out_items = torch.full((len(q), min(k, self.n_items)), -1, dtype=torch.long)
        out_scores = torch.full(out_items.shape, float("-inf"), dtype=self.items.dtype)
        items_dev = self.items
        for row in range(len(q)):
            ids = cand[row][cand[row] >= 0]
            ids = ids[~np.isin(ids, seen.indices[seen.indptr[row] : seen.indptr[row + 1]])]
            if ids.size == 0:
                continue
            ids_t = torch.from_numpy(np.sort(ids)).to(items_dev.device)
            exact = queries[row : row + 1].to(device=items_dev.device, dtype=items_dev.dtype) @ items_dev[ids_t].T
            top, scores = rank_scores(exact, k)  # ties: lower position in the sorted ids = lower item index
            n = top.shape[1]
            out_items[row, :n] = ids_t[top[0]].cpu()
            out_scores[row, :n] = scores[0].cpu()
        return out_items, out_scores


def build_index(items: torch.Tensor, ann_threshold: int | None, kind: str = "hnsw", **params: Any) -> Any:
    """``FaissIndex`` when the catalogue has more than ``ann_threshold`` items (None: never), else ``ExactIndex``."""
    if ann_threshold is not None and items.shape[0] > int(ann_threshold):
        return FaissIndex(items, kind, **params)
    return ExactIndex(items)


def recall_at_k(approx: torch.Tensor, exact: torch.Tensor, k: int = 10) -> float:
    """Mean over rows of |top-k approx ∩ top-k exact| / |top-k exact| (padding ids < 0 ignored)."""
    a, e = approx[:, :k].cpu().numpy(), exact[:, :k].cpu().numpy()
    hits, total = 0, 0
    for ra, re in zip(a, e, strict=True):
        want = set(re[re >= 0].tolist())
        hits += len(want & set(ra[ra >= 0].tolist()))
        total += len(want)
    return hits / total if total else float("nan")
