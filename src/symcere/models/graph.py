"""Graph encoders over the user-item bipartite graph (SymCERE section 3.1.1).

Nodes are users ``0..U-1`` followed by items ``U..U+I-1``. The adjacency is the symmetric normalised
``D^-1/2 A D^-1/2`` of the TRAINING interactions only (Eq. 1); zero-degree nodes get zero rows. Encoders take
the adjacency as an argument so that another view (e.g. an edge-dropout graph, SGL / SymCERE intra-modal
loss) is used without rebuilding anything else.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

_ADJ_CACHE: dict[tuple, torch.Tensor] = {}


def normalized_adjacency(
    n_users: int,
    n_items: int,
    users: np.ndarray | torch.Tensor,
    items: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph as a sparse CSR tensor of size (U+I, U+I) on ``device`` (Eq. 1)."""
    u = torch.as_tensor(np.asarray(users), dtype=torch.long, device=device)
    i = torch.as_tensor(np.asarray(items), dtype=torch.long, device=device) + n_users
    n = n_users + n_items
    rows = torch.cat([u, i])
    cols = torch.cat([i, u])
    deg = torch.bincount(rows, minlength=n).float()
    inv_sqrt = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    vals = inv_sqrt[rows] * inv_sqrt[cols]
    adj = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), vals, (n, n), device=device, check_invariants=False
    ).coalesce()
    with warnings.catch_warnings():  # "CSR support is in beta": CSR x dense (with autograd) is what we use
        warnings.simplefilter("ignore", UserWarning)
        return adj.to_sparse_csr()


def cached_adjacency(key: str, n_users: int, n_items: int, users: np.ndarray, items: np.ndarray) -> torch.Tensor:
    """The training adjacency of a dataset, built once per process and dataset (``key``: its content hash)."""
    cache_key = (key, n_users, n_items, len(users))
    if cache_key not in _ADJ_CACHE:
        _ADJ_CACHE[cache_key] = normalized_adjacency(n_users, n_items, users, items)
    return _ADJ_CACHE[cache_key]


def edge_dropout(
    users: np.ndarray, items: np.ndarray, rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Keep each interaction edge with probability ``1 - rate`` (SGL-ED; SymCERE graph view, Eq. 10-11)."""
    keep = rng.random(len(users)) >= rate
    return users[keep], items[keep]


class _SymmetricSpMM(torch.autograd.Function):
    """``adj @ x`` for a SYMMETRIC sparse ``adj`` (every ``normalized_adjacency`` is): the backward is ``adj @ grad``
    again, so autograd never transposes (re-sorts) the CSR matrix, which costs more than the product itself."""

    @staticmethod
    def forward(ctx: object, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return _spmm(adj, x)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, _spmm(ctx.adj, grad)


def _spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adj @ x``; on the CPU through scipy's CSR kernel (about twice torch's CPU CSR speed), else torch's."""
    if adj.device.type == "cpu" and adj.layout == torch.sparse_csr and adj.dtype == x.dtype == torch.float32:
        csr = getattr(adj, "_scipy_csr", None)
        if csr is None:  # zero-copy views of the tensor's arrays, built once per adjacency
            import scipy.sparse as sp

            arrays = (adj.values().numpy(), adj.col_indices().numpy(), adj.crow_indices().numpy())
            csr = sp.csr_matrix(arrays, shape=tuple(adj.shape), copy=False)
            adj._scipy_csr = csr  # type: ignore[attr-defined]
        return torch.from_numpy(csr @ x.detach().numpy())
    return torch.sparse.mm(adj, x)


def propagate(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One propagation step ``adj @ x`` (Eq. 1) over a symmetric normalised adjacency."""
    return _SymmetricSpMM.apply(adj, x)


class _GraphEncoder(nn.Module):
    """Zero-th layer user and item embeddings (Xavier-initialised), shared by the encoders below."""

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int):
        super().__init__()
        self.n_users, self.n_items, self.layers = n_users, n_items, layers
        self.user_emb = nn.Embedding(n_users, dim)
        self.item_emb = nn.Embedding(n_items, dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def layer0(self, item_extra: torch.Tensor | None = None) -> torch.Tensor:
        """Stacked (users, items) zero-th layer; ``item_extra`` (n_items, dim), if given, is added to the items
        (e.g. projected text features)."""
        items = self.item_emb.weight if item_extra is None else self.item_emb.weight + item_extra
        return torch.cat([self.user_emb.weight, items])


class LightGCNEncoder(_GraphEncoder):
    """LightGCN: zero-th layer embeddings are the only parameters; K linear propagation layers (Eq. 1);
    the output is the mean of the K+1 layers, i.e. alpha_k = 1/(K+1) (Eq. 2)."""

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int):
        super().__init__(n_users, n_items, dim, layers)
        self.out_dim = dim

    def forward(self, adj: torch.Tensor, item_extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.layer0(item_extra)
        total = x
        for _ in range(self.layers):
            x = propagate(adj, x)
            total = total + x
        out = total / (self.layers + 1)
        return out[: self.n_users], out[self.n_users :]


class NGCFEncoder(_GraphEncoder):
    """NGCF (Wang et al. 2019): per layer ``LeakyReLU((L+I) E W1 + (L E * E) W2)`` with message dropout,
    each layer's output L2-normalised (as in the authors' code), all layers concatenated
    (output size ``dim * (layers + 1)``)."""

    def __init__(self, n_users: int, n_items: int, dim: int, layers: int, message_dropout: float = 0.1):
        super().__init__(n_users, n_items, dim, layers)
        self.w1 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.w2 = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.dropout = nn.Dropout(message_dropout)
        self.out_dim = dim * (layers + 1)

    def forward(self, adj: torch.Tensor, item_extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.layer0(item_extra)
        outs = [x]
        for w1, w2 in zip(self.w1, self.w2, strict=True):
            side = propagate(adj, x)
            x = nn.functional.leaky_relu(w1(side + x) + w2(side * x), negative_slope=0.2)
            x = self.dropout(x)
            outs.append(nn.functional.normalize(x, dim=1))
        out = torch.cat(outs, dim=1)
        return out[: self.n_users], out[self.n_users :]


def build_graph_encoder(
    kind: str, n_users: int, n_items: int, dim: int, layers: int, message_dropout: float = 0.1
) -> LightGCNEncoder | NGCFEncoder:
    if kind == "lightgcn":
        return LightGCNEncoder(n_users, n_items, dim, layers)
    if kind == "ngcf":
        return NGCFEncoder(n_users, n_items, dim, layers, message_dropout)
    raise ValueError(f"unknown graph backbone {kind!r} (expected 'lightgcn' or 'ngcf')")
