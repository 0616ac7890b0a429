"""SymCERE (symcere.md section 3): a graph encoder and a text encoder aligned on the unit hypersphere.

Per batch of B training interactions ``(u_a, i_a)`` with sampled negatives ``j_a``::

    g_u, g_i   = graph encoder (LightGCN Eq. 1-2, or NGCF) on the training graph      (section 3.1.1)
    g_ui       = (g_u + g_i) / 2
    t_i        = W f_text(text_i) + b                                                  (section 3.1.2)
    hat(x)     = x / |x|                                                               (Eq. 3)
    L_cross    = (L_G->T + L_T->G) / 2, symmetric SINCERE on hat(g_ui), hat(t_i)       (Eq. 6-9)
    L_intra    = InfoNCE(hat(g_ui), hat(g'_ui)) + InfoNCE(hat(t_i), hat(t'_i))         (Eq. 10-11)
    L_rank     = BPR on hat(g_u), hat(g_i), hat(g_j)                                   (Eq. 12)
    L          = cross_weight * L_cross + alpha * L_intra + beta * L_rank + reg        (Eq. 13)

Beyond the paper, ``loss.user_weight > 0`` adds ``user_weight * L_user``: p_u = W mean(f_text(r)) over the user's
own training reviews r (frozen encoder, the same W as t_i), and L_user the symmetric InfoNCE of hat(g_u) and
hat(p_u) over the batch's distinct users with reviews (each user has one profile, so there is no false
negative for SINCERE to mask and Eq. 7-9 reduce to Eq. 4).

Where the paper is silent:

- ``W`` projects the text size (384 for MiniLM) to the graph size.
- False negatives (Eq. 7-8): graph->text drops b for anchor a when i_b == i_a or i_b is in u_a's training
  history; text->graph uses the transposed relation (``losses.symmetric_masks``).
- g' is an edge-dropout view of the training graph (``views``), t' a word-masked text (``text.mask_*``); the
  text InfoNCE runs over the batch's distinct items (copies of one item would be false negatives). Both are
  drawn from generators seeded by ``(seed, epoch)``, so a run resumed at an epoch boundary repeats them.
- ``loss.bpr_reduction=mean`` averages Eq. 12 over the batch (``sum`` is Eq. 12 as written).
- ``model.rank_normalize=false`` keeps BPR and the score on the raw dot product (the default preset), while
  every alignment loss stays on the hypersphere; ``model.normalize=false`` is the "w/o Norm" ablation.
- ``reg`` is the base class's L2 on the batch's zero-th layer (LightGCN's), so with ``cross_weight=0``,
  ``alpha=0``, ``beta=1`` and ``rank_normalize=false`` SymCERE is LightGCN exactly.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from symcere import losses
from symcere.models.base import Batch, EmbeddingRecommender
from symcere.models.graph import build_graph_encoder, edge_dropout, normalized_adjacency
from symcere.schema import TextOptions


class SymCERE(EmbeddingRecommender):
    """Graph encoder + text tower trained with Eq. 13."""

    def __init__(
        self,
        dataset: Any,
        cfg: dict[str, Any],
        text_tower: nn.Module | None = None,
        progress: bool = True,
        user_text: torch.Tensor | None = None,
    ):
        super().__init__(dataset, cfg)
        m, lo = cfg["model"], cfg["loss"]
        self.align_normalize = bool(m["normalize"])  # Eq. 3 before every alignment loss
        self.normalize = self.align_normalize and bool(m["rank_normalize"])  # Eq. 12 and the score
        self.cross, self.cross_tau, self.intra_tau = str(lo["cross"]), float(lo["cross_tau"]), float(lo["intra_tau"])
        self.cross_weight, self.alpha, self.beta = float(lo["cross_weight"]), float(lo["alpha"]), float(lo["beta"])
        self.bpr_reduction = str(lo["bpr_reduction"])
        self.user_weight = float(lo["user_weight"])
        self.edge_drop, self.view_every = float(cfg["views"]["edge_dropout"]), str(cfg["views"]["every"])
        self.encoder = build_graph_encoder(
            m["backbone"], self.n_users, self.n_items, int(m["dim"]), int(m["layers"]), float(m["message_dropout"])
        )
        self.register_graph(dataset)
        self.history = losses.UserHistory.from_scipy(dataset.matrix("train"))
        self.seed, self.epoch = int(cfg["seed"]), 0
        if text_tower is None:
            text_tower = self.build_text_tower(dataset, cfg, self.encoder.out_dim, progress)
        self.text = text_tower
        if self.user_weight > 0:  # (n_users, hidden) pre-projection profiles, rebuilt (cached) at construction
            if user_text is None:
                user_text = self.build_user_profiles(dataset, cfg, progress)
            self.register_buffer("user_text", user_text.float(), persistent=False)
            self.register_buffer("user_has_text", user_text.abs().sum(1) > 0, persistent=False)
        self.text_lr = cfg["text"]["lr"]
        self.view_adj: torch.Tensor | None = None
        self._rng = np.random.default_rng([self.seed, 0, 0])

    @staticmethod
    def build_text_tower(dataset: Any, cfg: dict[str, Any], out_dim: int, progress: bool = True) -> nn.Module:
        """The text tower of section 3.1.2 over the dataset's item texts (training reviews only)."""
        from symcere.text import TextTower, item_texts, quiet_hf

        t = cfg["text"]
        texts = item_texts(dataset, bool(t["shuffle_items"]), int(cfg["seed"]))
        n_views = int(t["n_views"]) if float(cfg["loss"]["alpha"]) > 0 else 0  # views only feed Eq. 11
        with contextlib.nullcontext() if progress else quiet_hf():
            return TextTower(
                texts, out_dim, TextOptions(**t), n_views=n_views, seed=int(cfg["seed"]), progress=progress
            )

    @staticmethod
    def build_user_profiles(dataset: Any, cfg: dict[str, Any], progress: bool = True) -> torch.Tensor:
        """Each user's mean frozen embedding of their own training reviews (pooled as ``review_mean`` pools an
        item's) -> (n_users, hidden); zeros for a user without review text. Every review is embedded once and
        kept in the review store (``symcere.text.cache``), where the item tables' reviews already are. With
        ``text.shuffle_items`` the profiles are permuted across users too (the control has no true text)."""
        import dataclasses

        from symcere.data.preprocess import TEXT_SEPARATOR
        from symcere.text import FrozenTextCache, quiet_hf, user_reviews

        per_user = user_reviews(dataset)
        t = cfg["text"]
        opts = dataclasses.replace(TextOptions(**t), mode="frozen", item_pooling="review_mean")
        has = [bool(p) for p in per_user]
        texts = [TEXT_SEPARATOR.join(p) for p in per_user if p]
        with contextlib.nullcontext() if progress else quiet_hf():
            cache = FrozenTextCache(texts, opts, n_views=0, seed=int(cfg["seed"]), progress=progress)
        dev = cache.base.device
        out = torch.zeros(dataset.n_users, cache.hidden_size, device=dev)
        out[torch.tensor(has, dtype=torch.bool, device=dev)] = cache.base.float()
        if bool(t["shuffle_items"]):
            perm = np.random.default_rng([int(cfg["seed"]), 8]).permutation(dataset.n_users)
            out = out[torch.from_numpy(perm).to(dev)]
        return out

    # -- optimisation --------------------------------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Graph parameters at ``train.lr``, text-tower parameters at ``text.lr`` (default: the same)."""
        text_ids = {id(p) for p in self.text.parameters()}
        graph = [p for p in self.parameters() if id(p) not in text_ids and p.requires_grad]
        text = [p for p in self.text.parameters() if p.requires_grad]
        return [{"params": graph, "lr": lr}, {"params": text, "lr": float(self.text_lr or lr)}]

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._rng = np.random.default_rng([self.seed, self.epoch, 0])
        self.text.reseed([self.seed, self.epoch, 1])
        if self.alpha > 0 and self.view_every == "epoch":
            self._new_view()

    def _new_view(self) -> None:
        u, i = edge_dropout(self.train_users, self.train_items, self.edge_drop, self._rng)
        self.view_adj = normalized_adjacency(self.n_users, self.n_items, u, i, self.adj.device)

    def _sphere(self, x: torch.Tensor) -> torch.Tensor:
        return losses.l2_normalize(x) if self.align_normalize else x

    # -- the graph side (base class: scoring, eval cache, regulariser) ---------------------------------------
    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self.adj)

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.user_emb(users), self.encoder.item_emb(items)

    # -- Eq. 13 ---------------------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, pos = batch["users"], batch["pos"]
        g_users, g_items = self.propagate()
        g_u, g_i = g_users[users], g_items[pos]
        terms: dict[str, torch.Tensor] = {}
        bpr = self.rec_loss_terms(g_u, g_items, batch)["bpr"]  # Eq. 12 (mean over the batch), LightGCN's code
        terms["rank"] = self.beta * (bpr * len(users) if self.bpr_reduction == "sum" else bpr)

        anchor = (g_u + g_i) / 2  # g_ui, section 3.1.1
        items, item_of = torch.unique(pos, return_inverse=True)  # each distinct item's text embedded once
        t_items = self.text(items) if self.cross_weight > 0 or self.alpha > 0 else None
        if t_items is not None:
            g, t = self._sphere(anchor), self._sphere(t_items)
            if self.cross == "sincere":  # Eq. 7-9 over the distinct items: (B, U) instead of (B, B), same loss
                excluded = self.history.excluded_flat(users, pos, items)
                cross = losses.symmetric_sincere_items(g, t, item_of, excluded, self.cross_tau)
            else:
                cross = losses.cross_modal_loss(self.cross, g, t[item_of], None, self.cross_tau)
            terms["cross"] = self.cross_weight * cross  # Eq. 6-9
        if self.alpha > 0:
            terms["intra"] = self.alpha * (self._graph_intra(users, pos, anchor) + self._text_intra(items, t_items))
        if self.user_weight > 0:
            terms["user"] = self.user_weight * self._user_align(users, g_users)
        if self.reg > 0:
            terms["reg"] = self.reg_loss(batch)
        terms["total"] = sum(terms.values())
        return terms

    def _graph_intra(self, users: torch.Tensor, pos: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """Eq. 10 on the graph side: g_ui against the same interaction in the edge-dropout view."""
        if self.view_every == "step" or self.view_adj is None:
            self._new_view()
        vu, vi = self.encoder(self.view_adj)
        return losses.info_nce(self._sphere(anchor), self._sphere((vu[users] + vi[pos]) / 2), self.intra_tau)

    def _user_align(self, users: torch.Tensor, g_users: torch.Tensor) -> torch.Tensor:
        """L_user: symmetric InfoNCE of hat(g_u) and hat(p_u) over the batch's distinct users with reviews."""
        uu = torch.unique(users)
        uu = uu[self.user_has_text[uu]]
        if len(uu) < 2:
            return torch.zeros((), device=users.device)
        w = self.text.proj.weight
        p = self.text.proj(self.user_text[uu].to(dtype=w.dtype))
        return losses.cross_modal_loss("infonce", self._sphere(g_users[uu]), self._sphere(p), None, self.cross_tau)

    def _text_intra(self, items: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Eq. 11: each distinct item's text ``t`` against its word-masked view."""
        if len(items) < 2:
            return torch.zeros((), device=items.device)
        return losses.info_nce(self._sphere(t), self._sphere(self.text(items, view=True)), self.intra_tau)

    # -- the text side at inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def text_scores(self, users: torch.Tensor, item_text: torch.Tensor | None = None) -> torch.Tensor:
        """``<hat(g_u), hat(t_i)>`` (B, n): users against projected item texts (``item_text`` (n, dim); default
        every catalogue item's). Ranks items by their reviews alone, so items without interactions too."""
        g_users, _ = self.final_embeddings()
        t = self.text.all_items() if item_text is None else item_text.to(self.device)
        return self._sphere(g_users[users.to(self.device)]) @ self._sphere(t).T

    def text_encoder(self) -> Any:
        """The tower's f_text as a live ``symcere.text.TextEncoder`` on the model's device: the tower's own (lora /
        full), or for a frozen tower (which holds only cached catalogue embeddings) one built from ``text.opts``
        on first use. It is kept outside the module tree: neither ``state_dict`` nor ``.to()`` sees it."""
        own = getattr(self.text, "encoder", None)
        if own is not None:
            return own
        enc = self.__dict__.get("_live_text_encoder")
        if enc is None:
            from symcere.text import TextEncoder, quiet_hf

            with quiet_hf():
                enc = TextEncoder(self.text.opts)
            object.__setattr__(self, "_live_text_encoder", enc)
        return enc.to(self.device)

    @torch.no_grad()
    def embed_texts(self, texts: list[str], batch_size: int | None = None) -> torch.Tensor:
        """Projected text embeddings ``t = W f_text(text) + b`` (section 3.1.2) of any texts, e.g. the reviews of
        an item the model never saw -> (n, dim) on the model's device; ``text_scores`` ranks users by them."""
        h = self.text_encoder().encode(list(texts), batch_size=batch_size)
        w = self.text.proj.weight
        return self.text.proj(h.to(device=w.device, dtype=w.dtype))

    def embeddings(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            out = super().embeddings()
            out["item_text"] = self.text.all_items()
        return out
