"""Tests for symcere.losses: equivalences, loop oracles, monotonicity and numerical stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from symcere.errors import SymcereError
from symcere.losses import (
    UserHistory,
    bce_loss,
    bpr_loss,
    cross_modal_loss,
    false_negative_mask,
    full_softmax,
    info_nce,
    l2_normalize,
    same_item_mask,
    sampled_softmax,
    sincere,
    supcon,
    symmetric_info_nce,
    symmetric_masks,
    symmetric_sincere,
)

DT = torch.float64


def _emb(b: int, d: int = 8, seed: int = 0, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = l2_normalize(torch.randn(b, d, generator=gen, dtype=DT))
    y = l2_normalize(torch.randn(n or b, d, generator=gen, dtype=DT))
    return x, y


def _rand_mask(b: int, n: int, p: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, n, generator=gen) < p


def _sincere_oracle(x: torch.Tensor, y: torch.Tensor, tau: float, mask: torch.Tensor) -> list[float]:
    """Eq. 6 with a Python loop: the positive plus every non-excluded, non-diagonal candidate."""
    out = []
    for a in range(x.shape[0]):
        pos = float(x[a] @ y[a]) / tau
        terms = [pos] + [float(x[a] @ y[b]) / tau for b in range(y.shape[0]) if b != a and not bool(mask[a, b])]
        m = max(terms)
        out.append(m + math.log(sum(math.exp(v - m) for v in terms)) - pos)
    return out


def _multi_positive_sincere_oracle(
    x: torch.Tensor, y: torch.Tensor, tau: float, positives: torch.Tensor
) -> list[float]:
    """Multi-positive SINCERE: mean over p in P_a of -log e^{s_ap} / (e^{s_ap} + sum_{j in N_a} e^{s_aj})."""
    out = []
    for a in range(x.shape[0]):
        s = [float(x[a] @ y[b]) / tau for b in range(y.shape[0])]
        pos = [b for b in range(y.shape[0]) if b == a or bool(positives[a, b])]
        neg = [b for b in range(y.shape[0]) if b not in pos]
        vals = []
        for p in pos:
            terms = [s[p]] + [s[j] for j in neg]
            m = max(terms)
            vals.append(m + math.log(sum(math.exp(v - m) for v in terms)) - s[p])
        out.append(sum(vals) / len(vals))
    return out


def _random_history(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density).astype(np.float32)
    return sp.csr_matrix(dense)


# --------------------------------------------------------------------------------------------- basics
def test_l2_normalize_unit_rows_and_zero_row_safe() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    y = l2_normalize(x)
    assert torch.allclose(y[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(y[1], torch.zeros(2))
    assert torch.allclose(l2_normalize(torch.randn(5, 7)).norm(dim=-1), torch.ones(5))


def test_bpr_hand_example_and_mean_sum() -> None:
    pos = torch.tensor([2.0, 0.0])
    neg = torch.tensor([1.0, 0.0])
    expected = [math.log1p(math.exp(-1.0)), math.log(2.0)]  # -log sigma(1), -log sigma(0)
    assert torch.allclose(bpr_loss(pos, neg, "none"), torch.tensor(expected))
    assert bpr_loss(pos, neg).item() == pytest.approx(sum(expected) / 2, abs=1e-6)
    assert bpr_loss(pos, neg, "sum").item() == pytest.approx(sum(expected), abs=1e-6)
    # sum == batch size * mean; multi-negative rows broadcast the positive
    p, n = torch.randn(6, dtype=DT), torch.randn(6, 4, dtype=DT)
    assert torch.allclose(bpr_loss(p, n, "sum"), bpr_loss(p, n, "mean") * n.numel())
    assert torch.allclose(bpr_loss(p, n, "none")[:, 2], bpr_loss(p, n[:, 2], "none"))


def test_bce_matches_torch_and_hand_example() -> None:
    pos, neg = torch.randn(5, dtype=DT), torch.randn(5, 3, dtype=DT)
    labels = torch.cat([torch.ones(5, dtype=DT), torch.zeros(15, dtype=DT)])
    logits = torch.cat([pos, neg.reshape(-1)])
    ref = F.binary_cross_entropy_with_logits(logits, labels)
    assert torch.allclose(bce_loss(pos, neg), ref)
    assert torch.allclose(bce_loss(pos, neg, "sum"), ref * 20)
    assert torch.allclose(bce_loss(pos, neg, "none").sum(), ref * 20)
    # one positive 0 and one negative 0: 2 * log 2 summed, log 2 on average
    z = torch.zeros(1)
    assert bce_loss(z, z).item() == pytest.approx(math.log(2.0))
    assert bce_loss(z, z, "sum").item() == pytest.approx(2 * math.log(2.0))


def test_full_softmax_equals_cross_entropy() -> None:
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(7, 30, generator=gen, dtype=DT)
    pos = torch.randint(0, 30, (7,), generator=gen)
    assert torch.allclose(full_softmax(scores, pos), F.cross_entropy(scores, pos))
    manual = -torch.log_softmax(scores / 0.2, dim=1).gather(1, pos[:, None]).squeeze(1)
    assert torch.allclose(full_softmax(scores, pos, tau=0.2, reduction="none"), manual)


def test_bad_reduction_raises() -> None:
    x, y = _emb(3)
    with pytest.raises(ValueError):
        info_nce(x, y, 0.1, reduction="avg")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- SINCERE
def test_sincere_without_mask_equals_infonce() -> None:
    x, y = _emb(12, seed=2)
    ref = F.cross_entropy(x @ y.T / 0.2, torch.arange(12))
    assert torch.allclose(info_nce(x, y, 0.2), ref)
    assert torch.equal(sincere(x, y, 0.2, None), info_nce(x, y, 0.2))
    empty = torch.zeros(12, 12, dtype=torch.bool)
    assert torch.equal(sincere(x, y, 0.2, empty), info_nce(x, y, 0.2))
    # a mask on the diagonal only is ignored: the positive always stays
    assert torch.equal(sincere(x, y, 0.2, torch.eye(12, dtype=torch.bool)), info_nce(x, y, 0.2))
    sym = symmetric_sincere(x, y, empty, empty, 0.2)
    assert torch.allclose(sym, 0.5 * (info_nce(x, y, 0.2) + info_nce(y, x, 0.2)))


@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: logits beyond one exp shift, the per-row/column path
def test_symmetric_losses_from_one_matrix_equal_both_directions(scale: float) -> None:
    """The symmetric losses build one similarity matrix for both directions; values and gradients equal the
    two one-directional losses (the definition, Eq. 9), masked or not."""
    x, y = (v * scale for v in _emb(10, seed=5))
    mask = _rand_mask(10, 10, 0.3, 5)
    for tau in (0.05, 0.5):
        for masked in (False, True):
            a, b = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
            if masked:
                got = symmetric_sincere(a, b, mask, mask.T, tau)
                want = 0.5 * (sincere(a, b, tau, mask) + sincere(b, a, tau, mask.T))
            else:
                got = symmetric_info_nce(a, b, tau)
                want = 0.5 * (info_nce(a, b, tau) + info_nce(b, a, tau))
            assert torch.allclose(got, want, rtol=1e-10, atol=1e-12), (scale, tau, masked)
            for g1, g2 in zip(torch.autograd.grad(got, (a, b)), torch.autograd.grad(want, (a, b)), strict=True):
                assert torch.allclose(g1, g2, rtol=1e-8, atol=1e-10), (scale, tau, masked)
    assert torch.equal(cross_modal_loss("infonce", x, y, None, 0.2), symmetric_info_nce(x, y, 0.2))
    assert torch.allclose(symmetric_info_nce(x, y, 0.2, "none").mean(), symmetric_info_nce(x, y, 0.2))
    with pytest.raises(ValueError, match="one shape"):
        symmetric_info_nce(x, y[:9], 0.2)


@pytest.mark.parametrize("scale", [1.0, 40.0])  # 40: beyond one exp shift (per-row / per-column shifts)
def test_symmetric_info_nce_batched_equals_one_problem_at_a_time(scale: float) -> None:
    """Leading dimensions (DGCLR's channels) are independent problems: values, per-row losses and gradients
    equal the loop over them; gradcheck in float64 on both exp paths."""
    gen = torch.Generator().manual_seed(11)
    for shape in ((3, 8, 5), (2, 3, 6, 4)):
        a = (l2_normalize(torch.randn(*shape, generator=gen, dtype=torch.float64)) * scale).requires_grad_(True)
        b = (l2_normalize(torch.randn(*shape, generator=gen, dtype=torch.float64)) * scale).requires_grad_(True)
        flat_a, flat_b = a.reshape(-1, *shape[-2:]), b.reshape(-1, *shape[-2:])
        rows = symmetric_info_nce(a, b, 0.1, "none")
        assert rows.shape == shape[:-1]
        want_rows = torch.stack([
            0.5 * (info_nce(x, y, 0.1, "none") + info_nce(y, x, 0.1, "none")) for x, y in zip(flat_a, flat_b, strict=True)
        ]).reshape(shape[:-1])
        assert torch.allclose(rows, want_rows, rtol=1e-10, atol=1e-10)
        got, want = symmetric_info_nce(a, b, 0.1), want_rows.mean()
        for g1, g2 in zip(torch.autograd.grad(got, (a, b)), torch.autograd.grad(want, (a, b)), strict=True):
            assert torch.allclose(g1, g2, rtol=1e-8, atol=1e-10)
        assert torch.allclose(symmetric_info_nce(a, b, 0.1, "sum"), want_rows.sum())
        x, y = (v.detach().clone().requires_grad_(True) for v in (a, b))
        assert torch.autograd.gradcheck(lambda p, q: symmetric_info_nce(p, q, 0.3, "none"), (x, y))
    with pytest.raises(ValueError, match="one shape"):
        symmetric_info_nce(a, b[..., :-1, :], 0.2)
    with pytest.raises(ValueError, match=r"\(B, d\)"):  # the masked form stays one (B, d) problem
        symmetric_sincere(a, b, None, torch.zeros(6, 6, dtype=torch.bool), 0.2)


@pytest.mark.parametrize("seed", range(4))
def test_sincere_equals_loop_oracle(seed: int) -> None:
    b, n = 9, 9 + seed  # also rectangular: extra candidates are negatives only
    x, y = _emb(b, seed=seed, n=n)
    mask = _rand_mask(b, n, 0.4, seed)
    got = sincere(x, y, 0.3, mask, reduction="none")
    assert torch.allclose(got, torch.tensor(_sincere_oracle(x, y, 0.3, mask), dtype=DT))
    assert torch.allclose(sincere(x, y, 0.3, mask), got.mean())
    if n == b:
        m2 = _rand_mask(b, b, 0.3, seed + 100)
        sym = symmetric_sincere(x, y, mask, m2, 0.3)
        want = 0.5 * (np.mean(_sincere_oracle(x, y, 0.3, mask)) + np.mean(_sincere_oracle(y, x, 0.3, m2)))
        assert sym.item() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_masking_more_never_raises_loss(seed: int) -> None:
    x, y = _emb(10, seed=seed)
    m1 = _rand_mask(10, 10, 0.2, seed)
    m2 = m1 | _rand_mask(10, 10, 0.3, seed + 50)
    l0 = sincere(x, y, 0.1, None, reduction="none")
    l1 = sincere(x, y, 0.1, m1, reduction="none")
    l2 = sincere(x, y, 0.1, m2, reduction="none")
    assert bool((l1 <= l0 + 1e-12).all()) and bool((l2 <= l1 + 1e-12).all())
    assert bool((l2 >= 0).all())


def test_fully_masked_row_has_zero_loss_and_finite_grads() -> None:
    x, y = _emb(6, seed=3)
    x.requires_grad_(True)
    y.requires_grad_(True)
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[2] = True  # anchor 2 has no negatives left
    per_row = sincere(x, y, 0.05, mask, reduction="none")
    assert per_row[2].item() == 0.0
    per_row.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert torch.equal(x.grad[2], torch.zeros(8, dtype=DT))
    # everything masked: zero loss, zero (finite) gradients, also through the symmetric form
    g, t = _emb(5, seed=4)
    g.requires_grad_(True)
    t.requires_grad_(True)
    full = torch.ones(5, 5, dtype=torch.bool)
    loss = symmetric_sincere(g, t, full, full, 0.01)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(g.grad, torch.zeros_like(g)) and torch.equal(t.grad, torch.zeros_like(t))


# --------------------------------------------------------------------------------------------- masks
def _mask_oracle(users: list[int], items: list[int], hist: sp.csr_matrix) -> torch.Tensor:
    rows = [set(hist.indices[hist.indptr[u] : hist.indptr[u + 1]].tolist()) for u in range(hist.shape[0])]
    b = len(users)
    out = torch.zeros(b, b, dtype=torch.bool)
    for a in range(b):
        for c in range(b):
            if a != c and (items[c] == items[a] or items[c] in rows[users[a]]):
                out[a, c] = True
    return out


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("seed", range(4))
def test_false_negative_mask_equals_loop_oracle(seed: int) -> None:
    n_users, n_items, b = 7, 12, 16
    hist = _random_history(n_users, n_items, 0.3, seed)
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_users, (b,), generator=gen)
    items = torch.randint(0, 6, (b,), generator=gen)  # few distinct items: duplicates in the batch
    assert len(set(items.tolist())) < b
    want = _mask_oracle(users.tolist(), items.tolist(), hist)
    history = UserHistory.from_scipy(hist)
    for h in (
        history,
        hist,
        torch.from_numpy(hist.toarray()).to_sparse(),
        torch.from_numpy(hist.toarray()).to_sparse_csr(),
    ):
        got = false_negative_mask(users, items, h)
        assert got.dtype == torch.bool and torch.equal(got, want)
        assert not bool(got.diagonal().any())
    g2t, t2g = symmetric_masks(users, items, history)
    assert torch.equal(g2t, want)
    # mask_t2g[a, b] = i_b == i_a or i_a in history(u_b), off the diagonal
    dense = hist.toarray() > 0
    for a in range(b):
        for c in range(b):
            expect = a != c and (items[c] == items[a] or bool(dense[users[c], items[a]]))
            assert bool(t2g[a, c]) == expect


def test_user_history_contains_and_edge_cases() -> None:
    hist = _random_history(5, 9, 0.4, 7)
    h = UserHistory.from_scipy(hist)
    dense = torch.from_numpy(hist.toarray() > 0)
    users = torch.tensor([0, 1, 2, 3, 4, 4])
    items = torch.tensor([0, 3, 8, 5, 1, 1])
    assert torch.equal(h.contains(users, items), dense[users][:, items])
    assert torch.equal(h.contains_pairs(users, items), dense[users, items])
    # out-of-range ids never match (no key aliasing), empty history contains nothing
    assert not bool(h.contains_pairs(torch.tensor([0, 5, -1]), torch.tensor([9, 0, 0])).any())
    empty = UserHistory(torch.zeros(4, dtype=torch.long), torch.zeros(0, dtype=torch.long), n_items=3)
    assert not bool(empty.contains(torch.arange(3), torch.arange(3)).any())
    m = false_negative_mask(torch.tensor([0, 1, 2]), torch.tensor([1, 1, 2]), empty)
    assert torch.equal(m, torch.tensor([[False, True, False], [True, False, False], [False, False, False]]))


# --------------------------------------------------------------------------------------------- SupCon
def test_supcon_without_extra_positives_equals_infonce() -> None:
    x, y = _emb(10, seed=5)
    assert torch.allclose(supcon(x, y, 0.2), info_nce(x, y, 0.2))
    assert torch.allclose(supcon(x, y, 0.2, torch.zeros(10, 10, dtype=torch.bool)), info_nce(x, y, 0.2))


@pytest.mark.parametrize("seed", range(3))
def test_supcon_vs_sincere_style(seed: int) -> None:
    """What is tested, per anchor a with positives P_a (diagonal included), negatives N_a = the rest:

    1. SupCon_a = mean_{p in P_a} -log e^{s_ap} / sum_{k in P_a u N_a} e^{s_ak} (loop oracle), and
    2. SupCon_a >= multi-positive SINCERE_a = mean_{p in P_a} -log e^{s_ap} / (e^{s_ap} + sum_{N_a} e^{s_aj}),
       strictly when |P_a| > 1 and with equality when |P_a| = 1 (the other positives' repulsion);
    3. with identical candidate rows for every positive (the text of one item repeated in the batch) and
       SINCERE_a = sincere(exclude = P_a minus a), exactly exp(SupCon_a) = exp(SINCERE_a) + |P_a| - 1,
       hence SupCon_a > log |P_a| while SINCERE_a -> 0 is attainable.
    """
    gen = torch.Generator().manual_seed(seed)
    items = torch.randint(0, 5, (12,), generator=gen)
    pos = same_item_mask(items)
    x, y = _emb(12, seed=seed)
    got = supcon(x, y, 0.25, pos, reduction="none")
    sims = x @ y.T / 0.25
    oracle = [
        float(np.mean([torch.logsumexp(sims[a], 0).item() - sims[a, p].item() for p in range(12) if pos[a, p]]))
        for a in range(12)
    ]
    assert torch.allclose(got, torch.tensor(oracle, dtype=DT))
    multi = torch.tensor(_multi_positive_sincere_oracle(x, y, 0.25, pos), dtype=DT)
    size = pos.sum(1)
    assert bool((got[size > 1] > multi[size > 1]).all())
    assert torch.allclose(got[size == 1], multi[size == 1])
    # identical candidates per item (text embeddings of the same item)
    table = l2_normalize(torch.randn(5, 8, generator=gen, dtype=DT))
    t = table[items]
    sc = supcon(x, t, 0.25, pos, reduction="none")
    sn = sincere(x, t, 0.25, pos & ~torch.eye(12, dtype=torch.bool), reduction="none")
    assert torch.allclose(sc.exp(), sn.exp() + size.to(DT) - 1)
    assert bool((sc > size.to(DT).log()).all())


# --------------------------------------------------------------------------------------------- SSM
def test_sampled_softmax_equals_infonce_and_masked_form() -> None:
    gen = torch.Generator().manual_seed(6)
    u, i = torch.randn(10, 8, generator=gen, dtype=DT), torch.randn(10, 8, generator=gen, dtype=DT)
    un, inn = l2_normalize(u), l2_normalize(i)
    assert torch.allclose(sampled_softmax(u, i, 0.1), info_nce(un, inn, 0.1))
    assert torch.allclose(sampled_softmax(u, i, 0.1, normalize=False), info_nce(u, i, 0.1))
    mask = _rand_mask(10, 10, 0.4, 6)
    assert torch.allclose(sampled_softmax(u, i, 0.1, mask), sincere(un, inn, 0.1, mask))
    # a constant adjustment cancels; a per-column one matches a hand-built cross-entropy
    assert torch.allclose(sampled_softmax(u, i, 0.1, logit_adjustment=torch.full((10,), 3.0)), info_nce(un, inn, 0.1))
    adj = torch.randn(10, generator=gen, dtype=DT)
    ref = F.cross_entropy(un @ inn.T / 0.1 + adj, torch.arange(10))
    assert torch.allclose(sampled_softmax(u, i, 0.1, logit_adjustment=adj), ref)


# --------------------------------------------------------------------------------------------- dispatcher
def test_cross_modal_dispatch() -> None:
    g, t = _emb(8, seed=8)
    users = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])
    items = torch.tensor([0, 1, 0, 2, 3, 4, 4, 5])
    history = UserHistory.from_scipy(_random_history(4, 6, 0.3, 8))
    masks = symmetric_masks(users, items, history)
    assert torch.equal(cross_modal_loss("sincere", g, t, masks, 0.2), symmetric_sincere(g, t, *masks, 0.2))
    assert torch.equal(cross_modal_loss("sincere", g, t, masks[0], 0.2), symmetric_sincere(g, t, *masks, 0.2))
    assert torch.allclose(
        cross_modal_loss("infonce", g, t, None, 0.2), 0.5 * (info_nce(g, t, 0.2) + info_nce(t, g, 0.2))
    )
    p = same_item_mask(items)
    assert torch.allclose(cross_modal_loss("supcon", g, t, p, 0.2), 0.5 * (supcon(g, t, 0.2, p) + supcon(t, g, 0.2, p)))
    with pytest.raises(SymcereError):
        cross_modal_loss("triplet", g, t, None, 0.2)


# --------------------------------------------------------------------------------------------- stability
def test_numerical_stability_small_tau_large_logits() -> None:
    gen = torch.Generator().manual_seed(9)
    b = 16
    g = (torch.randn(b, 8, generator=gen) * 100).requires_grad_(True)  # logits ~ 1e6 at tau = 0.01
    t = (torch.randn(b, 8, generator=gen) * 100).requires_grad_(True)
    items = torch.randint(0, 4, (b,), generator=gen)
    mask = _rand_mask(b, b, 0.5, 9)
    mask[0] = True
    losses = [
        info_nce(g, t, 0.01),
        sincere(g, t, 0.01, mask),
        symmetric_sincere(g, t, mask, mask.T, 0.01),
        symmetric_info_nce(g, t, 0.01),
        supcon(g, t, 0.01, same_item_mask(items)),
        sampled_softmax(g, t, 0.01, mask),
        sampled_softmax(g, t, 0.01, mask, normalize=False),
        full_softmax(g @ t.T, torch.arange(b), tau=0.01),
        bpr_loss((g * t).sum(1) * 1e3, -(g * t).sum(1) * 1e3),
        bce_loss((g * t).sum(1) * 1e3, (g @ t.T) * 1e3),
        cross_modal_loss("sincere", l2_normalize(g), l2_normalize(t), (mask, mask.T), 0.01),
    ]
    for loss in losses:
        assert torch.isfinite(loss), loss
        gg, gt = torch.autograd.grad(loss, (g, t), allow_unused=True)
        for grad in (gg, gt):
            assert grad is None or bool(torch.isfinite(grad).all())


def test_ssm_masks_in_batch_copies_of_the_positive():
    """``loss.ssm_mask`` (default): a copy of row a's positive elsewhere in the batch is the same item, so it
    leaves a's denominator; with the mask off it stays (the unmasked ablation)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import FakeDataset, small_config

    from symcere import losses
    from symcere.models import build_model

    ds = FakeDataset()
    batch = {"users": torch.tensor([0, 1, 2, 3]), "pos": torch.tensor([5, 5, 7, 8])}
    masked = build_model(ds, small_config("lightgcn", "loss.rec=ssm"))
    torch.manual_seed(0)
    unmasked = build_model(ds, small_config("lightgcn", "loss.rec=ssm", "loss.ssm_mask=false"))
    unmasked.load_state_dict(masked.state_dict())
    u, i = masked.propagate()
    un, itn = losses.l2_normalize(u[batch["users"]]), losses.l2_normalize(i[batch["pos"]])
    logits = un @ itn.T / masked.tau
    copies = torch.tensor([[False, True, False, False], [True, False, False, False], [False] * 4, [False] * 4])
    by_hand = (torch.logsumexp(logits.masked_fill(copies, float("-inf")), 1) - logits.diagonal()).mean()
    torch.testing.assert_close(masked.loss(batch)["ssm"], by_hand)
    plain = (torch.logsumexp(logits, 1) - logits.diagonal()).mean()
    torch.testing.assert_close(unmasked.loss(batch)["ssm"], plain)
    assert masked.loss(batch)["ssm"] < unmasked.loss(batch)["ssm"]


@pytest.mark.parametrize("mask_copies", [True, False])
def test_ssm_over_distinct_items_equals_the_batch_form(mask_copies: bool) -> None:
    """``sampled_softmax_items`` ((B, U) over the distinct positives, each counted as often as it occurs) is
    ``sampled_softmax`` on the (B, B) batch with or without the same-item mask: values and gradients; items
    no row has (a whole catalogue passed in) carry no weight."""
    from symcere.losses import sampled_softmax_items

    gen = torch.Generator().manual_seed(11)
    pos = torch.randint(0, 6, (30,), generator=gen)  # many copies per item
    for tau in (0.05, 0.7):
        u = l2_normalize(torch.randn(30, 8, generator=gen, dtype=DT)).requires_grad_(True)
        items = l2_normalize(torch.randn(9, 8, generator=gen, dtype=DT)).requires_grad_(True)
        mask = same_item_mask(pos) if mask_copies else None
        want = sampled_softmax(u, items[pos], tau, exclude_mask=mask, normalize=False)
        distinct, item_of = torch.unique(pos, return_inverse=True)
        got = sampled_softmax_items(u, items[distinct], item_of, tau, mask_copies=mask_copies)
        torch.testing.assert_close(got, want)
        for g1, g2 in zip(torch.autograd.grad(got, (u, items)), torch.autograd.grad(want, (u, items)), strict=True):
            torch.testing.assert_close(g1, g2)
        whole = sampled_softmax_items(u, items, pos, tau, mask_copies=mask_copies)
        torch.testing.assert_close(whole, want)


def test_fused_losses_refuse_a_second_derivative() -> None:
    """The fused kernels save exps without a graph: double backward raises instead of returning a wrong (zero)
    second derivative."""
    from symcere.losses import symmetric_sincere_items

    g = l2_normalize(torch.randn(6, 4, dtype=torch.float64)).requires_grad_(True)
    t = l2_normalize(torch.randn(6, 4, dtype=torch.float64)).requires_grad_(True)
    excluded = torch.zeros(6, 6, dtype=torch.bool)
    for loss in (symmetric_info_nce(g, t, 0.2), symmetric_sincere_items(g, t, torch.arange(6), excluded, 0.2)):
        (grad,) = torch.autograd.grad(loss, g, create_graph=True)
        with pytest.raises(RuntimeError):
            torch.autograd.grad(grad.sum(), g)
