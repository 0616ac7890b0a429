"""SGL-ED (Wu et al. 2021, "Self-supervised Graph Learning for Recommendation", sections 3.2-3.3):
LightGCN trained with ``loss.rec`` (BPR by default) on the original training graph, plus an InfoNCE loss
between two edge-dropout views of that graph.

Assumptions and choices:

* views (SGL-ED): each view keeps every TRAINING edge independently with probability
  ``1 - views.edge_dropout`` and is re-normalised (``D^-1/2 A D^-1/2`` of the kept edges); the same subgraph
  is used at every layer; both views are re-sampled at each epoch start (``views.every: epoch``, as in
  the paper) or before every optimizer step (``step``);
* view sampling uses its own generator ``np.random.default_rng([seed, epoch, draw])``: reproducible, resumes
  identically at an epoch boundary, and does not perturb the trainer's batch / negative sampling;
* SSL loss: ``losses.info_nce`` (one direction, view 1 anchors vs view 2 candidates) on L2-normalised final
  (layer-mean) LightGCN embeddings, with in-batch denominators over the batch's UNIQUE users, plus the same
  over the batch's unique POSITIVE items (the official code's choice), summed, temperature ``model.ssl_tau``;
* reductions are means (like BPR here), where the official code sums both BPR and SSL terms; the reported
  ``"ssl"`` component already includes the weight ``model.ssl_weight``, so ``total = bpr + ssl + reg``;
* ``"reg"`` is the base class's L2 on the batch's zero-th layer embeddings (``train.reg``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from symcere import losses
from symcere.models.base import Batch
from symcere.models.graph import edge_dropout, normalized_adjacency
from symcere.models.lightgcn import LightGCN


class SGL(LightGCN):
    def __init__(self, dataset: Any, cfg: dict[str, Any]):
        super().__init__(dataset, cfg)
        m, v = cfg["model"], cfg["views"]
        self.drop_rate, self.ssl_tau = float(v["edge_dropout"]), float(m["ssl_tau"])
        self.ssl_weight, self.view_every = float(m["ssl_weight"]), str(v["every"])
        self.seed, self.epoch, self._draw = int(cfg["seed"]), 0, 0
        self.views: list[torch.Tensor] | None = None  # two normalised view adjacencies
        self.view_edges: list[int] = []  # edges kept in each view

    def resample_views(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch, self._draw])
        self._draw += 1
        self.views, self.view_edges = [], []
        for _ in range(2):
            u, i = edge_dropout(self.train_users, self.train_items, self.drop_rate, rng)
            self.views.append(normalized_adjacency(self.n_users, self.n_items, u, i, self.adj.device))
            self.view_edges.append(len(u))

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch, self._draw = int(epoch), 0
        if self.view_every == "epoch":
            self.resample_views()

    def ssl_loss(self, batch: Batch) -> torch.Tensor:
        """InfoNCE between the two views: unique batch users + unique batch positive items."""
        users, items = torch.unique(batch["users"]), torch.unique(batch["pos"])
        (u1, i1), (u2, i2) = (self.encoder(adj) for adj in self.views)
        norm = losses.l2_normalize
        return losses.info_nce(norm(u1[users]), norm(u2[users]), self.ssl_tau) + losses.info_nce(
            norm(i1[items]), norm(i2[items]), self.ssl_tau
        )

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.views is None or self.view_every == "step":
            self.resample_views()
        users_all, items_all = self.final_embeddings()
        terms = self.rec_loss_terms(users_all[batch["users"]], items_all, batch)
        terms["ssl"] = self.ssl_weight * self.ssl_loss(batch)
        if self.reg > 0:
            terms["reg"] = self.reg_loss(batch)
        terms["total"] = sum(terms.values())
        return terms
