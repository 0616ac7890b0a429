"""symmetric SINCERE over the batch's distinct items equals the (B, B) form of Eq. 7-9 with the masks of
symmetric_masks, values and gradients; UserHistory.excluded_items equals the dense exclusion relation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from symcere.losses import UserHistory, l2_normalize, symmetric_masks, symmetric_sincere, symmetric_sincere_items

DT = torch.float64


def _history(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


def _batch(seed: int, b: int = 24, n_users: int = 9, n_items: int = 14, density: float = 0.3):
    hist = _history(n_users, n_items, density, seed)
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, n_users, (b,), generator=gen)
    pos = torch.randint(0, 7, (b,), generator=gen)  # few distinct items: many copies in the batch
    return hist, users, pos, gen


@pytest.mark.parametrize("seed", range(5))
def test_excluded_items_equals_the_dense_relation(seed: int) -> None:
    hist, users, pos, _ = _batch(seed)
    items = torch.unique(torch.cat([pos, torch.tensor([13, 11])]))
    got = UserHistory.from_scipy(hist).excluded_items(users, pos, items)
    dense = hist.toarray() > 0
    want = torch.tensor(
        [[int(j) == int(p) or bool(dense[int(u), int(j)]) for j in items] for u, p in zip(users, pos, strict=True)]
    )
    assert got.dtype == torch.bool and torch.equal(got, want)
    flat = UserHistory.from_scipy(hist).excluded_flat(users, pos, items)  # the same relation as positions
    assert flat.dtype == torch.long and torch.equal(torch.unique(flat), want.view(-1).nonzero().squeeze(1))
    outside = UserHistory.from_scipy(hist).excluded_items(torch.tensor([-1, 99]), torch.tensor([-3, 2]), items)
    assert torch.equal(outside, torch.stack([torch.zeros(len(items), dtype=torch.bool), items == 2]))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tau", [0.05, 0.5])
@pytest.mark.parametrize("scale", [1.0, 80.0])  # 80: logits spread too wide for one shared exp shift
def test_item_form_equals_the_batch_form(seed: int, tau: float, scale: float) -> None:
    hist, users, pos, gen = _batch(seed)
    history = UserHistory.from_scipy(hist)
    items, inverse = torch.unique(pos, return_inverse=True)
    g = (scale * l2_normalize(torch.randn(len(pos), 8, generator=gen, dtype=DT))).requires_grad_(True)
    t_items = l2_normalize(torch.randn(len(items), 8, generator=gen, dtype=DT)).requires_grad_(True)

    m_g2t, m_t2g = symmetric_masks(users, pos, history)
    want = symmetric_sincere(g, t_items[inverse], m_g2t, m_t2g, tau)
    want_grads = torch.autograd.grad(want, (g, t_items))
    got = symmetric_sincere_items(g, t_items, inverse, history.excluded_items(users, pos, items), tau)
    got_grads = torch.autograd.grad(got, (g, t_items))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)
    rows = symmetric_sincere_items(g, t_items, inverse, history.excluded_items(users, pos, items), tau, "none")
    assert rows.shape == (len(pos),)
    flat = symmetric_sincere_items(g, t_items, inverse, history.excluded_flat(users, pos, items), tau, "none")
    assert torch.equal(flat, rows)  # positions or mask: the same entries set, the same numbers
    with pytest.raises(ValueError, match="flat excluded positions"):
        symmetric_sincere_items(g, t_items, inverse, torch.tensor([len(pos) * len(items)]), tau)


def test_everything_excluded_gives_zero_loss_and_zero_grads() -> None:
    g = l2_normalize(torch.randn(5, 4, dtype=DT)).requires_grad_(True)
    t = l2_normalize(torch.randn(3, 4, dtype=DT)).requires_grad_(True)
    loss = symmetric_sincere_items(g, t, torch.tensor([0, 1, 2, 0, 1]), torch.ones(5, 3, dtype=torch.bool), 0.01)
    loss.backward()
    assert abs(loss.item()) < 1e-12  # exp / log rounding of a zero
    assert g.grad.abs().max() < 1e-12 and t.grad.abs().max() < 1e-12
