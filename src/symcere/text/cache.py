"""Frozen-encoder embeddings of every item text and of its word-masked views (Eq. 10-11), cached on disk.

With a frozen f_text (symcere.md section 3.1.2) item embeddings never change, so ``FrozenTextCache`` computes
them once: the unmasked text and ``n_views`` seeded masked variants of each. It stores them as
``<cache_dir>/text_<key[:32]>.pt`` (written atomically by ``symcere.io``; ``torch.load(weights_only=True)``-safe)
where ``key`` (``cache_key``) is the sha256 of the model (path, config, weight files), pooling, max_tokens, item
pooling, mask settings, ``n_views``, ``seed`` and the texts. A later construction with the same key loads the
file and never builds the model. The tables are non-persistent buffers: they follow ``.to()`` of the module
that holds the cache (``TextTower``) and stay out of its ``state_dict``.

With ``item_pooling=review_mean`` the item tables are means of per-review embeddings, and those are kept too,
per review, in ``ReviewStore`` (``<cache_dir>/reviews_<key[:32]>.pt``, keyed by the model, token pooling and
max_tokens only): another item list over the same reviews (the shuffled-texts control, another split or k-core
of the data, more masked views) encodes only the reviews the store does not hold yet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from symcere.errors import SymcereError
from symcere.io import atomic_write
from symcere.locks import locked, remove_leftovers, temp_leftovers
from symcere.schema import TextOptions
from symcere.text.encoder import TextEncoder, pool_items
from symcere.text.models import default_cache_dir, model_fingerprint, resolve_model_path
from symcere.training import distributed

CACHE_FORMAT = 1
# the settings recorded (for information only) in a cache file's "config" entry
_RECORDED = (
    "model",
    "pooling",
    "max_tokens",
    "mode",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "mask_strategy",
    "mask_rate",
    "batch_size",
    "bf16",
    "cache_dir",
    "item_pooling",
)


def texts_sha256(texts: Sequence[str]) -> str:
    """sha256 over the texts, each prefixed by its UTF-8 length (so no two lists collide by concatenation)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def cache_key(opts: TextOptions, fingerprint: dict[str, Any], n_views: int, seed: int, texts: Sequence[str]) -> str:
    """The cache key: sha256 of everything the embeddings depend on (without views: neither seed nor masking)."""
    payload = {
        "format": CACHE_FORMAT,
        "model": opts.model,
        "fingerprint": fingerprint,
        "pooling": opts.pooling,
        "max_tokens": opts.max_tokens,
        "item_pooling": opts.item_pooling,
        "mask_strategy": opts.mask_strategy,
        "mask_rate": opts.mask_rate,
        "n_views": n_views,
        "seed": seed,
        "n_texts": len(texts),
        "texts_sha256": texts_sha256(texts),
    }
    if n_views == 0:
        for key in ("seed", "mask_strategy", "mask_rate"):
            del payload[key]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _pick_views(n: int, n_views: int, rng: np.random.Generator | torch.Generator | None, device: torch.device):
    """One view index in [0, n_views) per item, on ``device``."""
    if isinstance(rng, np.random.Generator):
        return torch.from_numpy(rng.integers(0, n_views, size=n)).to(device=device, dtype=torch.long)
    gen_device = rng.device if rng is not None else device
    return torch.randint(n_views, (n,), generator=rng, device=gen_device).to(device)


class FrozenTextCache(nn.Module):
    """Embeddings ``base`` (n_items, hidden) and masked ``views`` (n_items, n_views, hidden) of ``texts``.

    ``opts``: the text settings (taken from ``encoder`` when one is passed, to reuse a loaded frozen encoder).
    ``n_views``: masked views per text (None = ``opts.n_views``; 0 = none). ``cache_dir`` overrides
    ``opts.cache_dir``; both None means ``default_cache_dir()``. ``persist=False`` keeps the cache in memory only.
    """

    base: Tensor
    views: Tensor

    def __init__(
        self,
        texts: Sequence[str],
        opts: TextOptions | None = None,
        *,
        n_views: int | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        persist: bool = True,
        encoder: TextEncoder | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if encoder is not None:
            if encoder.opts.mode != "frozen":
                raise SymcereError("FrozenTextCache needs a frozen encoder (text.mode='frozen')")
            opts = encoder.opts
        if opts is None:
            raise SymcereError("FrozenTextCache needs the text options (opts) or a frozen encoder")
        self.opts = opts
        self.n_views = opts.n_views if n_views is None else int(n_views)
        if self.n_views < 0:
            raise SymcereError(f"n_views must be >= 0 (0 = no masked views), got {self.n_views}")
        self.texts = list(texts)
        self.seed = seed
        self.model_path = encoder.model_path if encoder is not None else resolve_model_path(opts.model)
        self.key = cache_key(opts, model_fingerprint(self.model_path), self.n_views, seed, self.texts)
        self.cache_dir = Path(cache_dir or opts.cache_dir or default_cache_dir()) if persist else None
        self.path = self.cache_dir / f"text_{self.key[:32]}.pt" if self.cache_dir is not None else None
        self.loaded_from_disk = False
        data = self._load() if self.path is not None else None
        if not distributed.all_true(data is not None):  # under torchrun: a miss on any rank -> all encode
            data = None
        if data is None:
            frozen = dataclasses.replace(opts, mode="frozen") if opts.mode != "frozen" else opts
            base, views = self._compute(encoder or TextEncoder(frozen), progress)
            if self.path is not None and distributed.is_local_main():  # one writer per machine
                self._save(base, views)
        else:
            base, views = data
            self.loaded_from_disk = True
        self.register_buffer("base", base, persistent=False)
        self.register_buffer("views", views, persistent=False)

    @property
    def hidden_size(self) -> int:
        return int(self.base.shape[1])

    def __len__(self) -> int:
        return len(self.texts)

    def get(self, item_ids: Tensor | Sequence[int]) -> Tensor:
        """Embeddings of the unmasked texts of ``item_ids`` -> (len, hidden), on the tables' device."""
        ids = torch.as_tensor(item_ids, dtype=torch.long).to(self.base.device)
        return self.base[ids]

    def get_view(
        self, item_ids: Tensor | Sequence[int], rng: np.random.Generator | torch.Generator | None = None
    ) -> Tensor:
        """One randomly chosen pre-computed masked view per item -> (len, hidden), on the tables' device."""
        if self.n_views == 0:
            raise SymcereError("this text cache was built without masked views (n_views=0)")
        dev = self.views.device
        ids = torch.as_tensor(item_ids, dtype=torch.long).to(dev)
        return self.views[ids, _pick_views(len(ids), self.n_views, rng, dev)]

    def _compute(self, encoder: TextEncoder, progress: bool) -> tuple[Tensor, Tensor]:
        masked = []
        for i, text in enumerate(self.texts):
            rng = np.random.default_rng([self.seed, i])
            masked.extend(encoder.mask(text, rng) for _ in range(self.n_views))
        if self.opts.item_pooling == "review_mean" and hasattr(encoder, "encode_sequences"):
            return self._compute_per_review(encoder, masked, progress)
        unique = list(dict.fromkeys([*self.texts, *masked]))  # equal strings are encoded once
        pos = {t: j for j, t in enumerate(unique)}
        emb = distributed.encode_sharded(encoder.encode, unique, progress=progress)  # a slice per rank
        base = emb[[pos[t] for t in self.texts]]
        views = emb[[pos[t] for t in masked]].reshape(len(self.texts), self.n_views, emb.shape[1])
        return base.contiguous(), views.contiguous()

    def _compute_per_review(self, encoder: TextEncoder, masked: list[str], progress: bool) -> tuple[Tensor, Tensor]:
        """Item tables as means of review embeddings, each review looked up in (or added to) the ReviewStore."""
        seqs, owner = encoder.item_sequences([*self.texts, *masked])
        directory = self.cache_dir if self.path is not None else None
        store = ReviewStore(directory, review_store_key(self.opts, model_fingerprint(self.model_path)))
        emb = store.embeddings(seqs, encoder, progress).to(encoder.device)
        pooled = pool_items(emb, owner, len(self.texts) + len(masked))
        n = len(self.texts)
        views = pooled[n:].reshape(n, self.n_views, pooled.shape[1])
        return pooled[:n].contiguous(), views.contiguous()

    def _load(self) -> tuple[Tensor, Tensor] | None:
        assert self.path is not None
        if not self.path.is_file():
            return None
        try:  # the file holds host-memory tensors; the holder moves them with .to()
            data = torch.load(self.path, map_location="cpu", weights_only=True)
            base, views = data["base"], data["views"]
            ok = (
                data.get("key") == self.key
                and base.shape[0] == len(self.texts)
                and views.shape[:2] == (len(self.texts), self.n_views)
            )
        except Exception:  # a corrupt or foreign file is just recomputed
            return None
        return (base, views) if ok else None

    def _save(self, base: Tensor, views: Tensor) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        settings = {**dataclasses.asdict(self.opts), "cache_dir": str(self.cache_dir)}
        payload = {
            "key": self.key,
            "config": {k: settings[k] for k in _RECORDED if isinstance(settings[k], str | int | float)},
            "n_views": self.n_views,
            "seed": self.seed,
            "base": base.cpu(),  # a file is device-free: written from host memory, loaded to it
            "views": views.cpu(),
        }
        with _write_lock(self.path):
            atomic_write(self.path, lambda fh: torch.save(payload, fh))


#: seconds a cache write waits for another process writing the same cache file before it stops with LockBusy
CACHE_LOCK_WAIT = 120.0


@contextmanager
def _write_lock(path: Path) -> Iterator[None]:
    """Hold the lock of a cache file (``symcere.locks``) around its write (a store's read-merge-write); once
    held, temporary files a killed writer left for this file are removed."""
    with locked(path, "text cache file", wait=CACHE_LOCK_WAIT):
        remove_leftovers(temp_leftovers(path.parent, [path.name]))
        yield


def review_store_key(opts: TextOptions, fingerprint: dict[str, Any]) -> str:
    """Key of a per-review store: what one sequence's embedding depends on (model, token pooling, max_tokens)."""
    payload = {
        "format": CACHE_FORMAT,
        "model": opts.model,
        "fingerprint": fingerprint,
        "pooling": opts.pooling,
        "max_tokens": opts.max_tokens,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class ReviewStore:
    """Frozen-encoder embeddings of single sequences (reviews) by content: ``digests`` (m, 16) uint8, the first
    16 bytes of each text's sha256, and ``emb`` (m, hidden) float32, in ``<directory>/reviews_<key[:32]>.pt``
    (``directory`` None: memory only). ``embeddings(seqs, encoder)`` encodes only the texts it does not hold and
    writes the grown store back (merged with what another process may have added meanwhile)."""

    def __init__(self, directory: str | os.PathLike[str] | None, key: str) -> None:
        self.key = key
        self.path = Path(directory) / f"reviews_{key[:32]}.pt" if directory is not None else None
        self.digests = torch.zeros(0, 16, dtype=torch.uint8)
        self.emb: Tensor | None = None
        self._read()

    def _read(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
            if data.get("key") == self.key and data["digests"].shape[0] == data["emb"].shape[0]:
                self.digests, self.emb = data["digests"], data["emb"]
        except Exception:  # a corrupt or foreign file is ignored (and replaced on the next write)
            return

    def __len__(self) -> int:
        return int(self.digests.shape[0])

    def embeddings(self, seqs: Sequence[str], encoder: TextEncoder, progress: bool = False) -> Tensor:
        """(len(seqs), hidden) float32 on the CPU: stored rows, plus the missing texts encoded once."""
        digests = [_digest(s) for s in seqs]
        row = {bytes(d): j for j, d in enumerate(self.digests.numpy())}
        missing = list(dict.fromkeys(s for s, d in zip(seqs, digests, strict=True) if d not in row))
        missing = distributed.union(missing)  # under torchrun: what any rank misses, encoded a slice per rank
        if missing:
            new = distributed.encode_sharded(encoder.encode_sequences, missing, progress=progress).float().cpu()
            new_digests = torch.from_numpy(np.frombuffer(b"".join(map(_digest, missing)), dtype=np.uint8).copy())
            self._add(new_digests.reshape(-1, 16), new)
            row = {bytes(d): j for j, d in enumerate(self.digests.numpy())}
        assert self.emb is not None or not seqs
        if not seqs:
            return torch.zeros(0, self.emb.shape[1] if self.emb is not None else encoder.hidden_size)
        return self.emb[torch.as_tensor([row[d] for d in digests], dtype=torch.long)]

    def _add(self, digests: Tensor, emb: Tensor) -> None:
        if self.path is None:
            return self._add_locked(digests, emb)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _write_lock(self.path):  # read, merge and write as one step: no other writer's rows are lost
            return self._add_locked(digests, emb)

    def _add_locked(self, digests: Tensor, emb: Tensor) -> None:
        if self.path is not None:
            self._read()  # another process may have grown the file since we read it
        have = {bytes(d) for d in self.digests.numpy()}
        keep = torch.as_tensor([bytes(d) not in have for d in digests.numpy()], dtype=torch.bool)
        base = self.emb if self.emb is not None else emb[:0]
        self.digests = torch.cat([self.digests, digests[keep]])
        self.emb = torch.cat([base, emb[keep]])
        if self.path is not None and distributed.is_local_main():  # one writer per machine
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = {"key": self.key, "digests": self.digests, "emb": self.emb}
            atomic_write(self.path, lambda fh: torch.save(payload, fh))
