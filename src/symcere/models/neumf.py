"""NeuMF (He et al. 2017, "Neural Collaborative Filtering", section 3.4): a GMF tower (element-wise product
of user and item GMF embeddings) and an MLP tower (user and item MLP embeddings concatenated, through
``model.mlp_layers`` hidden layers with ReLU and dropout), fused by one linear layer into a logit, trained
pointwise with BCE on each positive and its ``train.num_negatives`` sampled negatives (paper: 4).

Assumptions (the paper leaves them open or we simplify):

* both towers' embeddings have size ``model.dim``; the MLP input is their concatenation (2 * dim) and
  ``model.mlp_layers`` lists the hidden sizes (the paper's "predictive factors" = the last one);
* dropout (``model.dropout``) follows every hidden ReLU; none on the GMF tower; trained from scratch
  (no GMF/MLP pre-training, so the fusion weights are learnt directly, no fixed alpha);
* init: embeddings N(0, 0.01) as in the paper, Xavier-uniform linear weights, zero biases;
* ``train.reg`` > 0 adds ``reg/2 * |batch embeddings|^2 / B`` as ``"reg"`` (the paper uses none: the
  shipped default is 0); the loss is ``losses.bce_loss`` (mean over all 1 + n_neg examples).

Full ranking never concatenates user-item pairs: the first MLP layer splits as ``W [u; i] + b =
(W_u u + b) + W_i i``, so users and items go through it once; only the remaining hidden layers run per
(user, item) pair, over item chunks holding at most ``score_chunk_elements`` floats per layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from symcere import losses
from symcere.models.base import Batch, Recommender


class NeuMF(Recommender):
    #: B x item-chunk x widest-hidden-layer floats per step of ``score`` (2^20: cache-friendly, 4 MB)
    score_chunk_elements: int = 2**20

    def __init__(self, dataset: Any, cfg: dict[str, Any]):
        super().__init__(dataset, cfg)
        m = cfg["model"]
        self.dim, hidden = int(m["dim"]), [int(h) for h in m["mlp_layers"]]
        self.reg = float(cfg["train"]["reg"])
        self.user_gmf, self.item_gmf = nn.Embedding(self.n_users, self.dim), nn.Embedding(self.n_items, self.dim)
        self.user_mlp, self.item_mlp = nn.Embedding(self.n_users, self.dim), nn.Embedding(self.n_items, self.dim)
        sizes = [2 * self.dim, *hidden]
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.drop = nn.Dropout(float(m["dropout"]))
        self.predict = nn.Linear(self.dim + sizes[-1], 1)
        for emb in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(emb.weight, std=0.01)
        for lin in (*self.mlp, self.predict):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self._widest = max(sizes[1:])

    # -- towers -------------------------------------------------------------------------------------------
    def _mlp_halves(self, users: torch.Tensor, items: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """First MLP layer split into its user part (with bias) and item part (all items if ``items`` None)."""
        first = self.mlp[0]
        w_u, w_i = first.weight[:, : self.dim], first.weight[:, self.dim :]
        item_vecs = self.item_mlp.weight if items is None else self.item_mlp(items)
        return self.user_mlp(users) @ w_u.T + first.bias, item_vecs @ w_i.T

    def _mlp_tail(self, h: torch.Tensor) -> torch.Tensor:
        """ReLU + dropout of the first layer's pre-activation ``h``, then the remaining hidden layers."""
        relu = torch.relu if torch.is_grad_enabled() else torch.relu_  # in place when only scoring
        h = self.drop(relu(h))
        for lin in self.mlp[1:]:
            h = self.drop(relu(lin(h)))
        return h

    def pair_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of users (B,) against their own items (B, K) -> (B, K)."""
        gmf = self.user_gmf(users).unsqueeze(1) * self.item_gmf(items)
        h_u, h_i = self._mlp_halves(users, items)
        mlp = self._mlp_tail(h_u.unsqueeze(1) + h_i)
        return self.predict(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    # -- Recommender --------------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        users, neg = batch["users"], batch["neg"]
        items = torch.cat([batch["pos"].unsqueeze(1), neg.reshape(len(users), -1)], dim=1)
        logits = self.pair_logits(users, items)
        terms = {"bce": losses.bce_loss(logits[:, 0], logits[:, 1:])}
        if self.reg > 0:
            sq = sum(t.pow(2).sum() for t in (self.user_gmf(users), self.user_mlp(users)))
            sq = sq + self.item_gmf(items).pow(2).sum() + self.item_mlp(items).pow(2).sum()
            terms["reg"] = 0.5 * self.reg * sq / len(users)
        terms["total"] = sum(terms.values())
        return terms

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_items): GMF part as one matmul, MLP part broadcast over bounded item chunks."""
        w_gmf, w_mlp = self.predict.weight[0, : self.dim], self.predict.weight[0, self.dim :]
        out = (self.user_gmf(users) * w_gmf) @ self.item_gmf.weight.T + self.predict.bias
        h_u, h_i = self._mlp_halves(users, None)
        chunk = max(1, self.score_chunk_elements // max(1, len(users) * self._widest))
        parts = [
            self._mlp_tail(h_u.unsqueeze(1) + h_i[s : s + chunk].unsqueeze(0)) @ w_mlp
            for s in range(0, self.n_items, chunk)
        ]
        return out + torch.cat(parts, dim=1)

    def embeddings(self) -> dict[str, torch.Tensor]:
        """``users``/``items``: the GMF tables (their interaction is a weighted dot product); plus the MLP ones."""
        return {
            "users": self.user_gmf.weight.detach(),
            "items": self.item_gmf.weight.detach(),
            "users_mlp": self.user_mlp.weight.detach(),
            "items_mlp": self.item_mlp.weight.detach(),
        }
