"""SymCERE (Eq. 1-13) on a tiny dataset with an injected fake text tower; one real frozen-MiniLM test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import COLD_ITEM, FakeTextTower, build_tiny_dataset, small_config

from symcere import losses
from symcere.config import load_config
from symcere.models import build_model
from symcere.models.graph import NGCFEncoder
from symcere.models.symcere import SymCERE
from symcere.training.sampler import InteractionSampler


def make(dataset, *overrides: str, tower_seed: int = 0, init_seed: int = 0) -> SymCERE:
    cfg = small_config("symcere", "train.reg=0", *overrides)
    m = cfg["model"]
    out_dim = m["dim"] * (m["layers"] + 1) if m["backbone"] == "ngcf" else m["dim"]
    torch.manual_seed(init_seed)
    model = SymCERE(dataset, cfg, text_tower=FakeTextTower(dataset.n_items, out_dim, seed=tower_seed))
    model.on_epoch_start(1)
    return model


def batch_of(dataset, model, size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    sampler = InteractionSampler(dataset.matrix("train"), size, model.num_negatives)
    return next(iter(sampler.epoch(np.random.default_rng(seed))))


def graph(model):
    with torch.no_grad():
        return model.encoder(model.adj)


def test_loss_components_are_finite(tiny_dataset):
    model = make(tiny_dataset)
    batch = batch_of(tiny_dataset, model)
    terms = model.loss(batch)
    assert set(terms) == {"rank", "cross", "intra", "total"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    assert torch.isclose(terms["total"], terms["rank"] + terms["cross"] + terms["intra"])
    assert all(v.item() > 0 for v in terms.values())
    terms["total"].backward()
    assert model.encoder.user_emb.weight.grad.abs().sum() > 0
    assert model.text.proj.weight.grad.abs().sum() > 0  # the text tower is trained by the alignment


def test_reg_term_when_configured(tiny_dataset):
    cfg = small_config("symcere", "train.reg=0.01")
    model = SymCERE(tiny_dataset, cfg, text_tower=FakeTextTower(tiny_dataset.n_items, 16))
    model.on_epoch_start(1)
    terms = model.loss(batch_of(tiny_dataset, model))
    assert "reg" in terms and terms["reg"].item() > 0


def test_every_component_decreases_in_a_few_steps(tiny_dataset):
    model = make(tiny_dataset)
    batch = batch_of(tiny_dataset, model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    history: dict[str, list[float]] = {}
    for _ in range(30):
        terms = model.loss(batch)
        for name, value in terms.items():
            history.setdefault(name, []).append(value.item())
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    assert set(history) == {"rank", "cross", "intra", "total"}
    for name, values in history.items():
        first, last = np.mean(values[:3]), np.mean(values[-3:])
        assert last < first, f"{name}: {first:.4f} -> {last:.4f}"


def test_eq_6_to_9_and_12_by_hand(tiny_dataset):
    """The default (interaction-level symmetric SINCERE, BPR on normalised embeddings) equals the formulas."""
    model = make(tiny_dataset, "loss.alpha=0")
    batch = batch_of(tiny_dataset, model)
    terms = model.loss(batch)
    assert set(terms) == {"rank", "cross", "total"}  # alpha = 0 switches the intra-modal term off
    gu, gi = graph(model)
    users, pos, neg = batch["users"], batch["pos"], batch["neg"][:, 0]
    n = losses.l2_normalize
    g_ui = n((gu[users] + gi[pos]) / 2)
    with torch.no_grad():
        t = n(model.text(pos))
    m_g2t = torch.zeros(len(pos), len(pos), dtype=torch.bool)
    train = tiny_dataset.matrix("train").toarray()
    for a in range(len(pos)):
        for b in range(len(pos)):
            if a != b and (pos[a] == pos[b] or train[users[a], pos[b]]):
                m_g2t[a, b] = True
    tau = model.cross_tau
    expected_cross = 0.5 * (losses.sincere(g_ui, t, tau, m_g2t) + losses.sincere(t, g_ui, tau, m_g2t.T))  # Eq. 7-9
    torch.testing.assert_close(terms["cross"].detach(), expected_cross, rtol=1e-5, atol=1e-6)
    pos_s = (n(gu[users]) * n(gi[pos])).sum(-1)
    neg_s = (n(gu[users]) * n(gi[neg])).sum(-1)
    expected_rank = model.beta * -torch.nn.functional.logsigmoid(pos_s - neg_s).sum()  # Eq. 12: a sum
    assert model.bpr_reduction == "sum"  # the paper preset: Eq. 12 as written
    torch.testing.assert_close(terms["rank"].detach(), expected_rank, rtol=1e-5, atol=1e-6)
    assert m_g2t.any()  # the batch really has false negatives to mask


def test_cross_modal_variants(tiny_dataset):
    """Same weights, same batch: SINCERE drops false negatives from InfoNCE's denominator, so it is lower;
    InfoNCE (Eq. 4) equals its formula."""
    values = {}
    for kind in ("sincere", "infonce"):
        model = make(tiny_dataset, f"loss.cross={kind}", "loss.alpha=0")
        values[kind] = model.loss(batch_of(tiny_dataset, model))["cross"].item()
    assert all(np.isfinite(v) for v in values.values())
    assert values["sincere"] < values["infonce"]

    model = make(tiny_dataset, "loss.alpha=0")
    batch = batch_of(tiny_dataset, model)
    gu, gi = graph(model)
    pos = batch["pos"]
    g = losses.l2_normalize((gu[batch["users"]] + gi[pos]) / 2)
    with torch.no_grad():
        t = losses.l2_normalize(model.text(pos))
    infonce = 0.5 * (losses.info_nce(g, t, 0.1) + losses.info_nce(t, g, 0.1))  # Eq. 4, both directions
    assert values["infonce"] == pytest.approx(infonce.item(), rel=1e-5)


def test_unknown_cross_loss_is_refused(tiny_dataset):
    with pytest.raises(Exception, match="triplet"):
        make(tiny_dataset, "loss.cross=triplet")


def test_without_normalisation(tiny_dataset):
    model = make(tiny_dataset, "model.normalize=false")
    terms = model.loss(batch_of(tiny_dataset, model))
    assert all(torch.isfinite(v) for v in terms.values())
    model.eval()
    gu, gi = graph(model)
    scores = model.score(torch.arange(4))
    torch.testing.assert_close(scores, gu[:4] @ gi.T)  # raw inner products, not cosines
    normed = make(tiny_dataset)
    normed.eval()
    assert normed.score(torch.arange(4)).abs().max() <= 1 + 1e-5
    assert scores.abs().max() != pytest.approx(normed.score(torch.arange(4)).abs().max())


def test_ngcf_backbone(tiny_dataset):
    model = make(tiny_dataset, "model.backbone=ngcf")
    assert isinstance(model.encoder, NGCFEncoder) and model.encoder.out_dim == 16 * 3
    terms = model.loss(batch_of(tiny_dataset, model))
    assert set(terms) == {"rank", "cross", "intra", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert model.encoder.w1[0].weight.grad is not None
    model.eval()
    assert model.score(torch.arange(3)).shape == (3, tiny_dataset.n_items)


def test_text_score_ranks_a_cold_start_item(tiny_dataset):
    cold = tiny_dataset.item_ids.index(COLD_ITEM)
    assert tiny_dataset.matrix("train")[:, cold].nnz == 0  # no training interaction at all
    model = make(tiny_dataset)
    tower = model.text
    gu, _ = graph(model)
    with torch.no_grad():  # identity projection; the cold item's text embedding matches user 5's vector
        tower.table = torch.randn(tiny_dataset.n_items, 16, generator=torch.Generator().manual_seed(3))
        tower.proj = torch.nn.Linear(16, 16)
        tower.proj.weight.copy_(torch.eye(16))
        tower.proj.bias.zero_()
        tower.table[cold] = gu[5]
    model.eval()
    text = model.text_scores(torch.tensor([5]))[0]
    graph_s = model.score(torch.tensor([5]))[0]
    assert int((text > text[cold]).sum()) == 0  # ranked first by its reviews
    assert int((graph_s > graph_s[cold]).sum()) > 0  # the graph alone knows nothing about the cold item
    # new texts (e.g. an item not in the catalogue): scored against the given projected embeddings
    torch.testing.assert_close(model.text_scores(torch.tensor([5]), tower(torch.tensor([cold])))[0, 0], text[cold])

def test_param_groups_split_graph_and_text(tiny_dataset):
    model = make(tiny_dataset, "text.lr=0.5")
    graph_group, text_group = model.param_groups(0.01)
    assert graph_group["lr"] == 0.01 and text_group["lr"] == 0.5
    text_ids = {id(p) for p in model.text.parameters()}
    assert text_ids == {id(p) for p in text_group["params"]}
    assert not text_ids & {id(p) for p in graph_group["params"]}
    assert {id(p) for p in model.parameters()} == text_ids | {id(p) for p in graph_group["params"]}


def test_views_are_derived_from_seed_and_epoch(tiny_dataset):
    a, b = make(tiny_dataset), make(tiny_dataset)
    for m in (a, b):
        m.on_epoch_start(1)
        m.on_epoch_start(4)
    assert torch.equal(a.view_adj.to_dense(), b.view_adj.to_dense())
    c = make(tiny_dataset)
    c.on_epoch_start(4)  # straight to epoch 4 (as a resumed run does): same view
    assert torch.equal(a.view_adj.to_dense(), c.view_adj.to_dense())
    c.on_epoch_start(5)
    assert not torch.equal(a.view_adj.to_dense(), c.view_adj.to_dense())
    # and the text tower's view generator too
    a.on_epoch_start(2)
    c.on_epoch_start(2)
    ids = torch.arange(10)
    torch.testing.assert_close(a.text(ids, view=True), c.text(ids, view=True))


def test_bad_switches_are_refused(tiny_dataset):
    for bad in ("model.align=user", "model.score=random", "loss.rec=bce", "model.backbone=gat"):
        with pytest.raises(ValueError, match=bad.split("=")[0].split(".")[1]):
            make(tiny_dataset, bad)


def test_without_text_symcere_is_lightgcn_exactly(tiny_dataset):
    """Cross weight 0, alpha 0, beta 1, dot-product ranking: the same losses, the same weights, step by step, as
    LightGCN with the same seed (one regulariser, one BPR, one initialisation)."""
    common = ["model.layers=2", "model.dim=16", "train.reg=0.001", "train.lr=0.01", "train.batch_size=64"]
    torch.manual_seed(0)
    lgcn = build_model(tiny_dataset, load_config("lightgcn", overrides=common))
    cfg = load_config("symcere", overrides=[*common, "loss.cross_weight=0", "loss.alpha=0", "loss.beta=1"])
    tower = FakeTextTower(tiny_dataset.n_items, 16)
    torch.manual_seed(0)
    sym = SymCERE(tiny_dataset, cfg, text_tower=tower)
    opts = [torch.optim.Adam(m.parameters(), lr=0.01) for m in (lgcn, sym)]
    sampler = InteractionSampler(tiny_dataset.matrix("train"), 64, 1)
    for step, batch in enumerate(sampler.epoch(np.random.default_rng(0))):
        a, b = lgcn.loss(batch), sym.loss(batch)
        assert torch.equal(a["bpr"], b["rank"]) and torch.equal(a["reg"], b["reg"]), step
        assert torch.equal(a["total"], b["total"])
        for opt, terms in ((opts[0], a), (opts[1], b)):
            opt.zero_grad()
            terms["total"].backward()
            opt.step()
    assert torch.equal(lgcn.encoder.user_emb.weight, sym.encoder.user_emb.weight)
    lgcn.eval(), sym.eval()
    assert torch.equal(lgcn.score(torch.arange(5)), sym.score(torch.arange(5)))


# ----------------------------------------------------------------------------------------- real text tower
def test_default_path_with_packaged_minilm(tmp_path, monkeypatch, capfd):
    """The default (frozen packaged MiniLM) works offline; embeddings are cached under $SYMCERE_CACHE."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("SYMCERE_CACHE", str(tmp_path / "cache"))
    ds = build_tiny_dataset(tmp_path / "data", n_users=12, n_items=20, per_user=6, cold_item=False)
    assert ds.n_items == 20
    cfg = small_config("symcere", "text.max_tokens=32", "text.n_views=1")
    assert cfg["text"]["model"] == "minilm" and cfg["text"]["mode"] == "frozen"
    torch.manual_seed(0)
    model = build_model(ds, cfg)
    assert "encoding texts" in capfd.readouterr().err  # the first build encodes, with a progress bar
    assert model.text.cache is not None and model.text.hidden_size == 384
    assert list((tmp_path / "cache").glob("text_*.pt")), "frozen embeddings are cached on disk"
    model.on_epoch_start(1)
    terms = model.loss(batch_of(ds, model))
    assert set(terms) >= {"rank", "cross", "intra", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert model.text.proj.weight.grad.abs().sum() > 0
    # items of the same cluster have more similar MiniLM embeddings than items of different clusters
    base = losses.l2_normalize(model.text.cache.base)
    sim = base @ base.T
    cluster = torch.arange(20) % 3
    same = (cluster[:, None] == cluster[None, :]) & ~torch.eye(20, dtype=torch.bool)
    assert sim[same].mean() > sim[~same].mean()
    model.eval()
    assert torch.isfinite(model.score(torch.arange(3))).all()
    # progress=False (train --quiet, experiment plans): no bar at all, not even the weight-loading one
    build_model(ds, small_config("symcere", "text.max_tokens=16", "text.n_views=1"), progress=False)
    assert capfd.readouterr().err == ""


def test_default_preset_dot_ranking(tiny_dataset):
    """The default preset: raw dot-product BPR and score, alignment on the sphere."""
    cfg = load_config("symcere", overrides=["model.dim=16", "model.layers=2", "train.threads=1"])
    assert cfg["preset"] == "default" and cfg["model"]["rank_normalize"] is False
    model = SymCERE(tiny_dataset, cfg, text_tower=FakeTextTower(tiny_dataset.n_items, 16))
    model.on_epoch_start(1)
    terms = model.loss(batch_of(tiny_dataset, model))
    assert set(terms) == {"rank", "cross", "reg", "total"}
    model.eval()
    users = torch.arange(3)
    gu, gi = model.propagate()
    assert torch.allclose(model.score(users), gu[users] @ gi.T, atol=1e-6)  # raw dot product, no cosine

def test_shuffled_texts_control_permutes_item_texts(tiny_dataset):
    from symcere.text import item_texts

    texts = item_texts(tiny_dataset)
    assert texts == list(tiny_dataset.item_texts)
    shuffled = item_texts(tiny_dataset, shuffle=True, seed=3)
    assert sorted(shuffled) == sorted(texts)  # the same texts ...
    moved = sum(a != b for a, b in zip(shuffled, texts, strict=True))
    assert moved >= len(texts) // 2  # ... mostly on other items
    assert shuffled == item_texts(tiny_dataset, shuffle=True, seed=3)
    assert shuffled != item_texts(tiny_dataset, shuffle=True, seed=4)


def _user_text(dataset, hidden: int = 12, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(dataset.n_users, hidden, generator=g)
    table[0] = 0.0  # user 0 has no review text: left out of L_user
    return table


def test_user_alignment_term_by_hand(tiny_dataset):
    """loss.user_weight > 0 adds w * symmetric InfoNCE(hat(g_u), hat(W p_u)) over distinct users with text."""
    cfg = small_config("symcere", "train.reg=0", "loss.user_weight=0.5")
    torch.manual_seed(0)
    table = _user_text(tiny_dataset)
    model = SymCERE(tiny_dataset, cfg, text_tower=FakeTextTower(tiny_dataset.n_items, 16), user_text=table)
    model.on_epoch_start(1)
    batch = batch_of(tiny_dataset, model)
    terms = model.loss(batch)
    assert "user" in terms and torch.isclose(terms["total"], sum(v for k, v in terms.items() if k != "total"))
    g_users, _ = graph(model)
    uu = torch.unique(batch["users"])
    uu = uu[uu != 0]
    g = losses.l2_normalize(g_users[uu])
    p = losses.l2_normalize(model.text.proj(table[uu]))
    tau = cfg["loss"]["cross_tau"]
    logits = g @ p.T / tau
    target = torch.arange(len(uu))
    ce = torch.nn.functional.cross_entropy
    by_hand = 0.5 * (ce(logits, target) + ce(logits.T, target))
    assert torch.allclose(terms["user"], 0.5 * by_hand, atol=1e-6)
    terms["user"].backward()
    assert model.text.proj.weight.grad.abs().sum() > 0


def test_user_term_adds_exactly_its_value_and_weight_zero_builds_no_profiles(tiny_dataset, monkeypatch):
    """user_weight > 0 leaves every other term bit for bit and adds exactly terms['user'] to the total; at 0
    no profile is built (no encoder is touched)."""
    cfg_on = small_config("symcere", "train.reg=0", "loss.user_weight=0.5")
    cfg_off = small_config("symcere", "train.reg=0")
    torch.manual_seed(0)
    on = SymCERE(tiny_dataset, cfg_on, text_tower=FakeTextTower(tiny_dataset.n_items, 16), user_text=_user_text(tiny_dataset))
    monkeypatch.setattr(SymCERE, "build_user_profiles", staticmethod(lambda *a, **k: pytest.fail("built profiles")))
    torch.manual_seed(0)
    off = SymCERE(tiny_dataset, cfg_off, text_tower=FakeTextTower(tiny_dataset.n_items, 16))
    for m in (on, off):
        m.on_epoch_start(1)
    batch = batch_of(tiny_dataset, on)
    t_on, t_off = on.loss(batch), off.loss(batch)
    assert "user" not in t_off and t_on["user"].item() > 0
    for name in ("rank", "cross", "intra"):
        assert torch.equal(t_on[name], t_off[name]), name
    assert torch.allclose(t_on["total"], t_off["total"] + t_on["user"])


def test_user_profiles_are_mean_review_embeddings(tmp_path, monkeypatch):
    """build_user_profiles: row u = the mean frozen MiniLM embedding of u's own training reviews; zeros for a
    user without review text; with the shuffled-texts control the rows are permuted across users."""
    from symcere.schema import TextOptions
    from symcere.text import TextEncoder, user_reviews

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SYMCERE_CACHE", str(tmp_path / "cache"))
    ds = build_tiny_dataset(tmp_path / "data", n_users=8, n_items=12, per_user=5, cold_item=False)
    users, _ = ds.split_arrays("train")
    ds.train_reviews = ["" if u == 3 else r for u, r in zip(users.tolist(), ds.train_reviews, strict=True)]
    cfg = small_config("symcere", "text.max_tokens=32", "loss.user_weight=0.1")
    profiles = SymCERE.build_user_profiles(ds, cfg, progress=False)
    assert profiles.shape == (ds.n_users, 384)
    reviews = user_reviews(ds)
    assert reviews[3] == [] and torch.equal(profiles[3], torch.zeros(384))
    enc = TextEncoder(TextOptions(**{**cfg["text"], "mode": "frozen"}))
    for u in range(ds.n_users):
        if reviews[u]:
            assert torch.allclose(profiles[u], enc.encode(reviews[u]).float().mean(0), atol=1e-4), u
    cfg["text"]["shuffle_items"] = True
    shuffled = SymCERE.build_user_profiles(ds, cfg, progress=False)
    assert not torch.equal(shuffled, profiles)
    assert torch.allclose(torch.sort(shuffled.sum(1)).values, torch.sort(profiles.sum(1)).values, atol=1e-5)
