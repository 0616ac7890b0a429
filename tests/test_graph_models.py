"""Graph encoders against dense hand computations; MF / LightGCN / NGCF recommenders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import small_config

from symcere.models import build_model
from symcere.models.graph import (
    LightGCNEncoder,
    NGCFEncoder,
    build_graph_encoder,
    edge_dropout,
    normalized_adjacency,
)
from symcere.training.sampler import InteractionSampler

# 3 users, 4 items; item 3 has no edge (zero degree)
USERS = np.array([0, 0, 1, 1, 1, 2])
ITEMS = np.array([0, 1, 0, 1, 2, 2])
N_USERS, N_ITEMS = 3, 4


def dense_norm_adj(n_users, n_items, users, items) -> np.ndarray:
    """D^-1/2 A D^-1/2 of the bipartite graph, by hand, zero rows for isolated nodes."""
    n = n_users + n_items
    a = np.zeros((n, n))
    for u, i in zip(users, items, strict=True):
        a[u, n_users + i] = a[n_users + i, u] = 1.0
    deg = a.sum(1)
    inv = np.zeros(n)
    inv[deg > 0] = deg[deg > 0] ** -0.5
    return inv[:, None] * a * inv[None, :]


def test_normalized_adjacency_matches_dense():
    adj = normalized_adjacency(N_USERS, N_ITEMS, USERS, ITEMS)
    assert adj.layout == torch.sparse_csr and adj.shape == (7, 7)
    expected = dense_norm_adj(N_USERS, N_ITEMS, USERS, ITEMS)
    np.testing.assert_allclose(adj.to_dense().numpy(), expected, rtol=1e-6, atol=1e-7)
    # spot check one entry by hand: user 1 (degree 3) - item 2 (node 5, degree 2)
    assert adj.to_dense()[1, 5].item() == pytest.approx(1 / np.sqrt(3 * 2))
    assert adj.to_dense()[N_USERS + 3].abs().sum() == 0  # isolated item: zero row, no NaN
    assert torch.isfinite(adj.values()).all()


def test_lightgcn_encoder_equals_dense_eq_1_2():
    torch.manual_seed(0)
    layers = 3
    enc = LightGCNEncoder(N_USERS, N_ITEMS, dim=5, layers=layers)
    adj = normalized_adjacency(N_USERS, N_ITEMS, USERS, ITEMS)
    users, items = enc(adj)
    a = dense_norm_adj(N_USERS, N_ITEMS, USERS, ITEMS)
    e = torch.cat([enc.user_emb.weight, enc.item_emb.weight]).detach().double().numpy()
    # Eq. 1: e^(k+1) = A_hat e^(k); Eq. 2: mean of layers 0..K
    layer_embs = [e]
    for _ in range(layers):
        layer_embs.append(a @ layer_embs[-1])
    expected = sum(layer_embs) / (layers + 1)
    got = torch.cat([users, items]).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert users.shape == (N_USERS, 5) and items.shape == (N_ITEMS, 5)
    # the isolated item keeps only its own layer-0 share
    np.testing.assert_allclose(got[N_USERS + 3], e[N_USERS + 3] / (layers + 1), rtol=1e-6)


def test_lightgcn_zero_layers_is_the_embedding_table():
    enc = LightGCNEncoder(N_USERS, N_ITEMS, dim=4, layers=0)
    u, i = enc(normalized_adjacency(N_USERS, N_ITEMS, USERS, ITEMS))
    assert torch.equal(u, enc.user_emb.weight) and torch.equal(i, enc.item_emb.weight)


def test_lightgcn_gradients_flow_to_the_embeddings():
    enc = LightGCNEncoder(N_USERS, N_ITEMS, dim=4, layers=2)
    u, i = enc(normalized_adjacency(N_USERS, N_ITEMS, USERS, ITEMS))
    (u.sum() + i.sum()).backward()
    assert enc.user_emb.weight.grad is not None and enc.user_emb.weight.grad.abs().sum() > 0


def test_edge_dropout_keeps_expected_fraction():
    n = 20000
    users, items = np.arange(n), np.arange(n) % 97
    rng = np.random.default_rng(0)
    for rate in (0.1, 0.5):
        ku, ki = edge_dropout(users, items, rate, rng)
        kept = len(ku) / n
        assert abs(kept - (1 - rate)) < 0.02  # binomial sd ~0.0035
        # kept edges are a subset, pairs stay aligned
        assert np.array_equal(ki, ku % 97)
    assert len(edge_dropout(users, items, 0.0, rng)[0]) == n
    assert len(edge_dropout(users, items, 1.0, rng)[0]) == 0
    # same generator state -> same view
    a = edge_dropout(users, items, 0.3, np.random.default_rng(5))[0]
    b = edge_dropout(users, items, 0.3, np.random.default_rng(5))[0]
    assert np.array_equal(a, b)


def test_ngcf_output_shape_and_normalised_layers():
    torch.manual_seed(0)
    dim, layers = 6, 3
    enc = NGCFEncoder(N_USERS, N_ITEMS, dim, layers, message_dropout=0.0)
    assert enc.out_dim == dim * (layers + 1)
    u, i = enc(normalized_adjacency(N_USERS, N_ITEMS, USERS, ITEMS))
    assert u.shape == (N_USERS, dim * (layers + 1)) and i.shape == (N_ITEMS, dim * (layers + 1))
    # block 0 is the raw embedding, blocks 1..L are unit-norm (authors' code), for connected nodes
    assert torch.equal(u[:, :dim], enc.user_emb.weight)
    for k in range(1, layers + 1):
        norms = u[:, k * dim : (k + 1) * dim].norm(dim=1)
        torch.testing.assert_close(norms, torch.ones(N_USERS))


def test_ngcf_first_layer_by_hand():
    torch.manual_seed(1)
    dim = 4
    enc = NGCFEncoder(N_USERS, N_ITEMS, dim, layers=1, message_dropout=0.0)
    adj = normalized_adjacency(N_USERS, N_ITEMS, USERS, ITEMS)
    u, i = enc(adj)
    a = torch.tensor(dense_norm_adj(N_USERS, N_ITEMS, USERS, ITEMS), dtype=torch.float32)
    e = torch.cat([enc.user_emb.weight, enc.item_emb.weight])
    side = a @ e
    x = torch.nn.functional.leaky_relu(enc.w1[0](side + e) + enc.w2[0](side * e), 0.2)
    expected = torch.nn.functional.normalize(x, dim=1)
    torch.testing.assert_close(torch.cat([u, i])[:, dim:], expected, rtol=1e-5, atol=1e-6)


def test_build_graph_encoder():
    assert isinstance(build_graph_encoder("lightgcn", 2, 2, 4, 1), LightGCNEncoder)
    assert isinstance(build_graph_encoder("ngcf", 2, 2, 4, 1), NGCFEncoder)
    with pytest.raises(ValueError, match="backbone"):
        build_graph_encoder("gat", 2, 2, 4, 1)


# ------------------------------------------------------------------------------------------ recommenders
def _batch(dataset, model, size=64, seed=0):
    sampler = InteractionSampler(dataset.matrix("train"), size, model.num_negatives)
    return next(iter(sampler.epoch(np.random.default_rng(seed))))


@pytest.mark.parametrize("name", ["mf", "lightgcn", "ngcf"])
def test_recommenders_train_and_score(tiny_dataset, name):
    torch.manual_seed(0)
    model = build_model(tiny_dataset, small_config(name))
    batch = _batch(tiny_dataset, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(20):
        terms = model.loss(batch)
        assert set(terms) == {"bpr", "reg", "total"}
        assert torch.isclose(terms["total"], terms["bpr"] + terms["reg"])
        first = first if first is not None else terms["bpr"].item()
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    assert model.loss(batch)["bpr"].item() < first
    model.eval()
    users = torch.arange(5)
    scores = model.score(users)
    assert scores.shape == (5, tiny_dataset.n_items) and torch.isfinite(scores).all()
    u, i = model.final_embeddings()
    torch.testing.assert_close(scores, u[users] @ i.T)
    if name == "ngcf":
        assert u.shape[1] == 16 * 3  # dim * (layers + 1)


def test_lightgcn_model_uses_the_training_graph(tiny_dataset):
    model = build_model(tiny_dataset, small_config("lightgcn"))
    users, items = tiny_dataset.split_arrays("train")
    dense = dense_norm_adj(tiny_dataset.n_users, tiny_dataset.n_items, users, items)
    np.testing.assert_allclose(model.adj.to_dense().numpy(), dense, rtol=1e-6, atol=1e-7)


def test_normalize_scores_are_cosines(tiny_dataset):
    model = build_model(tiny_dataset, small_config("lightgcn", "model.normalize=true"))
    model.eval()
    s = model.score(torch.arange(tiny_dataset.n_users))
    assert s.abs().max() <= 1 + 1e-5
    u, i = model.final_embeddings()
    cos = torch.nn.functional.cosine_similarity(u[3:4], i[7:8]).item()
    assert s[3, 7].item() == pytest.approx(cos, abs=1e-5)


@pytest.mark.parametrize("rec", ["bce", "ssm", "sm"])
def test_rec_loss_choices(tiny_dataset, rec):
    model = build_model(tiny_dataset, small_config("mf", f"loss.rec={rec}", "train.reg=0"))
    batch = _batch(tiny_dataset, model)
    terms = model.loss(batch)
    assert set(terms) == {rec, "total"} and torch.isfinite(terms["total"])
    assert (model.num_negatives == 0) == (rec == "sm")


def test_bpr_needs_negatives(tiny_dataset):
    with pytest.raises(ValueError, match="num_negatives"):
        build_model(tiny_dataset, small_config("mf", "train.num_negatives=0"))


def test_eval_cache_is_dropped_when_training_resumes(tiny_dataset):
    model = build_model(tiny_dataset, small_config("lightgcn"))
    model.eval()
    before = model.score(torch.arange(3)).clone()
    model.train()
    with torch.no_grad():  # LightGCN is linear: doubling every embedding doubles both sides
        model.encoder.user_emb.weight.mul_(2.0)
        model.encoder.item_emb.weight.mul_(2.0)
    model.eval()
    torch.testing.assert_close(model.score(torch.arange(3)), 4 * before)
