"""The interface every recommender implements, and the shared embedding-model machinery.

``Recommender.loss(batch)`` returns named loss components plus ``"total"``; ``score(users)`` returns
(B, n_items) scores (higher is better) for the full-ranking evaluator. ``EmbeddingRecommender`` covers every
model that ends in one user and one item vector (MF, LightGCN, NGCF, SGL, SymCERE's graph side): the
recommendation loss is chosen by ``loss.rec`` (sampled-softmax paper, section 2: ``bpr``, ``bce``, ``ssm``,
``sm``), scoring is the dot product, or the cosine when ``model.normalize`` is true.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from symcere import losses
from symcere.models.graph import cached_adjacency

Batch = dict[str, torch.Tensor]


class Recommender(nn.Module):
    """Base class: built as ``Model(dataset, cfg)``."""

    #: how many negatives per positive the sampler must provide (0 = none)
    num_negatives: int = 1

    def __init__(self, dataset: Any, cfg: dict[str, Any]):
        super().__init__()
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.cfg = cfg
        self.num_negatives = int(cfg["train"]["num_negatives"])

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (and of every tensor it creates)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def score(self, users: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for per-epoch work (e.g. a new augmented graph view)."""

    def embeddings(self) -> dict[str, torch.Tensor]:
        """Named embedding tables for the analyses (e.g. ``users``, ``items``)."""
        return {}


def training_graph(dataset: Any) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """The dataset's training edges and their normalised adjacency (cached per dataset, on the CPU: a model
    registers it as a buffer, so that it moves with the model)."""
    users, items = dataset.split_arrays("train")
    key = str(dataset.meta.get("content_hash", id(dataset)))
    return users, items, cached_adjacency(key, dataset.n_users, dataset.n_items, users, items)


class EmbeddingRecommender(Recommender):
    """A recommender whose final representations are one vector per user and per item.

    Subclasses implement ``propagate() -> (users, items)`` and ``ego(users, items)`` (the zero-th layer
    embeddings used by the L2 regulariser). Propagated embeddings are cached while in ``eval()`` mode so
    that scoring many user batches propagates once.
    """

    rec_loss: str = "bpr"  #: ``loss.rec`` for models whose schema offers the choice
    tau: float = 0.1  #: ``loss.ssm_tau``
    ssm_mask: bool = True  #: ``loss.ssm_mask``

    def __init__(self, dataset: Any, cfg: dict[str, Any]):
        super().__init__(dataset, cfg)
        self.normalize = bool(cfg["model"]["normalize"])
        if "rec" in cfg["loss"]:  # models whose schema offers a choice of loss; SymCERE's Eq. 12 is BPR
            self.rec_loss, self.tau = str(cfg["loss"]["rec"]), float(cfg["loss"]["ssm_tau"])
            self.ssm_mask = bool(cfg["loss"]["ssm_mask"])
        self.reg = float(cfg["train"]["reg"])
        if self.rec_loss in ("ssm", "sm"):
            self.num_negatives = 0 if self.rec_loss == "sm" else self.num_negatives
        elif self.num_negatives < 1:
            raise ValueError(f"loss.rec={self.rec_loss} needs train.num_negatives >= 1, got {self.num_negatives}")
        self._eval_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def register_graph(self, dataset: Any) -> None:
        """The training edges (``train_users``, ``train_items``, numpy) and the normalised training adjacency as
        the non-persistent buffer ``adj`` (Eq. 1): it moves with the model and is not saved in checkpoints."""
        self.train_users, self.train_items, adj = training_graph(dataset)
        self.register_buffer("adj", adj, persistent=False)

    # -- to implement -------------------------------------------------------------------------------------
    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - interface

    # -- shared -------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> EmbeddingRecommender:
        self._eval_cache = None
        return super().train(mode)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            return self.propagate()
        if self._eval_cache is None:
            with torch.no_grad():
                self._eval_cache = self.propagate()
        return self._eval_cache

    def _maybe_norm(self, x: torch.Tensor) -> torch.Tensor:
        return losses.l2_normalize(x) if self.normalize else x

    def rec_loss_terms(self, u: torch.Tensor, items_all: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """The recommendation loss chosen by ``loss.rec`` on user vectors ``u`` (B, d) and all item vectors."""
        if self.rec_loss == "ssm":  # in-batch sampled softmax over the batch's positives, cosine / tau
            # copies of row a's positive elsewhere in the batch are the same item, not negatives (loss.ssm_mask);
            # computed over the batch's distinct positives (the same loss as the (B, B) form)
            distinct, item_of = torch.unique(batch["pos"], return_inverse=True)
            ssm = losses.sampled_softmax_items(
                losses.l2_normalize(u), losses.l2_normalize(items_all[distinct]), item_of, self.tau,
                mask_copies=self.ssm_mask,
            )
            return {"ssm": ssm}
        pos = items_all[batch["pos"]]
        if self.rec_loss == "sm":  # full softmax over the catalogue, cosine / tau
            scores = losses.l2_normalize(u) @ losses.l2_normalize(items_all).T / self.tau
            return {"sm": losses.full_softmax(scores, batch["pos"])}
        u_n, pos_n = self._maybe_norm(u), self._maybe_norm(pos)
        neg = self._maybe_norm(items_all[batch["neg"]])  # (B, n_neg, d)
        pos_s = (u_n * pos_n).sum(-1)
        neg_s = torch.einsum("bd,bnd->bn", u_n, neg)
        if self.rec_loss == "bpr":
            return {"bpr": losses.bpr_loss(pos_s.unsqueeze(1).expand_as(neg_s), neg_s)}
        return {"bce": losses.bce_loss(pos_s, neg_s)}

    def reg_loss(self, batch: Batch) -> torch.Tensor:
        """``reg/2 * (|e_u|^2 + |e_pos|^2 + |e_neg|^2) / B`` on the batch's zero-th layer embeddings."""
        items = batch["pos"] if "neg" not in batch else torch.cat([batch["pos"], batch["neg"].reshape(-1)])
        eu, ei = self.ego(batch["users"], items)
        return 0.5 * self.reg * (eu.pow(2).sum() + ei.pow(2).sum()) / len(batch["users"])

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users_all, items_all = self.final_embeddings()
        terms = self.rec_loss_terms(users_all[batch["users"]], items_all, batch)
        if self.reg > 0:
            terms["reg"] = self.reg_loss(batch)
        terms["total"] = sum(terms.values())
        return terms

    def score(self, users: torch.Tensor) -> torch.Tensor:
        users_all, items_all = self.final_embeddings()
        return self._maybe_norm(users_all[users]) @ self._maybe_norm(items_all).T

    def embeddings(self) -> dict[str, torch.Tensor]:
        u, i = self.final_embeddings()
        return {"users": u.detach(), "items": i.detach()}
