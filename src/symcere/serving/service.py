"""``Service``: everything the server answers, over a loaded ``symcere.api.Run`` (never written to).

- ``recommend``: top-K items per user. With the exact index, no served cold items and ``exclude_seen`` it is
  ``Run.recommend`` itself (what ``symcere recommend`` writes); otherwise the same ranking (``topk_items``,
  ties by item index) over the model's scores plus the cold items, or a FAISS index above ``ann_threshold``.
- ``similar_items``: items by cosine of their vectors in the model's scoring space.
- ``cold_start``: users ranked for an unseen item by its reviews through the text tower,
  ``<hat(g_u), hat(t(reviews))>`` (``SymCERE.text_scores``). With ``item`` the item joins the served catalogue
  (in memory): its vector in the scoring space is a ridge map from the text tower's embedding to the item
  vectors, fit on the catalogue's items with training interactions, so ``recommend`` ranks it among them.
- ``explain``: exact leave-one-word-out weights of the item's review words (``symcere.serving.explain``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from symcere import losses
from symcere.errors import SymcereError
from symcere.evaluation.evaluator import rank_scores, topk_items
from symcere.serving import explain as xp
from symcere.serving.index import ExactIndex, build_index, recall_at_k, scoring_vectors

#: catalogues larger than this are searched with a FAISS index (``--ann-threshold``)
DEFAULT_ANN_THRESHOLD = 100_000
COLD_METHOD = "text tower: cosine of the user's graph embedding and the projected embedding of the reviews"


class NotFound(SymcereError):
    """An unknown user or item id (HTTP 404)."""


class Conflict(SymcereError):
    """A request that contradicts the served catalogue (HTTP 409)."""


class Unsupported(SymcereError):
    """A feature this run's model does not have, e.g. cold start without a text tower (HTTP 400)."""


@dataclass
class ColdItem:
    """An item served from its reviews: ``index`` in the served catalogue, ``vector`` in the scoring space."""

    item_id: str
    index: int
    text: str
    text_vector: torch.Tensor
    vector: torch.Tensor


def ridge_map(x: torch.Tensor, y: torch.Tensor, rel_lambda: float = 1e-2) -> tuple[torch.Tensor, float]:
    """Least squares ``[x, 1] @ W ~ y`` with ridge ``rel_lambda * mean(diag(X^T X))`` -> (W, R^2 on x, y)."""
    x64 = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64, device=x.device)], dim=1)
    y64 = y.double()
    gram = x64.T @ x64
    lam = rel_lambda * float(gram.diagonal().mean())
    w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device), x64.T @ y64)
    resid = ((x64 @ w - y64) ** 2).sum()
    total = ((y64 - y64.mean(0)) ** 2).sum().clamp_min(1e-12)
    return w.to(y.dtype), float(1 - resid / total)


class Service:
    """The serving state of one run: indices, served cold items, explanation cache. Thread-safe.

    ``ann_threshold``: catalogues above it use a FAISS ``ann_kind`` index (its recall@10 against exact search on
    ``recall_users`` users is in ``health()``); ``explain_cache``: items whose leave-one-word-out tables are kept;
    ``max_cold_items``: bound on the items served from reviews (a request past it is a 409)."""

    def __init__(
        self,
        run: Any,
        *,
        ann_threshold: int | None = DEFAULT_ANN_THRESHOLD,
        ann_kind: str = "hnsw",
        ann_params: dict[str, Any] | None = None,
        recall_users: int = 1000,
        explain_cache: int = 256,
        max_cold_items: int = 100_000,
        seed: int = 0,
    ):
        self.run, self.model, self.dataset = run, run.model, run.dataset
        self.model.eval()
        self.started = time.time()
        self.model_name = str(run.config["model"]["name"])
        self.user_ids = [str(u) for u in self.dataset.user_ids]
        self.item_ids = [str(i) for i in self.dataset.item_ids]
        self.user_pos = {u: n for n, u in enumerate(self.user_ids)}
        self.item_pos = {i: n for n, i in enumerate(self.item_ids)}
        self.n_items = len(self.item_ids)
        self.seen = (self.dataset.matrix("train") + self.dataset.matrix("valid")).tocsr()
        self.train_csc = self.dataset.matrix("train").tocsc()
        self.n_train = np.diff(self.train_csc.indptr)
        self.max_batch_elements = int(run.config["eval"]["max_batch_elements"])
        self.lock = threading.RLock()  # catalogue changes
        self.cold: dict[str, ColdItem] = {}  # served from reviews, by id (new ids and known items without training)
        with torch.no_grad():
            tables = self.model.embeddings() if hasattr(self.model, "embeddings") else {}
            vectors = scoring_vectors(self.model, emb=tables)
        self.users_vec, self.items_vec = vectors if vectors is not None else (None, None)
        self.index: Any = None
        self.index_info: dict[str, Any] = {"kind": "exact", "scores": "model.score"}
        if self.items_vec is not None:
            self.index = build_index(self.items_vec, ann_threshold, ann_kind, **(ann_params or {}))
            self.index_info = {"kind": self.index.kind, "threshold": ann_threshold, **getattr(self.index, "params", {})}
            if not isinstance(self.index, ExactIndex):
                self.index_info["recall@10"] = self.ann_recall(10, recall_users, seed)
        self.similar_vec = self._item_table()
        self.has_text = callable(getattr(self.model, "text_scores", None)) and callable(
            getattr(self.model, "embed_texts", None)
        )
        self.cold_map: torch.Tensor | None = None
        self.cold_map_info: dict[str, Any] = {}
        self.text_budget = int(self.dataset.meta.get("params", {}).get("text_budget", 0) or 0)
        self.max_cold_items = int(max_cold_items)
        if self.has_text:
            self._graph = tables  # raw final users / items (the alignment anchors) and the text tower's items
            self._fit_cold_map(seed)
            self.explanations = xp.LooCache(self._build_loo, explain_cache)

    # -- ids ------------------------------------------------------------------------------------------------
    def user(self, user_id: Any) -> int:
        n = self.user_pos.get(str(user_id))
        if n is None:
            raise NotFound(f"unknown user {str(user_id)!r}")
        return n

    def item(self, item_id: Any) -> tuple[int, ColdItem | None]:
        """(served index, the cold entry if the item is served from its reviews)."""
        key = str(item_id)
        cold = self.cold.get(key)
        if cold is not None:
            return cold.index, cold
        n = self.item_pos.get(key)
        if n is None:
            raise NotFound(f"unknown item {key!r}")
        return n, None

    def served_item_ids(self) -> list[str]:
        extra = sorted((c for c in self.cold.values() if c.index >= self.n_items), key=lambda c: c.index)
        return self.item_ids + [c.item_id for c in extra]

    def health(self) -> dict[str, Any]:
        info = {
            "status": "ok",
            "model": self.model_name,
            "users": len(self.user_ids),
            "items": self.n_items + sum(c.index >= self.n_items for c in self.cold.values()),
            "cold_items": len(self.cold),
            "text_tower": self.has_text,
            "index": self.index_info,
            "uptime_s": round(time.time() - self.started, 3),
        }
        if self.has_text:
            info["explanations_cached"] = len(self.explanations)
        return info

    # -- top-K ------------------------------------------------------------------------------------------------
    def _extras(self) -> tuple[list[ColdItem], torch.Tensor | None]:
        with self.lock:
            cold = sorted(self.cold.values(), key=lambda c: c.index)
        if not cold:
            return [], None
        return cold, torch.stack([c.vector for c in cold])

    def recommend(self, user_ids: Any, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` per user as a frame ``user, item, rank, score`` (original ids); ``exclude_seen``: never an
        item of the user's training or validation interactions (the default of ``symcere recommend``)."""
        if int(k) < 1:
            raise SymcereError(f"k must be >= 1, got {k}")
        users = [user_ids] if isinstance(user_ids, str) else list(user_ids)
        idx = np.array([self.user(u) for u in users], dtype=np.int64)
        cold, cold_vec = self._extras()
        exact = self.index is None or isinstance(self.index, ExactIndex)
        if not cold and exclude_seen and exact:
            return self.run.recommend([self.user_ids[i] for i in idx], k=int(k), exclude="train+valid")
        n_served = self.n_items + sum(c.index >= self.n_items for c in cold)
        seen = self._seen_rows(idx, n_served, exclude_seen)
        if exact:
            items, scores = self._exact_topk(idx, int(k), seen, cold, cold_vec)
        else:
            items, scores = self._ann_topk(idx, int(k), seen, cold, cold_vec)
        return self._frame(idx, items, scores)

    def _seen_rows(self, idx: np.ndarray, n_served: int, exclude_seen: bool) -> sp.csr_matrix:
        if not exclude_seen:
            return sp.csr_matrix((len(idx), n_served), dtype=np.float32)
        rows = self.seen[idx]
        return sp.csr_matrix((rows.data, rows.indices, rows.indptr), shape=(len(idx), n_served))

    def _exact_topk(
        self, idx: np.ndarray, k: int, seen: sp.csr_matrix, cold: list[ColdItem], cold_vec: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        users = torch.from_numpy(idx)
        replace = torch.tensor([c.index for c in cold if c.index < self.n_items], dtype=torch.long)
        appended = [j for j, c in enumerate(cold) if c.index >= self.n_items]

        def score(rows: torch.Tensor) -> torch.Tensor:
            s = self.model.score(users[rows.cpu()].to(self.model.device))
            if cold_vec is None:
                return s
            assert self.users_vec is not None
            c = self.users_vec[users[rows.cpu()].to(self.users_vec.device)] @ cold_vec.T
            c = c.to(device=s.device, dtype=s.dtype)
            if len(replace):
                s = s.clone()
                s[:, replace.to(s.device)] = c[:, : len(replace)]
            return torch.cat([s, c[:, appended]], dim=1) if appended else s

        return topk_items(
            score, seen, np.arange(len(idx)), k, max_batch_elements=self.max_batch_elements, device=self.model.device
        )

    def _ann_topk(
        self, idx: np.ndarray, k: int, seen: sp.csr_matrix, cold: list[ColdItem], cold_vec: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.users_vec is not None
        q = self.users_vec[torch.from_numpy(idx).to(self.users_vec.device)]
        base_seen = seen[:, : self.n_items].tolil()
        for c in cold:  # items served from their reviews are scored exactly below, never from the index
            if c.index < self.n_items:
                base_seen[:, c.index] = 1
        items, scores = self.index.search(q, k, base_seen.tocsr())
        if cold_vec is None:
            return items, scores
        c_idx = torch.tensor([c.index for c in cold], dtype=torch.long)
        c_scores = (q @ cold_vec.T).to(scores.dtype).cpu()
        blocked = torch.from_numpy(seen[:, c_idx.numpy()].toarray() > 0)
        c_scores = c_scores.masked_fill(blocked, float("-inf"))
        cand = torch.cat([items, c_idx.expand(len(idx), -1)], dim=1)
        cand_scores = torch.cat([scores, c_scores], dim=1)
        cand_scores = cand_scores.masked_fill(cand < 0, float("-inf"))
        order = torch.argsort(torch.where(cand < 0, torch.iinfo(torch.long).max, cand), dim=1, stable=True)
        cand, cand_scores = cand.gather(1, order), cand_scores.gather(1, order)
        top, top_scores = rank_scores(cand_scores, k)
        return cand.gather(1, top), top_scores

    def _frame(self, idx: np.ndarray, items: torch.Tensor, scores: torch.Tensor) -> pd.DataFrame:
        items_np, scores_np = items.cpu().numpy(), scores.cpu().double().numpy()
        keep = np.isfinite(scores_np) & (items_np >= 0)
        rows, ranks = np.nonzero(keep)
        served = np.asarray(self.served_item_ids(), dtype=object)
        users = np.asarray(self.user_ids, dtype=object)
        return pd.DataFrame(
            {
                "user": users[idx[rows]],
                "item": served[items_np[rows, ranks]],
                "rank": ranks + 1,
                "score": scores_np[rows, ranks],
            }
        )

    def ann_recall(self, k: int = 10, n_users: int = 1000, seed: int = 0) -> float:
        """recall@k of the approximate index against exact search, on ``n_users`` seeded users (seen excluded)."""
        assert self.users_vec is not None and self.items_vec is not None
        rng = np.random.default_rng(seed)
        n = len(self.user_ids)
        idx = np.sort(rng.choice(n, size=min(n, int(n_users)), replace=False))
        q = self.users_vec[torch.from_numpy(idx).to(self.users_vec.device)]
        seen = self.seen[idx]
        exact = ExactIndex(self.items_vec, self.max_batch_elements).search(q, k, seen)[0]
        approx = self.index.search(q, k, seen)[0]
        return recall_at_k(approx, exact, k)

    # -- item-item --------------------------------------------------------------------------------------------
    def _item_table(self) -> torch.Tensor | None:
        emb = self.items_vec
        if emb is None:
            emb = self.model.embeddings().get("items") if hasattr(self.model, "embeddings") else None
        return None if emb is None else losses.l2_normalize(emb.detach())

    def similar_items(self, item_id: Any, k: int = 10) -> pd.DataFrame:
        """The ``k`` items of highest cosine similarity to ``item_id`` (itself left out) as ``item, rank, score``."""
        if self.similar_vec is None:
            raise Unsupported(f"model {self.model_name} has no item embeddings")
        pos, _ = self.item(item_id)
        cold, cold_vec = self._extras()
        table = self.similar_vec
        if cold_vec is not None:
            table = table.clone()
            extra = losses.l2_normalize(cold_vec.to(table.device))
            for j, c in enumerate(cold):
                if c.index < self.n_items:
                    table[c.index] = extra[j]
            appended = [j for j, c in enumerate(cold) if c.index >= self.n_items]
            if appended:
                table = torch.cat([table, extra[appended]])
        own = sp.csr_matrix(([1.0], ([0], [pos])), shape=(1, table.shape[0]))
        items, scores = ExactIndex(table, self.max_batch_elements).search(table[pos : pos + 1], int(k), own)
        served = self.served_item_ids()
        items_np, scores_np = items[0].numpy(), scores[0].double().numpy()
        keep = np.isfinite(scores_np)
        return pd.DataFrame(
            {
                "item": [served[j] for j in items_np[keep]],
                "rank": np.arange(1, int(keep.sum()) + 1),
                "score": scores_np[keep],
            }
        )

    # -- text side --------------------------------------------------------------------------------------------
    def _need_text(self, what: str) -> None:
        if not self.has_text:
            raise Unsupported(f"{what} needs a model with a text tower (symcere); this run is {self.model_name}")

    def _fit_cold_map(self, seed: int) -> None:
        """Ridge map text tower -> scoring-space item vectors, fit on items with training interactions; its R^2
        in-sample and on a seeded fifth of those items held out."""
        if self.items_vec is None:
            return
        warm = torch.from_numpy(np.flatnonzero(self.n_train > 0))
        t = self._graph["item_text"].to(self.items_vec.device)
        x, y = t[warm], self.items_vec[warm]
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(warm)))
        held = perm[: max(1, len(warm) // 5)]
        fit = perm[len(held) :]
        held_r2 = float("nan")
        if len(fit) > x.shape[1] // 4:
            w_fit, _ = ridge_map(x[fit], y[fit])
            xh = torch.cat([x[held], torch.ones(len(held), 1, device=x.device, dtype=x.dtype)], dim=1)
            res = ((xh.double() @ w_fit.double() - y[held].double()) ** 2).sum()
            tot = ((y[held].double() - y[fit].double().mean(0)) ** 2).sum().clamp_min(1e-12)
            held_r2 = float(1 - res / tot)
        self.cold_map, r2 = ridge_map(x, y)
        self.cold_map_info = {"fit_items": len(warm), "r2": r2, "heldout_r2": held_r2}

    def _reviews_text(self, reviews: list[str]) -> str:
        from symcere.data.preprocess import TEXT_SEPARATOR

        text = TEXT_SEPARATOR.join(r.strip() for r in reviews if r.strip())
        return text[: self.text_budget] if self.text_budget else text

    def cold_start(self, reviews: list[str], k: int = 10, item: Any = None) -> dict[str, Any]:
        """Users ranked for an item known only by its ``reviews`` (``user, rank, score`` rows in ``users``); with
        ``item`` the item is served from then on (a new id, or a catalogue item without training interactions)."""
        self._need_text("cold start")
        if int(k) < 1:
            raise SymcereError(f"k must be >= 1, got {k}")
        if not reviews:
            raise SymcereError("reviews must hold at least one review text")
        text = self._reviews_text([str(r) for r in reviews])
        with self.explanations.lock:  # the encoder is shared with explanations
            t = self.model.embed_texts([text])
        scores = self.model.text_scores(torch.arange(len(self.user_ids), device=self.model.device), t).T
        top, top_scores = rank_scores(scores, int(k))
        users = [
            {"user": self.user_ids[int(u)], "rank": r + 1, "score": float(s)}
            for r, (u, s) in enumerate(zip(top[0].tolist(), top_scores[0].tolist(), strict=True))
        ]
        out: dict[str, Any] = {"users": users, "method": COLD_METHOD, "item": None, "added": False}
        if item is not None:
            out.update(self._add_cold(str(item), text, t[0]))
        out["catalogue_items"] = self.health()["items"]
        return out

    def _add_cold(self, item_id: str, text: str, t: torch.Tensor) -> dict[str, Any]:
        if self.cold_map is None:
            raise Unsupported(f"model {self.model_name} cannot place a cold item in its catalogue")
        with self.lock:
            known = self.item_pos.get(item_id)
            if known is not None and self.n_train[known] > 0:
                raise Conflict(
                    f"item {item_id!r} has {int(self.n_train[known])} training interactions: it is served from "
                    "its trained embedding, not from reviews"
                )
            prev = self.cold.get(item_id)
            if prev is None and len(self.cold) >= self.max_cold_items:
                raise Conflict(f"the server already serves {len(self.cold)} cold items (its limit)")
            if known is not None:
                index = known
            elif prev is not None:
                index = prev.index
            else:
                index = self.n_items + sum(c.index >= self.n_items for c in self.cold.values())
            x = torch.cat([t.to(self.cold_map.dtype), torch.ones(1, dtype=self.cold_map.dtype, device=t.device)])
            vector = (x.to(self.cold_map.device) @ self.cold_map).to(self.items_vec.dtype)
            self.cold[item_id] = ColdItem(item_id, index, text, t.detach(), vector.detach())
        return {
            "item": item_id,
            "added": True,
            "placement": "ridge map text tower -> item vectors",
            **self.cold_map_info,
        }

    def _build_loo(self, text: str) -> xp.LooTable:
        with torch.no_grad():
            return xp.loo_table(self.model.text_encoder(), self.model.text.proj, text)

    def item_text(self, pos: int, cold: ColdItem | None) -> str:
        if cold is not None:
            return cold.text
        texts = getattr(self.model.text, "texts", None)
        return str(texts[pos]) if texts is not None else str(self.dataset.item_texts[pos])

    def explain(self, user_id: Any, item_id: Any, n: int = 10) -> dict[str, Any]:
        """The ``n`` review words of the item whose removal most changes the user-item text similarity (exact
        leave-one-word-out) and the item's ``n`` anchor words; ``method`` and ``anchor_method`` say how."""
        self._need_text("explanations")
        u = self.user(user_id)
        pos, cold = self.item(item_id)
        text = self.item_text(pos, cold)
        key = ("cold", cold.item_id, hash(text)) if cold is not None else ("item", pos)
        table = self.explanations.get(key, text)
        dev = self.model.device
        sims = self.model.text_scores(torch.tensor([u], device=dev), table.embeddings)[0]
        weights = xp.loo_weights(sims)
        out: dict[str, Any] = {
            "user": self.user_ids[u],
            "item": str(item_id),
            "similarity": float(sims[0]),
            "method": xp.METHOD,
            "words": xp.top_words(table.words, weights, n),
            "words_tested": len(table.words),
            "words_in_text": table.n_words,
            "anchors": [],
            "anchor_method": xp.ANCHOR_METHOD,
        }
        if cold is None and self.n_train[pos] > 0:
            from symcere.analysis.anchoring import stop_words

            lo, hi = self.train_csc.indptr[pos], self.train_csc.indptr[pos + 1]
            item_users = torch.from_numpy(self.train_csc.indices[lo:hi].astype(np.int64))
            g_users, g_items = self._graph["users"], self._graph["items"]
            sphere = bool(getattr(self.model, "align_normalize", True))
            a = xp.anchor_vector(g_users, g_items, pos, item_users.to(g_users.device), sphere)
            t = table.embeddings.to(a.device)
            if sphere:
                a, t = losses.l2_normalize(a), losses.l2_normalize(t)
            a_weights = xp.loo_weights(t @ a)
            against = frozenset(w for w, v in zip(table.words, a_weights.tolist(), strict=True) if v <= 0)
            out["anchors"] = xp.top_words(table.words, a_weights, n, skip=stop_words() | against)
        return out
