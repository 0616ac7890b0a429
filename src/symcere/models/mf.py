"""Matrix factorisation (the ID-only reference): one free vector per user and item, scored by dot product
(or cosine with ``model.normalize``), trained with ``loss.rec`` (BPR by default)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from symcere.models.base import EmbeddingRecommender


class MF(EmbeddingRecommender):
    def __init__(self, dataset: Any, cfg: dict[str, Any]):
        super().__init__(dataset, cfg)
        dim = int(cfg["model"]["dim"])
        self.user_emb = nn.Embedding(self.n_users, dim)
        self.item_emb = nn.Embedding(self.n_items, dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def ego(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_emb(users), self.item_emb(items)
