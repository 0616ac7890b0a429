"""DGCLR: disentangled graph contrastive learning for review-based recommendation (SymCERE ref. [16]).

What the paper says (only its abstract was reachable: arXiv 2209.01524, "Disentangled Graph Contrastive
Learning for Review-based Recommendation", Ren, Zhang, Li, Fu, Ding, Cao, Wang, Zhou; listed as IJCAI 2023.
SymCERE's reference list gives other authors and CIKM '22 for the same title. No code was released.)
  (a) the distribution of every interaction over K latent factors is modelled from the semantic information
      of the reviews AND the structure of the user-item graph, giving K factor graphs;
  (b) factorised message passing on the factor graphs learns disentangled user / item representations;
  (c) per-factor predicted ratings are combined by an attention mechanism (the paper predicts ratings);
  (d) two factor-wise contrastive objectives, user/item level and interaction level, fight sparsity.

What is implemented here (every choice below is ours, not the paper's):
  * Embeddings of size ``model.dim`` split into K = ``model.factors`` channels of ``dim / K``.
  * Review side information: frozen sentence embeddings (``model.text_features``: ``text`` = the frozen
    encoder of the ``text`` section through ``symcere.text``; ``random`` = seeded Gaussian features for tests;
    ``none`` = ID only) of each item's text (``dataset.item_texts``, training reviews only) and of each
    user's document = the user's training reviews concatenated newest first (the encoder truncates to
    ``text.max_tokens``, so the most recent reviews are kept), capped at ``4 * text.max_tokens`` words.
    Features are L2-normalised; an empty text gets a zero vector. One learned linear map, shared by users and
    items, projects them to K channels: the review view ``r``. Per-interaction reviews are NOT encoded (cost).
  * (a) Factor graphs: every training interaction (u, i) gets a distribution p(u, i) over the K channels,
    ``softmax_k((sem_k + struct_k) / routing_tau)``: ``sem_k = cos(r_u^k, r_i^k)`` (review semantics) and
    ``struct_k`` the channel affinity of the graph representations. Iterative routing as in DGCF: per layer,
    iteration 0 uses ``struct = 0`` (DGCF starts uniform; here uniform + review prior), every later iteration
    ``struct_k = (cos(y_u^k, x_i^k) + cos(x_u^k, y_i^k)) / 2`` (DGCF's "updated head vs. ego tail" affinity,
    symmetrised so an undirected interaction has one distribution); ``model.routing_iters`` passes per layer.
    Gradients flow through the routing (as in DGCF / DisenGCN).
  * (b) Factorised propagation: channel k propagates on its own graph with weights
    ``p_k(u,i) / sqrt(d_k(u) d_k(i))``, ``d_k`` the p_k-weighted degree (DGCF's normalisation), linear as
    LightGCN (no transform, no non-linearity); layer 0 is ID embedding + review view (the fusion); output is
    the mean of the ``model.layers + 1`` layers (LightGCN, SymCERE Eq. 2).
  * (c) Score = dot product of the concatenated channels, i.e. the sum of per-factor scores with uniform
    weights: the paper's per-pair factor attention is dropped (full ranking stays one matmul). Trained for
    top-K ranking with ``loss.rec`` (BPR by default) instead of rating regression.
  * (d) ``cl_node``: user/item level, channel-aware InfoNCE (symmetric, in-batch negatives of the same channel)
    between channel k of the graph output and channel k of the review view, over the batch's distinct users
    and distinct positive items. ``cl_inter``: interaction level, same loss between the graph interaction
    feature ``z_u^k * z_i^k`` (element-wise) and the review one ``r_u^k * r_i^k`` over the batch's pairs.
    ``indep``: independence between channels, the mean squared cross-channel Pearson correlation of the
    batch's user and item outputs (a linear stand-in for DGCF's distance correlation, O(B d^2)).
    Both CL terms vanish when ``text_features`` is ``none``. Loss weights are untuned defaults.
  * ``routing`` holds the last layer's final (E, K) distribution (detached) for analyses and tests.
  * L2 ``train.reg`` applies to the ID embeddings only (not the text projection). Defaults: 4 factors,
    2 routing iterations (DGCF's), 2 layers; ``random`` features are 384-d, seeded by the config ``seed``.
Routing is differentiable, so each layer is gradient-checkpointed in training: activation memory is about
8 x (#interactions x dim) floats per layer instead of for all layers at once (~40 % more compute).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from symcere import losses
from symcere.models.base import Batch, EmbeddingRecommender
from symcere.schema import TextOptions

RANDOM_TEXT_DIM = 384  # MiniLM's hidden size, so ``random`` mimics the real feature shape


def user_documents(dataset: Any, max_words: int) -> list[str]:
    """Each user's training reviews joined newest first, capped at ``max_words`` words ("" without reviews)."""
    from symcere.text.tower import user_reviews

    return [" ".join(" ".join(reversed(docs)).split()[:max_words]) for docs in user_reviews(dataset)]


def _encode_frozen(texts: list[str], opts: TextOptions) -> torch.Tensor:
    """Frozen ``text.model`` embeddings of ``texts``, no grad, silent, offline."""
    from symcere.text import FrozenTextCache, quiet_hf

    with torch.no_grad(), quiet_hf():  # no masked views: every text is encoded once
        return FrozenTextCache(texts, opts, n_views=0, progress=False).base.float()


class DGCLR(EmbeddingRecommender):
    def __init__(
        self,
        dataset: Any,
        cfg: dict[str, Any],
        text_features: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        """``text_features``: optional (user (U, h), item (I, h)) frozen features overriding ``model.text_features``."""
        super().__init__(dataset, cfg)
        m, lc = cfg["model"], cfg.get("loss", {})
        dim, self.k = int(m["dim"]), int(m.get("factors", 4))
        if self.k < 1 or dim % self.k:
            raise ValueError(f"model.dim ({dim}) must be a positive multiple of model.factors ({self.k})")
        self.c, self.dim = dim // self.k, dim
        self.layers, self.iters = int(m.get("layers", 2)), max(1, int(m.get("routing_iters", 2)))
        self.routing_tau = float(m.get("routing_tau", 1.0))
        self.cl_weight, self.cl_inter_weight = float(lc.get("cl_weight", 0.1)), float(lc.get("cl_inter_weight", 0.05))
        self.cl_tau, self.indep_weight = float(lc.get("cl_tau", 0.2)), float(lc.get("indep_weight", 0.01))
        self.user_emb, self.item_emb = nn.Embedding(self.n_users, dim), nn.Embedding(self.n_items, dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        coo = dataset.matrix("train").tocoo()  # binary: one edge per distinct training interaction
        self.register_buffer("edge_u", torch.as_tensor(coo.row, dtype=torch.long), persistent=False)
        self.register_buffer("edge_i", torch.as_tensor(coo.col, dtype=torch.long) + self.n_users, persistent=False)
        feats = text_features if text_features is not None else self._text_features(dataset, cfg)
        self.proj: nn.Linear | None = None
        if feats is not None:
            fu, fi = (torch.as_tensor(f, dtype=torch.float32) for f in feats)
            if fu.shape[0] != self.n_users or fi.shape[0] != self.n_items or fu.shape[1] != fi.shape[1]:
                raise ValueError("text_features must be (n_users, h) and (n_items, h) tensors")
            self.register_buffer("user_text", fu, persistent=False)  # recomputed at construction, not saved
            self.register_buffer("item_text", fi, persistent=False)
            self.proj = nn.Linear(fu.shape[1], dim)
        self.routing: torch.Tensor | None = None

    # -- review side information -------------------------------------------------------------------------
    def _text_features(self, dataset: Any, cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        kind = str(cfg["model"].get("text_features", "text"))
        if kind == "none":
            return None
        if kind == "random":
            g = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
            feats = torch.randn(self.n_users + self.n_items, RANDOM_TEXT_DIM, generator=g)
            return feats[: self.n_users], feats[self.n_users :]
        if kind != "text":
            raise ValueError(f"model.text_features must be text, random or none; got {kind!r}")
        opts = TextOptions(**cfg["text"])
        texts = [*user_documents(dataset, 4 * opts.max_tokens), *dataset.item_texts]
        emb = F.normalize(_encode_frozen(texts, opts), dim=1)
        emb = emb * torch.tensor([bool(t.strip()) for t in texts], dtype=emb.dtype).unsqueeze(1)
        return emb[: self.n_users], emb[self.n_users :]

    def review_view(self, users: torch.Tensor | None = None, items: torch.Tensor | None = None):
        """Projected review features (n, K, c) of ``users`` and ``items`` (all when None); None without text."""
        if self.proj is None:
            return None
        fu = self.user_text if users is None else self.user_text[users]
        fi = self.item_text if items is None else self.item_text[items]
        return self.proj(fu).view(-1, self.k, self.c), self.proj(fi).view(-1, self.k, self.c)

    # -- disentangled propagation ------------------------------------------------------------------------
    def _affinity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(E, K) channel-wise cosine between node tensors ``a`` at users and ``b`` at items of each edge."""
        return (F.normalize(a, dim=-1)[self.edge_u] * F.normalize(b, dim=-1)[self.edge_i]).sum(-1)

    def _factor_propagate(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """One hop on the K factor graphs: channel k uses weights p_k / sqrt(d_k(u) d_k(i))."""
        u, i = self.edge_u, self.edge_i
        deg = torch.zeros(x.shape[0], self.k, dtype=x.dtype, device=x.device).index_add(0, u, p).index_add(0, i, p)
        inv = torch.where(deg > 0, deg.clamp_min(1e-12).rsqrt(), torch.zeros_like(deg))
        w = (p * inv[u] * inv[i]).unsqueeze(-1)  # (E, K, 1)
        return torch.zeros_like(x).index_add(0, u, w * x[i]).index_add(0, i, w * x[u])

    def _route(self, x: torch.Tensor, sem: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer: ``routing_iters`` rounds of (edge-factor distribution, factorised propagation)."""
        prior = sem if sem is not None else torch.zeros(len(self.edge_u), self.k, dtype=x.dtype, device=x.device)
        p = torch.softmax(prior / self.routing_tau, dim=1)
        y = self._factor_propagate(x, p)
        for _ in range(self.iters - 1):
            struct = 0.5 * (self._affinity(y, x) + self._affinity(x, y))
            p = torch.softmax((prior + struct) / self.routing_tau, dim=1)
            y = self._factor_propagate(x, p)
        return y, p

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.user_emb.weight, self.item_emb.weight]).view(-1, self.k, self.c)
        sem = None
        rv = self.review_view()
        if rv is not None:
            r = torch.cat(rv)
            x, sem = x + r, self._affinity(r, r)
        total = x
        for _ in range(self.layers):
            if torch.is_grad_enabled() and self.training:  # recompute in backward: one layer's edges in memory
                x, p = checkpoint(self._route, x, sem, use_reentrant=False)
            else:
                x, p = self._route(x, sem)
            total = total + x
            self.routing = p.detach()
        out = (total / (self.layers + 1)).reshape(-1, self.dim)
        return out[: self.n_users], out[self.n_users :]

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb(users), self.item_emb(items)

    # -- objectives ---------------------------------------------------------------------------------------
    def _channel_nce(self, g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Mean over channels of the symmetric InfoNCE between channel k of ``g`` and of ``r`` (n, K, c)."""
        n = losses.l2_normalize
        return losses.symmetric_info_nce(n(g).transpose(0, 1), n(r).transpose(0, 1), self.cl_tau)  # (K, n, c)

    def _independence(self, z: torch.Tensor) -> torch.Tensor:
        """Mean squared Pearson correlation between dimensions of different channels over rows of z (n, K, c)."""
        if z.shape[0] < 2:
            return z.sum() * 0.0
        x = z.reshape(z.shape[0], -1)
        x = x - x.mean(0, keepdim=True)
        x = x / x.norm(dim=0, keepdim=True).clamp_min(1e-8)
        ch = torch.arange(self.dim, device=z.device) // self.c
        return (x.T @ x)[ch.unsqueeze(0) != ch.unsqueeze(1)].pow(2).mean()

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users_all, items_all = self.final_embeddings()
        users, pos = batch["users"], batch["pos"]
        terms = self.rec_loss_terms(users_all[users], items_all, batch)
        if self.reg > 0:
            terms["reg"] = self.reg_loss(batch)
        uu, ui = torch.unique(users), torch.unique(pos)
        zu, zi = users_all[uu].view(-1, self.k, self.c), items_all[ui].view(-1, self.k, self.c)
        if self.proj is not None and self.cl_weight > 0:
            ru, ri = self.review_view(uu, ui)
            terms["cl_node"] = self.cl_weight * 0.5 * (self._channel_nce(zu, ru) + self._channel_nce(zi, ri))
        if self.proj is not None and self.cl_inter_weight > 0:
            gu, gi = users_all[users].view(-1, self.k, self.c), items_all[pos].view(-1, self.k, self.c)
            tu, ti = self.review_view(users, pos)
            terms["cl_inter"] = self.cl_inter_weight * self._channel_nce(gu * gi, tu * ti)
        if self.indep_weight > 0:
            terms["indep"] = self.indep_weight * self._independence(torch.cat([zu, zi]))
        terms["total"] = sum(terms.values())
        return terms

    def embeddings(self) -> dict[str, torch.Tensor]:
        out = super().embeddings()
        rv = self.review_view()
        if rv is not None:
            out["user_review"], out["item_review"] = (r.detach().reshape(r.shape[0], -1) for r in rv)
        return out


__all__ = ["DGCLR", "user_documents"]
