"""SymCERE (symcere.md section 3): a graph encoder and a text encoder aligned on the unit hypersphere.

Per batch of B training interactions ``(u_a, i_a)`` (plus sampled negatives ``j_a``)::

    g_u, g_i   = graph encoder (LightGCN Eq. 1-2, or NGCF) on the training graph
    g_ui       = (g_u + g_i) / 2                                     (section 3.1.1)
    t_i        = W * f_text(text_i) + b                              (section 3.1.2; W: our projection)
    hat(.)     = x / |x|                                             (Eq. 3; ``model.normalize``)
    L_cross    = (L_G->T + L_T->G) / 2   symmetric SINCERE           (Eq. 6-9; ``loss.cross``)
    L_intra    = InfoNCE(g, g') + InfoNCE(t, t')                      (Eq. 10-11)
    L_rank     = BPR on hat(g_u), hat(g_i), hat(g_j)                  (Eq. 12; or ``loss.rec=ssm``)
    L          = cross_weight * L_cross + alpha * L_intra + beta * L_rank (+ reg)   (Eq. 13)

Choices where the paper is silent (each a config key):

- The text embedding size (e.g. 384) differs from the graph size (64): a learned linear projection maps
  it to the graph size (``W`` above); the paper leaves this implicit.
- False-negative masks (Eq. 7-8): graph->text excludes b for anchor a when i_b == i_a or i_b is in u_a's
  training history; text->graph uses the transposed relation (``losses.symmetric_masks``). With
  ``model.align=item`` the anchors are item nodes and only same-item pairs are masked.
- Graph view g': edge dropout of the training graph (``loss.edge_dropout``), re-drawn each epoch or step
  from a generator seeded by ``(seed, epoch)`` (and the text tower's view generator is re-seeded by
  ``(seed, epoch)`` at each epoch start), so a run resumed at an epoch boundary repeats the same views.
  Text view t': word masking of the item text (``text.mask_strategy``; dropping words keeps mean-pooled
  embeddings meaningful, literal mask tokens do not). The text InfoNCE runs over the batch's DISTINCT
  items: a batch of interactions repeats popular items, and identical copies would be false negatives.
- Eq. 12 is written as a sum over triples; ``loss.bpr_reduction=mean`` (default) averages over the batch,
  which divides the effective beta by the batch size compared with ``sum``.
- Temperatures, batch size and learning rates are not given in the paper; ours are in the YAML.
- Scoring: cosine of the user's and the item's graph embeddings (``model.score=graph``); ``fused`` adds
  ``fuse_weight * cos(g_u, t_i)``; ``text`` ranks by ``cos(g_u, t_i)`` alone, which can rank items with
  reviews but no training interactions (cold start). ``model.popularity_prior`` (gamma)
  turns the score into ``cos / loss.rec_tau + gamma * log(1 + training degree)``: logit adjustment, putting
  back at ranking time the popularity that normalisation removed.
- Item text (hypothesis 4 of the study): ``text.item_pooling=concat`` embeds the item's concatenated training
  reviews cut at ``text.max_tokens``; ``review_mean`` averages per-review embeddings. ``text.shuffle_items``
  is a negative control that permutes texts across items.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from symcere import losses
from symcere.models.base import Recommender, training_graph
from symcere.models.graph import build_graph_encoder, edge_dropout, normalized_adjacency
from symcere.models.packaged import default_cache_dir
from symcere.models.text import TextEncoderConfig, TextTower, quiet_hf


def text_config(section: dict[str, Any]) -> TextEncoderConfig:
    """The ``text:`` config section as a ``TextEncoderConfig``."""
    keys = (
        "model",
        "pooling",
        "max_tokens",
        "mode",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_targets",
        "mask_strategy",
        "mask_rate",
        "bf16",
        "item_pooling",
    )
    cfg = TextEncoderConfig(**{k: section[k] for k in keys if k in section})
    cfg.cache_dir = section.get("cache_dir") or default_cache_dir()
    return cfg


def item_texts(dataset: Any, shuffle: bool = False, seed: int = 0) -> list[str]:
    """The items' texts; ``shuffle=True`` is the negative control ``text.shuffle_items``: item i gets the text
    of item perm(i) (a seeded random permutation: about one item keeps its own text by chance), so the text
    distribution is unchanged but texts no longer describe their items. A gain that survives it is
    regularisation, not review content."""
    texts = list(dataset.item_texts)
    if not shuffle:
        return texts
    perm = np.random.default_rng([seed, 7]).permutation(len(texts))
    return [texts[j] for j in perm]


class SymCERE(Recommender):
    """Graph encoder + text tower trained with Eq. 13 (see the module docstring for every choice)."""

    def __init__(
        self, dataset: Any, cfg: dict[str, Any], text_tower: nn.Module | None = None, progress: bool = True
    ):
        super().__init__(dataset, cfg)
        m, t, lo = cfg["model"], cfg["text"], cfg["loss"]
        self.normalize = bool(m["normalize"])
        self.rank_normalize = bool(m.get("rank_normalize", True))
        self.align, self.score_mode = m["align"], m["score"]
        self.fuse_weight, self.prior = float(m["fuse_weight"]), float(m["popularity_prior"])
        self.lo = lo
        for key, allowed in (("align", ("interaction", "item")), ("score", ("graph", "fused", "text"))):
            if m[key] not in allowed:
                raise ValueError(f"model.{key} must be one of {allowed}, got {m[key]!r}")
        if lo["rec"] not in ("bpr", "ssm"):
            raise ValueError(f"loss.rec must be bpr or ssm for symcere, got {lo['rec']!r}")
        self.num_negatives = 1 if lo["rec"] == "bpr" else 0
        self.encoder = build_graph_encoder(
            m["backbone"],
            self.n_users,
            self.n_items,
            int(cfg["model"]["dim"]),
            int(m["layers"]),
            float(m.get("message_dropout", 0.0)),
        )
        self.train_users, self.train_items, self.adj = training_graph(dataset)
        self.view_adj: torch.Tensor | None = None
        self.history = losses.UserHistory.from_scipy(dataset.matrix("train"))
        degree = np.bincount(self.train_items, minlength=self.n_items).astype(np.float32)
        self.register_buffer("log_degree", torch.from_numpy(np.log1p(degree)), persistent=False)
        if text_tower is None:
            with contextlib.nullcontext() if progress else quiet_hf():
                text_tower = TextTower(
                    item_texts(dataset, bool(t.get("shuffle_items", False)), int(cfg["seed"])),
                    self.encoder.out_dim,
                    text_config(t),
                    n_views=int(t["n_views"]) if float(lo["alpha"]) > 0 else 0,  # views only feed Eq. 11
                    seed=int(cfg["seed"]),
                    progress=progress,
                )
        self.text = text_tower
        self.text_lr = t.get("lr")
        # optional: frozen text features added to the items' zero-th graph layer (study hypothesis 6)
        self.text_in_graph = bool(m.get("text_in_graph", False))
        if self.text_in_graph:
            # frozen-encoder embeddings (from the cache, or computed once here in lora / full mode)
            feats = getattr(getattr(self.text, "cache", None), "base", None)
            if feats is None:
                with torch.no_grad():
                    feats = self.text.all_items().detach()
            self.register_buffer("item_text_features", losses.l2_normalize(feats.float()), persistent=False)
            self.text_feature_proj = nn.Linear(feats.shape[1], int(m["dim"]), bias=False)
            nn.init.zeros_(self.text_feature_proj.weight)
        self.seed = int(cfg["seed"])
        self._rng = np.random.default_rng([self.seed, 0, 0])
        self.epoch = 0
        self._eval_cache: tuple[torch.Tensor, ...] | None = None

    # -- optimisation --------------------------------------------------------------------------------------
    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        text_params = {id(p) for p in self.text.parameters()}
        graph = [p for p in self.parameters() if id(p) not in text_params and p.requires_grad]
        text = [p for p in self.text.parameters() if p.requires_grad]
        return [{"params": graph, "lr": lr}, {"params": text, "lr": float(self.text_lr or lr)}]

    def train(self, mode: bool = True) -> SymCERE:
        self._eval_cache = None
        return super().train(mode)

    def on_epoch_start(self, epoch: int) -> None:
        # Random state that lives in the model is derived from (seed, epoch): the trainer checkpoints its own
        # generators at epoch ends, and a resumed run must draw the same graph and text views.
        self.epoch = int(epoch)
        self._rng = np.random.default_rng([self.seed, self.epoch, 0])
        if isinstance(getattr(self.text, "_rng", None), np.random.Generator):
            self.text._rng = np.random.default_rng([self.seed, self.epoch, 1])
        if self.lo["view_every"] == "epoch":
            self._new_view()

    def _new_view(self) -> None:
        u, i = edge_dropout(self.train_users, self.train_items, float(self.lo["edge_dropout"]), self._rng)
        self.view_adj = normalized_adjacency(self.n_users, self.n_items, u, i)

    def _graph(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Graph encoder output (Eq. 1-2) on ``adj``, with the text features when ``model.text_in_graph``."""
        extra = self.text_feature_proj(self.item_text_features) if self.text_in_graph else None
        return self.encoder(adj, extra)

    def _rank_norm(self, x: torch.Tensor) -> torch.Tensor:
        """Normalisation of the ranking term and the graph score: ``model.rank_normalize=false`` keeps the raw
        dot product there (magnitude, i.e. popularity, stays a ranking signal) while every alignment loss
        still works on the hypersphere."""
        return self._norm(x) if self.rank_normalize else x

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return losses.l2_normalize(x) if self.normalize else x

    # -- Eq. 13 ---------------------------------------------------------------------------------------------
    def loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        users, pos = batch["users"], batch["pos"]
        lo = self.lo
        g_users, g_items = self._graph(self.adj)
        g_u, g_i = g_users[users], g_items[pos]
        terms: dict[str, torch.Tensor] = {}

        # ranking term (Eq. 12) on the normalised graph embeddings
        if lo["rec"] == "bpr":
            g_j = g_items[batch["neg"][:, 0]]
            pos_s = (self._rank_norm(g_u) * self._rank_norm(g_i)).sum(-1)
            neg_s = (self._rank_norm(g_u) * self._rank_norm(g_j)).sum(-1)
            terms["rank"] = float(lo["beta"]) * losses.bpr_loss(pos_s, neg_s, reduction=lo["bpr_reduction"])
        else:
            # exclude in-batch items the user already interacted with, copies of the positive included (they
            # are not negatives); the positive itself (the diagonal) always stays in sampled_softmax
            mask = self.history.contains(users, pos) if lo["rec_mask"] else None
            terms["rank"] = float(lo["beta"]) * losses.sampled_softmax(
                g_u, g_i, float(lo["rec_tau"]), exclude_mask=mask, normalize=True
            )

        warmup = int(lo["warmup_epochs"])
        if warmup <= 0 or self.epoch > warmup:
            # cross-modal alignment (Eq. 6-9)
            t_i = self.text(pos)
            if self.align == "interaction":
                anchor = (g_u + g_i) / 2
                masks = losses.symmetric_masks(users, pos, self.history) if lo["cross"] == "sincere" else None
            else:
                anchor = g_i
                same = losses.same_item_mask(pos) & ~torch.eye(len(pos), dtype=torch.bool)
                masks = (same, same) if lo["cross"] == "sincere" else None
            if lo["cross"] == "supcon":
                masks = losses.same_item_mask(pos)
            cross = losses.cross_modal_loss(lo["cross"], self._norm(anchor), self._norm(t_i), masks, float(lo["tau"]))
            terms["cross"] = float(lo["cross_weight"]) * cross

            # intra-modal InfoNCE (Eq. 10-11)
            if float(lo["alpha"]) > 0:
                terms["intra"] = float(lo["alpha"]) * (
                    self._graph_intra(users, pos, anchor, g_users, g_items) + self._text_intra(pos)
                )
        if self.cfg["train"].get("reg", 0):
            eu, ei = self.encoder.user_emb(users), self.encoder.item_emb(pos)
            terms["reg"] = 0.5 * float(self.cfg["train"]["reg"]) * (eu.pow(2).sum() + ei.pow(2).sum()) / len(users)
        terms["total"] = sum(terms.values())
        return terms

    def _graph_intra(
        self, users: torch.Tensor, pos: torch.Tensor, anchor: torch.Tensor, gu: torch.Tensor, gi: torch.Tensor
    ) -> torch.Tensor:
        if self.lo["view_every"] == "step" or self.view_adj is None:
            self._new_view()
        vu, vi = self._graph(self.view_adj)
        tau = float(self.lo["intra_tau"])
        if self.lo["intra_graph"] == "interaction":
            view = (vu[users] + vi[pos]) / 2 if self.align == "interaction" else vi[pos]
            return losses.info_nce(self._norm(anchor), self._norm(view), tau)
        uu, ui = torch.unique(users), torch.unique(pos)
        return losses.info_nce(self._norm(gu[uu]), self._norm(vu[uu]), tau) + losses.info_nce(
            self._norm(gi[ui]), self._norm(vi[ui]), tau
        )

    def _text_intra(self, pos: torch.Tensor) -> torch.Tensor:
        items = torch.unique(pos)
        if len(items) < 2:
            return torch.zeros((), dtype=torch.float32)
        return losses.info_nce(
            self._norm(self.text(items)), self._norm(self.text(items, view=True)), float(self.lo["intra_tau"])
        )

    # -- scoring ----------------------------------------------------------------------------------------------
    def _tables(self) -> tuple[torch.Tensor, ...]:
        if self._eval_cache is not None and not self.training:
            return self._eval_cache
        with torch.no_grad():
            gu, gi = self._graph(self.adj)
            ti = self.text.all_items() if self.score_mode != "graph" else None
        tables = (gu, gi, ti) if ti is not None else (gu, gi)
        if not self.training:
            self._eval_cache = tables
        return tables

    def score(self, users: torch.Tensor) -> torch.Tensor:
        tables = self._tables()
        gu = self._rank_norm(tables[0][users])
        scores = torch.zeros(len(users), self.n_items)
        if self.score_mode in ("graph", "fused"):
            scores = scores + gu @ self._rank_norm(tables[1]).T
        if self.score_mode in ("fused", "text"):
            w = self.fuse_weight if self.score_mode == "fused" else 1.0
            scores = scores + w * (gu @ self._norm(tables[2]).T)
        if self.prior:  # logit adjustment: the prior is added to the temperature-scaled cosine logits
            scores = scores / float(self.lo["rec_tau"]) + self.prior * self.log_degree
        return scores

    def embeddings(self) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            gu, gi = self._graph(self.adj)
            return {"users": gu, "items": gi, "item_text": self.text.all_items()}
