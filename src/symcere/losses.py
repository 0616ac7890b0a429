"""Pure tensor losses (torch only, no I/O, no model state).

Equation numbers "Eq. n" refer to section 3 of the SymCERE paper; "SSM Eq. n" to the sampled-softmax paper
(Wu et al., "On the Effectiveness of Sampled Softmax Loss for Item Recommendation").

Conventions
-----------
* Contrastive losses take an ``anchors`` matrix (B, d) and a ``candidates`` matrix (N, d) with N >= B; the
  positive of anchor row ``a`` is candidate row ``a`` (the "diagonal"); every other candidate is a negative
  unless a mask says otherwise. Similarity is the plain dot product: callers L2-normalise (Eq. 3) first.
* Boolean masks are (B, N). ``exclude_mask[a, b]`` True removes candidate b from anchor a's denominator;
  the diagonal (the positive) is never removed, whatever the mask says.
* ``reduction`` is ``"mean"`` (over anchors / rows), ``"sum"`` or ``"none"`` (per-row vector) everywhere.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from symcere.errors import SymcereError
from symcere.indexing import concat_ranges

__all__ = [
    "Reduction",
    "UserHistory",
    "bce_loss",
    "bpr_loss",
    "cross_modal_loss",
    "false_negative_mask",
    "full_softmax",
    "info_nce",
    "l2_normalize",
    "same_item_mask",
    "sampled_softmax",
    "sampled_softmax_items",
    "sincere",
    "supcon",
    "symmetric_info_nce",
    "symmetric_masks",
    "symmetric_sincere",
    "symmetric_sincere_items",
]

Reduction = Literal["mean", "sum", "none"]
CROSS_MODAL_KINDS = ("sincere", "infonce", "supcon")


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _diag_mask(b: int, n: int, device: torch.device) -> Tensor:
    """(b, n) bool, True at [a, a] for a < b."""
    return torch.eye(b, n, dtype=torch.bool, device=device)


def _check_pair(anchors: Tensor, candidates: Tensor) -> tuple[int, int]:
    if anchors.dim() != 2 or candidates.dim() != 2:
        raise ValueError("anchors and candidates must be 2-D (rows, dim)")
    b, n = anchors.shape[0], candidates.shape[0]
    if n < b:
        raise ValueError(
            f"need at least as many candidates ({n}) as anchors ({b}): row a's positive is row a"
        )
    return b, n


def _check_mask(mask: Tensor, b: int, n: int, name: str) -> Tensor:
    if mask.shape != (b, n):
        raise ValueError(f"{name} must have shape ({b}, {n}), got {tuple(mask.shape)}")
    return mask.to(torch.bool)


# --------------------------------------------------------------------------------------------- geometry
def l2_normalize(x: Tensor, eps: float = 1e-12, dim: int = -1) -> Tensor:
    """Project onto the unit hypersphere, x / max(||x||_2, eps) along ``dim`` (Eq. 3)."""
    return x / x.norm(p=2, dim=dim, keepdim=True).clamp_min(eps)


# --------------------------------------------------------------------------------------------- ranking
def bpr_loss(pos_scores: Tensor, neg_scores: Tensor, reduction: Reduction = "mean") -> Tensor:
    """BPR, -log sigma(s_pos - s_neg) computed as softplus(s_neg - s_pos) (Eq. 12; SSM Eq. 26).

    ``neg_scores`` is (B,) or (B, n_neg) (each negative paired with its row's positive). The paper (Eq. 12)
    writes a *sum* over triples; ``"mean"`` (the default) is the RecBole convention. The choice rescales the
    loss, hence the effective BPR weight beta of Eq. 13, by the number of triples in the batch.
    """
    if neg_scores.dim() == pos_scores.dim() + 1:
        pos_scores = pos_scores.unsqueeze(-1)
    values = F.softplus(neg_scores - pos_scores)
    if reduction == "none":
        return values
    return _reduce(values.reshape(-1), reduction)


def bce_loss(pos_scores: Tensor, neg_scores: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Pointwise binary cross-entropy on logits, positives labelled 1, negatives 0 (SSM Eq. 25, NeuMF).

    ``pos_scores`` (B,), ``neg_scores`` (B,) or (B, n_neg). Every score is one binary example:
    ``"mean"`` averages over all B * (1 + n_neg) examples (``BCEWithLogitsLoss`` on the concatenation, as
    RecBole's NeuMF does), ``"sum"`` is SSM Eq. 25 as written, ``"none"`` returns the per-row sum
    softplus(-s_pos) + sum_j softplus(s_neg_j), shape (B,).
    """
    neg = neg_scores if neg_scores.dim() == pos_scores.dim() + 1 else neg_scores.unsqueeze(-1)
    pos_term = F.softplus(-pos_scores)  # -log sigma(s)
    neg_term = F.softplus(neg)  # -log (1 - sigma(s))
    if reduction == "none":
        return pos_term + neg_term.sum(dim=-1)
    total = pos_term.sum() + neg_term.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / (pos_term.numel() + neg_term.numel())
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def full_softmax(
    user_scores_all_items: Tensor, pos_items: Tensor, tau: float = 1.0, reduction: Reduction = "mean"
) -> Tensor:
    """Softmax loss (SM) over the whole catalogue (SSM Eq. 27).

    ``user_scores_all_items`` (B, n_items) are the affinities f(u, j) (divided by ``tau`` here),
    ``pos_items`` (B,) the observed item per row. Equals ``F.cross_entropy``.
    """
    per_row = F.cross_entropy(user_scores_all_items / tau, pos_items.long(), reduction="none")
    return _reduce(per_row, reduction)


def sampled_softmax(
    user_emb: Tensor,
    item_emb: Tensor,
    tau: float,
    exclude_mask: Tensor | None = None,
    logit_adjustment: Tensor | None = None,
    *,
    normalize: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """In-batch sampled softmax, SSM (SSM Eq. 5), with temperature-aware cosine similarity.

    Row a of ``user_emb`` (B, d) is a user, row a of ``item_emb`` (N >= B, d) its observed item; the other
    rows are the in-batch negatives. ``logits = u @ i.T / tau`` on L2-normalised rows (``normalize=False``
    gives the inner-product variant).

    ``logit_adjustment`` (N,) is added to every column *after* the division by tau, to all rows and
    including the positive: pass ``-log q_j`` (q = in-batch sampling probability, ~ popularity) for the
    sampling-bias correction of Yi et al. (2019), or ``+tau_prior * log p_j`` for a logit-adjusted softmax.

    ``exclude_mask`` (B, N) removes in-batch items from row a's denominator (e.g. items the user already
    interacted with, or duplicates of the positive), the positive itself always stays: this is a
    "SINCERE-SSM" (same form as Eq. 6). Without mask or adjustment this equals :func:`info_nce`.
    """
    if normalize:
        user_emb, item_emb = l2_normalize(user_emb), l2_normalize(item_emb)
    b, n = _check_pair(user_emb, item_emb)
    logits = user_emb @ item_emb.T / tau
    if logit_adjustment is not None:
        if logit_adjustment.shape != (n,):
            raise ValueError(f"logit_adjustment must have shape ({n},), got {tuple(logit_adjustment.shape)}")
        logits = logits + logit_adjustment.to(logits.dtype).unsqueeze(0)
    return _masked_diag_ce(logits, exclude_mask, reduction)


def sampled_softmax_items(
    user_emb: Tensor,
    item_emb: Tensor,
    item_of: Tensor,
    tau: float,
    *,
    mask_copies: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """:func:`sampled_softmax` over a batch's positives computed over its DISTINCT positive items: one (B, U)
    similarity matrix instead of (B, B), each item counted as often as it occurs; the same loss up to
    floating-point rounding.

    ``user_emb`` (B, d): row a is a user; ``item_emb`` (U, d): the distinct positive items; ``item_of`` (B,):
    the row of user a's positive in ``item_emb``. Row a's denominator holds every in-batch positive; with
    ``mask_copies`` (``same_item_mask`` as ``exclude_mask``) the copies of a's own positive leave it, the
    positive itself stays once. Normalise the rows first for the cosine form.
    """
    b = user_emb.shape[0]
    if item_emb.dim() != 2 or user_emb.dim() != 2 or item_of.shape != (b,):
        raise ValueError("need user_emb (B, d), item_emb (U, d) and item_of (B,)")
    item_of = item_of.long()
    logits = user_emb @ item_emb.T / tau  # (B, U)
    pos = logits.gather(1, item_of.unsqueeze(1))  # (B, 1)
    copies = torch.bincount(item_of, minlength=item_emb.shape[0]).to(logits.dtype)
    weighted = logits + copies.log().unsqueeze(0)  # log(copies_j e^{s_aj}); an item no row has: -inf
    if mask_copies:  # a's own item once: the positive, its other copies dropped
        weighted = weighted.scatter(1, item_of.unsqueeze(1), pos)
    return _reduce(torch.logsumexp(weighted, dim=1) - pos.squeeze(1), reduction)


# --------------------------------------------------------------------------------------------- contrastive
def _masked_diag_ce(logits: Tensor, exclude_mask: Tensor | None, reduction: str) -> Tensor:
    """-log softmax of the diagonal entry of each row, excluded entries set to -inf (diagonal kept)."""
    b, n = logits.shape
    if exclude_mask is not None:
        drop = _check_mask(exclude_mask, b, n, "exclude_mask").to(logits.device)
        drop = drop & ~_diag_mask(b, n, logits.device)
        logits = logits.masked_fill(drop, float("-inf"))
    per_row = torch.logsumexp(logits, dim=1) - logits.diagonal()
    return _reduce(per_row, reduction)


def info_nce(anchors: Tensor, positives: Tensor, tau: float, reduction: Reduction = "mean") -> Tensor:
    """InfoNCE with in-batch negatives (Eq. 4 / Eq. 10).

    Row a's positive is ``positives[a]``; all other rows of ``positives`` are negatives. Inputs are assumed
    L2-normalised by the caller; similarity is the dot product divided by ``tau``.
    """
    _check_pair(anchors, positives)
    return _masked_diag_ce(anchors @ positives.T / tau, None, reduction)


def sincere(
    anchors: Tensor,
    candidates: Tensor,
    tau: float,
    exclude_mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """SINCERE (Eq. 6; one direction of Eq. 7 / 8): only true negatives in the denominator.

    logits = anchors @ candidates.T / tau; the positive of row a is column a. ``exclude_mask[a, b]`` True
    drops column b from row a's denominator (logit set to -inf before the logsumexp); the diagonal is always
    kept, so a row whose negatives are all excluded has loss exactly 0 and finite (zero) gradients.
    ``exclude_mask=None`` is InfoNCE (Eq. 4).
    """
    _check_pair(anchors, candidates)
    return _masked_diag_ce(anchors @ candidates.T / tau, exclude_mask, reduction)


def symmetric_sincere(
    g: Tensor,
    t: Tensor,
    mask_g2t: Tensor | None,
    mask_t2g: Tensor | None,
    tau: float,
    reduction: Reduction = "mean",
) -> Tensor:
    """Symmetric SINCERE, 0.5 * (L_{G->T} + L_{T->G}) (Eq. 7-9).

    ``g`` (B, d) are the normalised interaction embeddings g_{u,i}, ``t`` (B, d) the normalised item-text
    embeddings; build the two masks with :func:`symmetric_masks` (``mask_t2g == mask_g2t.T``). One similarity
    matrix serves both directions (``t @ g.T`` is its transpose). Without masks this is
    :func:`symmetric_info_nce`.
    """
    _check_square(g, t)
    if mask_g2t is None and mask_t2g is None:
        return symmetric_info_nce(g, t, tau, reduction)
    logits = g @ t.T / tau
    g2t = _masked_diag_ce(logits, mask_g2t, reduction)
    t2g = _masked_diag_ce(logits.T, mask_t2g, reduction)
    return 0.5 * (g2t + t2g)


def symmetric_info_nce(a: Tensor, b: Tensor, tau: float, reduction: Reduction = "mean") -> Tensor:
    """0.5 * (info_nce(a, b) + info_nce(b, a)) (Eq. 4 in both directions, the InfoNCE form of Eq. 9).

    ``a`` and ``b`` are (..., B, d); row a's positive is row a of the other side. Leading dimensions are
    independent problems (e.g. DGCLR's K channels, (K, B, d)); ``"none"`` returns the (..., B) per-row losses,
    ``"mean"`` / ``"sum"`` reduce over all of them. One similarity matrix, one exp and a fused backward serve
    both directions (:class:`_SymmetricInfoNCE`).
    """
    _check_square(a, b, batched=True)
    return _reduce(_SymmetricInfoNCE.apply(a, b, float(tau)), reduction)


class _SymmetricInfoNCE(torch.autograd.Function):
    """Per-row 0.5 * (L_{a->b} + L_{b->a}) of :func:`symmetric_info_nce` in a few passes over one (..., B, B)
    matrix: InfoNCE's denominators hold the positive, so nothing is masked."""

    @staticmethod
    def forward(ctx: object, a: Tensor, b: Tensor, tau: float) -> Tensor:
        a_tau = a / tau
        logits = torch.matmul(a_tau, b.transpose(-1, -2))  # (..., B, B) similarities / tau
        pos = (a_tau * b).sum(dim=-1)  # (..., B) the diagonal
        bound = float(a_tau.norm(dim=-1).max() * b.norm(dim=-1).max()) if a.numel() else 0.0
        if 2 * bound < 0.9 * -math.log(torch.finfo(logits.dtype).tiny):  # one shift for rows and columns
            e_row = e_col = logits.sub_(bound).exp_()
            row_shift = col_shift = logits.new_tensor(bound)
        else:
            row_shift, col_shift = logits.amax(dim=-1), logits.amax(dim=-2)
            e_row = (logits - row_shift.unsqueeze(-1)).exp_()
            e_col = logits.sub_(col_shift.unsqueeze(-2)).exp_()
        d_row, d_col = e_row.sum(dim=-1), e_col.sum(dim=-2)
        ctx.save_for_backward(a_tau, b, e_row, e_col, d_row, d_col)
        ctx.tau, ctx.shared = tau, e_row is e_col
        return 0.5 * (torch.log(d_row) + row_shift + torch.log(d_col) + col_shift) - pos

    @staticmethod
    @once_differentiable  # the saved exps carry no graph: a second derivative raises instead of being wrong
    def backward(ctx: object, grad: Tensor) -> tuple[Tensor | None, ...]:
        a_tau, b, e_row, e_col, d_row, d_col = ctx.saved_tensors
        w = 0.5 * grad
        r, q = (w / d_row).unsqueeze(-1), (w / d_col).unsqueeze(-2)
        if ctx.shared:  # d logits = e * (r 1^T + 1 q^T) - diag(grad)
            d_logits = (r + q).mul_(e_row)
        else:
            d_logits = torch.mul(e_row, r).addcmul_(e_col, q)
        d_logits.diagonal(dim1=-2, dim2=-1).sub_(grad)
        d_a = torch.matmul(d_logits, b).div_(ctx.tau)
        d_b = torch.matmul(d_logits.transpose(-1, -2), a_tau)
        return d_a, d_b, None


def _check_square(a: Tensor, b: Tensor, batched: bool = False) -> None:
    if (a.dim() < 2 if batched else a.dim() != 2) or a.shape != b.shape:
        shape = "(..., B, d)" if batched else "(B, d)"
        raise ValueError(f"a symmetric loss needs two {shape} tensors of one shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")


def symmetric_sincere_items(
    g: Tensor,
    t_items: Tensor,
    item_of: Tensor,
    excluded: Tensor,
    tau: float,
    reduction: Reduction = "mean",
) -> Tensor:
    """:func:`symmetric_sincere` with the masks of :func:`symmetric_masks`, computed over the batch's DISTINCT
    items: one (B, U) similarity matrix instead of two (B, B) ones, the same loss up to floating-point rounding.

    ``g`` (B, d): normalised g_{u_a,i_a}; ``t_items`` (U, d): normalised texts of the distinct items;
    ``item_of`` (B,): column of i_a in ``t_items``; ``excluded`` (B, U) bool: item j is no true negative of
    interaction a, ``j == i_a or j in history(u_a)`` (:meth:`UserHistory.excluded_items`), or the same relation
    as 1-D int64 positions ``a * U + j`` in the row-major (B, U) matrix (:meth:`UserHistory.excluded_flat`, the
    fast form: a few per cent of the entries are excluded). Why it is exact:
    copies of one item in the batch are all excluded together or all kept, so in L_{G->T} (Eq. 7) a kept item
    counts as often as it occurs; in L_{T->G} (Eq. 8) the anchors t_{i_a} of one item share their candidate set
    {g_b : not excluded[b, i_a]}. The positive <g_a, t_{i_a}> / tau is added to each denominator.
    """
    b = g.shape[0]
    flat = excluded.dim() == 1 and not excluded.dtype.is_floating_point and excluded.dtype != torch.bool
    if t_items.dim() != 2 or item_of.shape != (b,) or not (flat or excluded.shape == (b, t_items.shape[0])):
        raise ValueError("need g (B, d), t_items (U, d), item_of (B,) and excluded (B, U) bool or flat positions")
    if flat and excluded.numel() and not (0 <= int(excluded.min()) and int(excluded.max()) < b * t_items.shape[0]):
        raise ValueError(f"flat excluded positions must lie in [0, B * U) = [0, {b * t_items.shape[0]})")
    excluded = excluded.long() if flat else excluded.to(torch.bool)
    per_row = _SincereItems.apply(g, t_items, item_of.long(), excluded, float(tau))
    return _reduce(per_row, reduction)


def _exclude(m: Tensor, excluded: Tensor, value: float) -> Tensor:
    """Set the excluded entries of the contiguous matrix ``m`` to ``value`` in place: a (B, U) bool mask, or flat
    positions (one index_fill_ over a few per cent of the entries instead of a pass over all of them)."""
    if excluded.dtype == torch.bool:
        return m.masked_fill_(excluded, value)
    m.view(-1).index_fill_(0, excluded, value)
    return m


class _SincereItems(torch.autograd.Function):
    """Per-row 0.5 * (L_{G->T} + L_{T->G}) of :func:`symmetric_sincere_items`, forward and backward in a few
    passes over one (B, U) matrix (autograd through masked_fill / logsumexp makes about three times as many)."""

    @staticmethod
    def forward(ctx: object, g: Tensor, t: Tensor, item_of: Tensor, excluded: Tensor, tau: float) -> Tensor:
        g_tau = g / tau
        logits = torch.mm(g_tau, t.T)  # (B, U) similarities / tau
        pos = (g_tau * t[item_of]).sum(dim=1)  # s_aa
        copies = torch.bincount(item_of, minlength=t.shape[0]).to(logits.dtype)
        # |logit| <= bound: with a spread of at most 2 * bound below the underflow limit one shift serves every
        # row and column (one exp); otherwise rows and columns are shifted by their own maxima
        bound = float(g_tau.norm(dim=1).max() * t.norm(dim=1).max()) if g.numel() and t.numel() else 0.0
        if 2 * bound < 0.9 * -math.log(torch.finfo(logits.dtype).tiny):
            row_max = col_max = logits.new_tensor(bound)
            e_row = e_col = _exclude(logits.sub_(bound).exp_(), excluded, 0.0)
            shift = row_max.expand_as(pos)
        else:
            _exclude(logits, excluded, float("-inf"))
            row_max = torch.maximum(logits.amax(dim=1), pos)
            pos_max = torch.full_like(copies, float("-inf")).scatter_reduce_(0, item_of, pos, "amax")
            col_max = torch.maximum(logits.amax(dim=0), pos_max)
            e_row = (logits - row_max.unsqueeze(1)).exp_()
            e_col = logits.sub_(col_max.unsqueeze(0)).exp_()
            shift = col_max[item_of]
            row_max = row_max.expand_as(pos)
        # G->T (row a): kept items j, each counted copies_j times, plus the positive
        d_row = torch.mv(e_row, copies) + torch.exp(pos - row_max)
        # T->G (column j): the candidates g_b of the texts of item j, plus each anchor's positive
        d_col = e_col.sum(dim=0)[item_of] + torch.exp(pos - shift)
        g2t = torch.log(d_row) + row_max - pos
        t2g = torch.log(d_col) + shift - pos
        ctx.save_for_backward(g_tau, t, item_of, e_row, e_col, copies, d_row, d_col, pos, row_max, shift)
        ctx.tau, ctx.shared = tau, e_row is e_col
        return 0.5 * (g2t + t2g)

    @staticmethod
    @once_differentiable  # the saved exps carry no graph: a second derivative raises instead of being wrong
    def backward(ctx: object, grad: Tensor) -> tuple[Tensor | None, ...]:
        g_tau, t, item_of, e_row, e_col, copies, d_row, d_col, pos, row_max, shift = ctx.saved_tensors
        w = 0.5 * grad
        q = torch.zeros_like(copies).index_add_(0, item_of, w / d_col)  # (U,)
        r = w / d_row  # (B,)
        # saved tensors are never written (a retained graph, e.g. per-term gradients, backpropagates again)
        if ctx.shared:  # d logits = e * (r copies^T + 1 q^T)
            d_logits = torch.outer(r, copies).add_(q.unsqueeze(0)).mul_(e_row)
        else:
            d_logits = torch.mul(e_col, q.unsqueeze(0)).addcmul_(e_row, (r.unsqueeze(1) * copies.unsqueeze(0)))
        d_pos = w * (torch.exp(pos - row_max) / d_row + torch.exp(pos - shift) / d_col - 2)
        # s_aa = <g_a, t_{i_a}> / tau enters both denominators and both numerators
        d_g = torch.mm(d_logits, t).add_(d_pos.unsqueeze(1) * t[item_of]).div_(ctx.tau)
        d_t = torch.mm(d_logits.T, g_tau).index_add_(0, item_of, d_pos.unsqueeze(1) * g_tau)
        return d_g, d_t, None, None, None


def supcon(
    anchors: Tensor,
    candidates: Tensor,
    tau: float,
    positive_mask: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Supervised contrastive loss (Eq. 5), cross-view form ("L_out" of Khosla et al.).

    ``positive_mask[a, b]`` True marks candidate b as a positive of anchor a; the diagonal is always a
    positive. Per anchor, the loss is averaged over its positives P_a:
    ``mean_{p in P_a} [ logsumexp_{k in all candidates}(s_ak) - s_ap ]``. The *other positives stay in the
    denominator* (the intra-class repulsion SINCERE removes). With no extra positives this is InfoNCE.
    """
    b, n = _check_pair(anchors, candidates)
    logits = anchors @ candidates.T / tau
    pos = _diag_mask(b, n, logits.device)
    if positive_mask is not None:
        pos = pos | _check_mask(positive_mask, b, n, "positive_mask").to(logits.device)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per_row = -torch.where(pos, log_prob, torch.zeros_like(log_prob)).sum(dim=1) / pos.sum(dim=1)
    return _reduce(per_row, reduction)


# --------------------------------------------------------------------------------------------- masks
class UserHistory:
    """Vectorised membership test "item in history(user)" over a CSR user x item matrix.

    Each training pair is encoded as the int64 key ``user * n_items + item``; the keys are kept sorted and
    a query is answered with ``torch.searchsorted``. Build it once per dataset (building sorts all keys) and
    reuse it for every batch. Out-of-range users or items are never contained.
    """

    def __init__(self, indptr: Tensor, indices: Tensor, n_items: int | None = None) -> None:
        indptr = torch.as_tensor(indptr, dtype=torch.int64).cpu()
        indices = torch.as_tensor(indices, dtype=torch.int64).cpu()
        if indptr.dim() != 1 or indptr.numel() < 1:
            raise ValueError("indptr must be a non-empty 1-D tensor")
        self.n_users = int(indptr.numel() - 1)
        if n_items is None:
            n_items = int(indices.max().item()) + 1 if indices.numel() else 0
        self.n_items = int(n_items)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n_items):
            raise ValueError(f"item indices must lie in [0, {self.n_items})")
        if int(indptr[-1]) != indices.numel():
            raise ValueError("indptr[-1] must equal len(indices)")
        rows = torch.repeat_interleave(torch.arange(self.n_users, dtype=torch.int64), indptr.diff())
        self.keys: Tensor = torch.unique(rows * self.n_items + indices)  # sorted, deduplicated

    @classmethod
    def from_scipy(cls, matrix: object) -> UserHistory:
        """From a scipy.sparse matrix (users x items); nonzero entries are the history."""
        import scipy.sparse as sp  # local: keep the module importable with torch alone

        csr = sp.csr_matrix(matrix)
        csr.eliminate_zeros()
        csr.sort_indices()
        return cls(
            torch.from_numpy(csr.indptr.astype(np.int64)),
            torch.from_numpy(csr.indices.astype(np.int64)),
            n_items=csr.shape[1],
        )

    @classmethod
    def from_torch_sparse(cls, matrix: Tensor) -> UserHistory:
        """From a torch sparse COO or CSR tensor (users x items)."""
        csr = matrix.coalesce().to_sparse_csr() if matrix.layout == torch.sparse_coo else matrix
        if csr.layout != torch.sparse_csr:
            raise ValueError(f"expected a sparse COO/CSR tensor, got layout {matrix.layout}")
        return cls(csr.crow_indices(), csr.col_indices(), n_items=int(csr.shape[1]))

    @classmethod
    def coerce(cls, history: object) -> UserHistory:
        """Accept a ``UserHistory``, a torch sparse tensor or a scipy.sparse matrix."""
        if isinstance(history, UserHistory):
            return history
        if isinstance(history, Tensor):
            return cls.from_torch_sparse(history)
        return cls.from_scipy(history)

    def to(self, device: torch.device | str) -> UserHistory:
        """Move the key table (e.g. to the training device); returns ``self``."""
        self.keys = self.keys.to(device)
        return self

    def contains_pairs(self, users: Tensor, items: Tensor) -> Tensor:
        """Element-wise: ``out[k] = items[k] in history(users[k])`` (broadcasting shapes)."""
        users, items = torch.broadcast_tensors(users.long(), items.long())
        keys = self.keys.to(users.device)
        if keys.numel() == 0:
            return torch.zeros(users.shape, dtype=torch.bool, device=users.device)
        valid = (users >= 0) & (users < self.n_users) & (items >= 0) & (items < self.n_items)
        query = users * self.n_items + items
        pos = torch.searchsorted(keys, query.reshape(-1)).clamp_max(keys.numel() - 1)
        return (keys[pos] == query.reshape(-1)).reshape(query.shape) & valid

    def excluded_items(self, users: Tensor, pos: Tensor, items: Tensor) -> Tensor:
        """(B, U) bool for interactions ``(users[a], pos[a])`` and distinct items ``items`` (U,):
        ``items[j] == pos[a] or items[j] in history(users[a])``, the exclusions of
        :func:`symmetric_sincere_items` (the dense form of :meth:`excluded_flat`)."""
        b, n = users.numel(), items.numel()
        out = torch.zeros(b * n, dtype=torch.bool, device=users.device)
        out[self.excluded_flat(users, pos, items)] = True
        return out.view(b, n)

    def excluded_flat(self, users: Tensor, pos: Tensor, items: Tensor) -> Tensor:
        """The relation of :meth:`excluded_items` as 1-D int64 positions ``a * U + j`` of its True entries (some
        may repeat), built from the batch users' history rows: no (B, U) pass. ``items`` are distinct item
        indices (``torch.unique`` of the positives); an index outside the catalogue never matches."""
        users, pos, items = users.reshape(-1).long(), pos.reshape(-1).long(), items.reshape(-1).long()
        dev, b, n = users.device, users.numel(), items.numel()
        if b == 0 or n == 0 or self.n_items == 0:
            return torch.zeros(0, dtype=torch.long, device=dev)
        column = torch.full((self.n_items,), -1, dtype=torch.long, device=dev)  # item id -> j, or -1
        ok = (items >= 0) & (items < self.n_items)
        column[items[ok]] = torch.arange(n, device=dev)[ok]
        own = torch.where((pos >= 0) & (pos < self.n_items), column[pos.clamp(0, self.n_items - 1)], -1)
        rows = torch.arange(b, device=dev)
        parts = [(rows * n + own)[own >= 0]]  # j == pos[a]
        keys = self.keys.to(dev)
        uu, u_inv = torch.unique(users, return_inverse=True)
        inside = (uu >= 0) & (uu < self.n_users)
        if keys.numel() and bool(inside.any()):  # j in history(u_a): the distinct users' key ranges ...
            lo = torch.searchsorted(keys, uu * self.n_items)
            count = torch.where(inside, torch.searchsorted(keys, (uu + 1) * self.n_items), lo) - lo
            user_of, at = concat_ranges(lo, count)
            col = column[keys[at] % self.n_items]
            hit = col >= 0
            user_of, col = user_of[hit], col[hit]  # sorted by distinct user
            n_hit = torch.bincount(user_of, minlength=len(uu))
            row_of, k = concat_ranges((torch.cumsum(n_hit, 0) - n_hit)[u_inv], n_hit[u_inv])  # ... copied to each a
            parts.append(row_of * n + col[k])
        return torch.cat(parts)

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        """Pairwise (B_u, B_i) bool: ``out[a, b] = items[b] in history(users[a])``.

        Only the distinct users and items of the query are looked up (a training batch repeats both), then
        the small answer is expanded back: at B = 2048 this is several times cheaper than B*B searches.
        """
        users, items = users.reshape(-1).long(), items.reshape(-1).long()
        uu, u_inv = torch.unique(users, return_inverse=True)
        ii, i_inv = torch.unique(items, return_inverse=True)
        small = self.contains_pairs(uu.reshape(-1, 1), ii.reshape(1, -1))
        return small[u_inv][:, i_inv]


def same_item_mask(items: Tensor) -> Tensor:
    """(B, B) bool, ``M[a, b] = items[a] == items[b]`` (diagonal True): SupCon positives of Eq. 5."""
    return items.reshape(-1, 1) == items.reshape(1, -1)


def false_negative_mask(
    batch_users: Tensor, batch_items: Tensor, history: UserHistory | Tensor | object
) -> Tensor:
    """Graph->text exclusion mask for SINCERE (the N_i of Eq. 7), (B, B) bool.

    ``M[a, b] = (items[b] == items[a]) or (items[b] in history(users[a]))`` for b != a; the diagonal is
    always False. Interaction a = (u_a, i_a); candidate b is the text of item i_b, which is not a true
    negative for u_a if it is the same item or an item u_a already interacted with (training history).
    ``history`` is a :class:`UserHistory` (preferred: built once) or a scipy / torch sparse matrix.
    """
    hist = UserHistory.coerce(history)
    users, items = batch_users.reshape(-1).long(), batch_items.reshape(-1).long()
    mask = same_item_mask(items) | hist.contains(users, items)
    return mask & ~torch.eye(items.numel(), dtype=torch.bool, device=mask.device)


def symmetric_masks(
    users: Tensor, items: Tensor, history: UserHistory | Tensor | object
) -> tuple[Tensor, Tensor]:
    """The two exclusion masks of symmetric SINCERE (Eq. 7 and Eq. 8): ``(mask_g2t, mask_t2g)``.

    * ``mask_g2t[a, b]`` (graph anchor (u_a, i_a), text candidate t_{i_b}): excluded when
      ``i_b == i_a`` or ``i_b in history(u_a)`` (see :func:`false_negative_mask`).
    * ``mask_t2g[a, b]`` (text anchor t_{i_a}, graph candidate (u_b, i_b)): excluded when
      ``i_b == i_a`` or ``i_a in history(u_b)``, i.e. the pair (u_b, i_a) is itself observed, so g_{u_b,i_b}
      is not a true negative for the text of i_a. This is exactly ``mask_g2t.T``.

    Diagonals are False in both.
    """
    mask_g2t = false_negative_mask(users, items, history)
    return mask_g2t, mask_g2t.T


# --------------------------------------------------------------------------------------------- dispatcher
def cross_modal_loss(
    kind: str,
    g: Tensor,
    t: Tensor,
    masks: Tensor | tuple[Tensor | None, Tensor | None] | None,
    tau: float,
) -> Tensor:
    """Symmetric cross-modal loss 0.5 * (L_{G->T} + L_{T->G}) (Eq. 9) of the chosen ``kind``.

    ``g`` and ``t`` are (B, d) and L2-normalised by the caller (Eq. 3). ``masks`` depends on ``kind``:

    * ``"sincere"`` (Eq. 7-8): ``(mask_g2t, mask_t2g)`` exclusion masks from :func:`symmetric_masks`
      (a single tensor M is read as ``(M, M.T)``; None means no exclusion, i.e. InfoNCE);
    * ``"infonce"`` (Eq. 4): ignored (pass None);
    * ``"supcon"`` (Eq. 5): the positive mask ``same_item_mask(items)``, ``P[a, b] = items[a] == items[b]``;
      a single tensor P is used as ``(P, P.T)`` (P is symmetric), a tuple gives both directions.
    """
    if kind == "infonce":
        return symmetric_info_nce(g, t, tau)
    if isinstance(masks, Tensor):
        m_g2t, m_t2g = masks, masks.T
    elif masks is None:
        m_g2t = m_t2g = None
    else:
        m_g2t, m_t2g = masks
    if kind == "sincere":
        return symmetric_sincere(g, t, m_g2t, m_t2g, tau)
    if kind == "supcon":
        return 0.5 * (supcon(g, t, tau, m_g2t) + supcon(t, g, tau, m_t2g))
    raise SymcereError(f"unknown cross-modal loss {kind!r}; choose one of {', '.join(CROSS_MODAL_KINDS)}")
