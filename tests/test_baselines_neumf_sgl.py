"""NeuMF and SGL baselines on a tiny fake dataset (no data/ package needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import FakeDataset

from symcere.config import load_config
from symcere.models import build_model
from symcere.models.neumf import NeuMF
from symcere.models.sgl import SGL
from symcere.training.sampler import InteractionSampler


def _cfg(model: str, *overrides: str) -> dict:
    return load_config(model, overrides=["model.dim=16", *overrides])


def _batch(ds: FakeDataset, model, size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    sampler = InteractionSampler(ds.matrix("train"), size, model.num_negatives)
    return next(iter(sampler.epoch(np.random.default_rng(seed))))


def _steps_reduce_loss(model, batch, steps: int = 30, lr: float = 0.01) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        terms = model.loss(batch)
        first = terms["total"].item() if first is None else first
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    assert model.loss(batch)["total"].item() < first


# ------------------------------------------------------------------------------------------------ config
def test_configs_load():
    n = load_config("neumf")
    assert n["model"]["name"] == "neumf" and n["model"]["mlp_layers"] == [64, 32, 16]
    assert n["train"]["num_negatives"] == 4 and "rec" not in n.get("loss", {})
    s = load_config("sgl")
    assert s["views"]["edge_dropout"] == 0.1 and s["model"]["ssl_tau"] == 0.2
    assert s["model"]["ssl_weight"] == 0.1 and s["views"]["every"] == "epoch"
    assert s["loss"]["rec"] == "bpr"


# ------------------------------------------------------------------------------------------------ NeuMF
def test_neumf_loss_forward_backward():
    torch.manual_seed(0)
    ds = FakeDataset()
    model = build_model(ds, _cfg("neumf", "model.dropout=0.2", "model.mlp_layers=[16,8]"))
    assert isinstance(model, NeuMF) and model.num_negatives == 4
    batch = _batch(ds, model)
    assert batch["neg"].shape == (64, 4)
    terms = model.loss(batch)
    assert set(terms) == {"bce", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_neumf_reg_component():
    ds = FakeDataset()
    model = NeuMF(ds, _cfg("neumf", "train.reg=0.01"))
    terms = model.loss(_batch(ds, model))
    assert set(terms) == {"bce", "reg", "total"} and terms["reg"].item() > 0


def test_neumf_batched_score_equals_naive_loop():
    torch.manual_seed(1)
    ds = FakeDataset(n_users=7, n_items=23)
    model = NeuMF(ds, _cfg("neumf", "model.mlp_layers=[12,6,4]", "model.dropout=0.3"))
    with torch.no_grad():  # larger weights so every unit matters
        for p in model.parameters():
            p.normal_(0, 0.5)
    model.eval()
    model.score_chunk_elements = 5 * 12 * 3  # forces chunks of 3 items for 5 users
    users = torch.tensor([0, 3, 6, 2, 5])
    with torch.no_grad():
        scores = model.score(users)
        naive = torch.empty(len(users), ds.n_items)
        for a, u in enumerate(users.tolist()):
            for i in range(ds.n_items):
                ut, it = torch.tensor(u), torch.tensor(i)
                gmf = model.user_gmf(ut) * model.item_gmf(it)
                h = torch.cat([model.user_mlp(ut), model.item_mlp(it)])
                for lin in model.mlp:
                    h = torch.relu(lin(h))
                naive[a, i] = model.predict(torch.cat([gmf, h]))[0]
        pairs = model.pair_logits(users, torch.arange(ds.n_items).expand(len(users), -1))
    assert scores.shape == (len(users), ds.n_items)
    torch.testing.assert_close(scores, naive, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pairs, naive, rtol=1e-5, atol=1e-5)


def test_neumf_steps_reduce_loss():
    torch.manual_seed(2)
    ds = FakeDataset()
    model = NeuMF(ds, _cfg("neumf"))
    _steps_reduce_loss(model, _batch(ds, model, size=128))


# ------------------------------------------------------------------------------------------------ SGL
def test_sgl_loss_forward_backward_and_score():
    torch.manual_seed(0)
    ds = FakeDataset()
    model = build_model(ds, _cfg("sgl", "model.layers=2"))
    assert isinstance(model, SGL)
    model.on_epoch_start(1)
    terms = model.loss(_batch(ds, model))
    assert set(terms) == {"bpr", "ssl", "reg", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    torch.testing.assert_close(terms["total"], terms["bpr"] + terms["ssl"] + terms["reg"])
    terms["total"].backward()
    assert model.encoder.user_emb.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model.score(torch.tensor([0, 1, 2])).shape == (3, ds.n_items)


def test_sgl_views_per_epoch_and_drop_fraction():
    ds = FakeDataset(n_users=300, n_items=200, per_user=10)  # 3,000 edges
    n_edges = len(ds.split_arrays("train")[0])
    model = SGL(ds, _cfg("sgl", "views.edge_dropout=0.2", "model.layers=1"))

    def snapshot():
        return [(a.crow_indices().clone(), a.col_indices().clone()) for a in model.views]

    def same(x, y):
        return torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])

    model.on_epoch_start(1)
    e1 = snapshot()
    for kept, adj in zip(model.view_edges, model.views, strict=True):
        assert abs(kept / n_edges - 0.8) < 0.03  # binomial sd ~0.007
        assert adj._nnz() == 2 * kept
    assert not same(e1[0], e1[1])  # the two views differ
    model.on_epoch_start(2)
    e2 = snapshot()
    assert not same(e1[0], e2[0]) and not same(e1[1], e2[1])
    model.on_epoch_start(1)  # reproducible
    assert all(same(a, b) for a, b in zip(e1, snapshot(), strict=True))
    # views stay fixed within an epoch, change every step with view_every=step
    batch = _batch(ds, model)
    model.loss(batch)
    assert same(snapshot()[0], e1[0])
    stepwise = SGL(ds, _cfg("sgl", "views.every=step", "model.layers=1"))
    stepwise.on_epoch_start(1)
    stepwise.loss(batch)
    before = [(a.crow_indices().clone(), a.col_indices().clone()) for a in stepwise.views]
    stepwise.loss(batch)
    assert not same(before[0], (stepwise.views[0].crow_indices(), stepwise.views[0].col_indices()))


def test_sgl_bad_view_every():
    with pytest.raises(ValueError, match="views.every"):
        SGL(FakeDataset(), _cfg("sgl", "views.every=batch"))


def test_sgl_steps_reduce_loss():
    torch.manual_seed(3)
    ds = FakeDataset()
    model = SGL(ds, _cfg("sgl", "model.layers=2"))
    model.on_epoch_start(1)
    _steps_reduce_loss(model, _batch(ds, model, size=128))
