"""The text tower t_i = W f_text(text_i) + b of symcere.md section 3.1.2, and the item texts it embeds.

``TextTower`` maps item ids to ``out_dim`` vectors: a ``FrozenTextCache`` (frozen mode) or a live
``TextEncoder`` (lora / full) followed by a learned linear projection to the graph embedding size. With
``text.lora_layers`` (LoRA on the top layers only) the live path is a ``TopLayerEncoder``: the lower layers'
states of every item text and of ``n_views`` pre-drawn masked views are cached once, a step runs the top layers.
``view=True`` gives the word-masked text view t' of Eq. 10-11, drawn from the tower's public generator
``rng`` (``reseed`` restarts it, e.g. per epoch so that a resumed run draws the same views). The cache tables
are buffers of the tower, so ``.to(device)`` / ``.to(dtype)`` moves them together with the projection.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from symcere.errors import SymcereError
from symcere.indexing import concat_ranges
from symcere.schema import TextOptions
from symcere.text.cache import FrozenTextCache
from symcere.text.encoder import TextEncoder


def item_texts(dataset: Any, shuffle: bool = False, seed: int = 0) -> list[str]:
    """The items' texts; ``shuffle=True`` is the negative control ``text.shuffle_items``: item i gets the text
    of item perm(i) (a seeded random permutation: about one item keeps its own text by chance), so the text
    distribution is unchanged but texts no longer describe their items. A gain that survives it is
    regularisation, not review content."""
    texts = list(dataset.item_texts)
    if not shuffle:
        return texts
    perm = np.random.default_rng([seed, 7]).permutation(len(texts))
    return [texts[j] for j in perm]


def user_reviews(dataset: Any) -> list[list[str]]:
    """Each user's non-empty training reviews, oldest first (``split_arrays`` is in (user, time) order)."""
    users, _ = dataset.split_arrays("train")
    reviews = list(getattr(dataset, "train_reviews", None) or [""] * len(users))
    per_user: list[list[str]] = [[] for _ in range(dataset.n_users)]
    for u, text in zip(users.tolist(), reviews, strict=True):
        if text and text.strip():
            per_user[u].append(text.strip())
    return per_user


class TextTower(nn.Module):
    """Item text -> ``out_dim`` vector: ``FrozenTextCache`` (frozen) or ``TextEncoder`` (lora / full) + ``nn.Linear``.

    ``forward(item_ids, view=False)`` embeds each distinct item of the call once (``torch.unique``) and
    expands back to the ids' order. ``view=True`` gives the word-masked text view: a random pre-computed
    view in frozen mode, freshly masked texts otherwise. ``opts`` are taken from ``encoder`` when one is
    passed. ``n_views`` (None = ``opts.n_views``), ``cache_dir`` and ``persist`` go to the frozen cache;
    ``num_threads`` to an encoder the tower builds. Outputs are on the projection's device and dtype.
    """

    def __init__(
        self,
        texts: Sequence[str],
        out_dim: int,
        opts: TextOptions | None = None,
        *,
        n_views: int | None = None,
        seed: int = 0,
        encoder: TextEncoder | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        persist: bool = True,
        num_threads: int | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if encoder is not None:
            opts = encoder.opts
        if opts is None:
            raise SymcereError("TextTower needs the text options (opts) or an encoder")
        self.opts = opts
        self.texts = list(texts)
        self.rng = np.random.default_rng(seed)
        self.cache: FrozenTextCache | None = None
        self.encoder: TextEncoder | None = None
        self.top: nn.Module | None = None
        if opts.mode == "frozen":
            self.cache = FrozenTextCache(
                self.texts,
                opts,
                n_views=n_views,
                seed=seed,
                cache_dir=cache_dir,
                persist=persist,
                encoder=encoder,
                progress=progress,
            )
            hidden = self.cache.hidden_size
        else:
            self.encoder = encoder or TextEncoder(opts, num_threads=num_threads)
            hidden = self.encoder.hidden_size
            if opts.mode == "lora" and self.encoder.lora_layers is not None:
                self._build_top(opts.n_views if n_views is None else int(n_views), seed, progress)
        self.hidden_size = hidden
        self.proj = nn.Linear(hidden, out_dim)
        if self.cache is not None:  # the tables live where the projection lives (e.g. built under a device)
            self.cache.to(device=self.proj.weight.device, dtype=self.proj.weight.dtype)

    def _build_top(self, n_views: int, seed: int, progress: bool) -> None:
        """Sequences of every item text and of its ``n_views`` masked views, their lower layers cached."""
        from symcere.text.toplayers import TopLayerEncoder

        assert self.encoder is not None
        texts = list(self.texts)
        for i, text in enumerate(self.texts):  # the views of item i: seeded by (seed, i), as in the frozen cache
            rng = np.random.default_rng([seed, i])
            texts.extend(self.encoder.mask(text, rng) for _ in range(n_views))
        seqs, owner = self.encoder.item_sequences(texts)
        unique = list(dict.fromkeys(seqs))
        row = {s: j for j, s in enumerate(unique)}
        self.n_views = n_views
        self.top = TopLayerEncoder(self.encoder, unique, int(self.encoder.lora_layers or 0), progress=progress)
        # text k (item texts, then views item-major) -> its sequences' rows in the top-layer cache
        self.register_buffer("seq_rows", torch.tensor([row[s] for s in seqs], dtype=torch.long), persistent=False)
        self.register_buffer("seq_owner", torch.tensor(owner, dtype=torch.long), persistent=False)
        counts = torch.bincount(self.seq_owner, minlength=len(texts))
        starts = torch.zeros(len(texts) + 1, dtype=torch.long)
        starts[1:] = torch.cumsum(counts, 0)
        self.register_buffer("seq_starts", starts, persistent=False)

    def _top_hidden(self, uniq: Tensor, view: bool) -> Tensor:
        """Embeddings of the distinct items ``uniq`` through the top-layer path (one random view each)."""
        n = len(self.texts)
        dev = self.seq_rows.device
        items = uniq.to(dev)
        if view:
            if self.n_views == 0:
                raise SymcereError("this text tower was built without masked views (n_views=0)")
            pick = torch.from_numpy(self.rng.integers(0, self.n_views, size=len(items))).to(dev)
            texts = n + items * self.n_views + pick
        else:
            texts = items
        start, stop = self.seq_starts[texts], self.seq_starts[texts + 1]
        count = stop - start
        owner, seq = concat_ranges(start, count)
        emb = self.top(self.seq_rows[seq])
        from symcere.text.encoder import pool_items

        return pool_items(emb, owner, len(items))

    def reseed(self, seed: int | Sequence[int]) -> None:
        """Restart the generator of the masked views (``np.random.default_rng(seed)``)."""
        self.rng = np.random.default_rng(seed)

    def hidden(self, item_ids: Tensor | Sequence[int], view: bool = False) -> Tensor:
        """Pre-projection embeddings (len(item_ids), hidden); each distinct item embedded once."""
        weight = self.proj.weight
        ids = torch.as_tensor(item_ids, dtype=torch.long)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        if self.cache is not None:
            emb = self.cache.get_view(uniq, self.rng) if view else self.cache.get(uniq)
        elif self.top is not None:
            emb = self._top_hidden(uniq, view)
        else:
            assert self.encoder is not None
            texts = [self.texts[i] for i in uniq.tolist()]
            if view:
                texts = [self.encoder.mask(t, self.rng) for t in texts]
            emb = self.encoder(texts)
        return emb.to(device=weight.device, dtype=weight.dtype)[inverse.to(weight.device)]

    def forward(self, item_ids: Tensor | Sequence[int], view: bool = False) -> Tensor:
        """Projected text embeddings (len(item_ids), out_dim)."""
        return self.proj(self.hidden(item_ids, view=view))

    @torch.no_grad()
    def all_items(self, progress: bool = False) -> Tensor:
        """No-grad projected embeddings of every item's unmasked text -> (n_items, out_dim)."""
        if self.cache is not None:
            emb = self.cache.base
        elif self.top is not None:
            was_training = self.training
            self.eval()
            emb = self._top_hidden(torch.arange(len(self.texts), device=self.seq_rows.device), view=False)
            self.train(was_training)
        else:
            assert self.encoder is not None
            emb = self.encoder.encode(self.texts, progress=progress)
        weight = self.proj.weight
        return self.proj(emb.to(device=weight.device, dtype=weight.dtype))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Projection parameters plus the encoder's trainable ones (none when frozen)."""
        return [p for p in self.parameters() if p.requires_grad]
