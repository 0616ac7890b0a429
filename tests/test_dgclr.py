"""DGCLR on a tiny fake dataset with random (injected) text features: no text model needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import FakeDataset

from symcere.config import load_config
from symcere.models import build_model
from symcere.models.dgclr import DGCLR, user_documents
from symcere.training.sampler import InteractionSampler


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP stalls on a loaded 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _model(*overrides: str, ds: FakeDataset | None = None) -> tuple[DGCLR, FakeDataset]:
    ds = ds or FakeDataset()
    cfg = load_config("dgclr", overrides=["model.dim=16", "model.text_features=random", *overrides])
    torch.manual_seed(0)
    return build_model(ds, cfg), ds


def _batch(ds: FakeDataset, model: DGCLR, size: int = 48) -> dict[str, torch.Tensor]:
    sampler = InteractionSampler(ds.matrix("train"), size, model.num_negatives)
    return next(iter(sampler.epoch(np.random.default_rng(0))))


def test_load_config_defaults():
    cfg = load_config("dgclr")
    assert cfg["model"]["name"] == "dgclr"
    assert cfg["model"]["factors"] == 4 and cfg["model"]["text_features"] == "text"
    assert cfg["loss"]["rec"] == "bpr" and cfg["model"]["dim"] % cfg["model"]["factors"] == 0


def test_forward_backward_named_finite_terms():
    model, ds = _model()
    model.train()
    terms = model.loss(_batch(ds, model))
    assert set(terms) == {"bpr", "reg", "cl_node", "cl_inter", "indep", "total"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    assert torch.allclose(terms["total"], sum(v for k, v in terms.items() if k != "total"))
    terms["total"].backward()
    for p in (model.user_emb.weight, model.item_emb.weight, model.proj.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_score_shape_and_eval_cache():
    model, ds = _model()
    model.eval()
    users = torch.tensor([0, 3, 5])
    scores = model.score(users)
    assert scores.shape == (3, ds.n_items) and torch.isfinite(scores).all()
    assert torch.equal(scores, model.score(users))
    emb = model.embeddings()
    assert emb["users"].shape == (ds.n_users, 16) and emb["item_review"].shape == (ds.n_items, 16)


def test_routing_is_a_distribution_over_channels_per_edge():
    model, ds = _model("model.factors=4", "model.routing_iters=3")
    model.propagate()
    p = model.routing
    assert p.shape == (len(ds.split_arrays("train")[0]), 4)
    assert (p >= 0).all() and torch.allclose(p.sum(1), torch.ones(len(p)), atol=1e-6)
    assert not torch.allclose(p, torch.full_like(p, 0.25))  # review prior + structure make it non-uniform


def test_optimizer_steps_reduce_loss():
    model, ds = _model()
    model.train()
    batch = _batch(ds, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first = None
    for _ in range(25):
        total = model.loss(batch)["total"]
        first = total.item() if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    assert model.loss(batch)["total"].item() < first


def test_injected_features_and_no_text():
    ds = FakeDataset()
    cfg = load_config("dgclr", overrides=["model.dim=8", "model.factors=2", "model.text_features=none"])
    feats = (torch.randn(ds.n_users, 5), torch.randn(ds.n_items, 5))
    model = DGCLR(ds, cfg, text_features=feats)  # the hook overrides text_features=none
    assert model.proj is not None and model.proj.in_features == 5
    plain = DGCLR(ds, cfg)
    assert plain.proj is None
    terms = plain.loss(_batch(ds, plain))
    assert "cl_node" not in terms and "cl_inter" not in terms and torch.isfinite(terms["total"])


def test_bad_settings_raise():
    ds = FakeDataset()
    with pytest.raises(ValueError, match="multiple"):
        DGCLR(ds, load_config("dgclr", overrides=["model.dim=10", "model.factors=4", "model.text_features=none"]))
    with pytest.raises(ValueError, match="text_features"):
        DGCLR(ds, load_config("dgclr", overrides=["model.dim=8", "model.text_features=bert"]))


def test_user_documents_newest_first_and_capped():
    ds = FakeDataset(n_users=3, n_items=6, per_user=2)
    docs = user_documents(ds, max_words=4)
    users = ds.split_arrays("train")[0]
    last = [ds.train_reviews[int(np.flatnonzero(users == u)[-1])] for u in range(3)]
    assert all(d.startswith(" ".join(t.split()[:4])) for d, t in zip(docs, last, strict=True))
    assert all(len(d.split()) <= 4 for d in docs)
