"""LightGCN recommender (He et al. 2020; SymCERE Eq. 1-2) over the training graph; ``loss.rec`` selects
BPR (default), BCE, sampled softmax or full softmax. NGCF (``models/ngcf.py``) shares everything but the
encoder."""

from __future__ import annotations

from typing import Any

import torch

from symcere.models.base import EmbeddingRecommender
from symcere.models.graph import build_graph_encoder


class LightGCN(EmbeddingRecommender):
    backbone = "lightgcn"

    def __init__(self, dataset: Any, cfg: dict[str, Any]):
        super().__init__(dataset, cfg)
        m = cfg["model"]
        self.encoder = build_graph_encoder(
            self.backbone,
            self.n_users,
            self.n_items,
            int(m["dim"]),
            int(m["layers"]),
            float(m.get("message_dropout", 0.0)),  # NGCF's option; LightGCN has none
        )
        self.register_graph(dataset)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self.adj)

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.user_emb(users), self.encoder.item_emb(items)
