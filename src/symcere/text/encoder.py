"""The Hugging Face text encoder f_text of symcere.md section 3.1.2: tokenise, run a pre-trained model, pool.

``TextEncoder(opts)`` loads ``opts.model`` offline (``text/models.py``) and maps texts to ``(n, hidden)``
float32 embeddings: token pooling ``mean`` / ``cls`` / ``last``, item pooling ``concat`` (one sequence) or
``review_mean`` (mean of the item's review embeddings), tuning ``frozen`` / ``lora`` (PEFT adapters on the
attention projections) / ``full``, optional bf16 autocast. ``mask`` draws the word-masked view of Eq. 10-11.

transformers and peft are imported when an encoder is built (``pip install 'symcere[text]'``), not on import.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from symcere.errors import SymcereError
from symcere.extras import MissingExtra, require
from symcere.schema import TextOptions
from symcere.text.masking import mask_item_text, split_reviews
from symcere.text.models import resolve_model_path

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
    """Silence Hugging Face's weight-loading bar, its warnings and log lines; restored on exit.

    Without transformers installed there is nothing of it to silence: only Python warnings are caught."""
    try:
        hf_logging: Any = require("transformers.utils.logging")
    except MissingExtra:
        hf_logging = None
    if hf_logging is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
        return
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


def bf16_autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device``'s type when ``enabled`` and supported (CPU; CUDA with bf16), else a no-op.

    On CPU it pays off only with native bf16 (AVX512-BF16 / AMX); elsewhere keep ``text.bf16=false``."""
    supported = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
    if enabled and supported:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TextEncoder(nn.Module):
    """A pre-trained Hugging Face encoder + pooling: ``forward(texts) -> (n, hidden)``.

    ``num_threads``: torch intra-op threads while ``encode`` runs (None = leave torch's setting).
    """

    def __init__(self, opts: TextOptions, *, num_threads: int | None = None) -> None:
        super().__init__()
        transformers = require("transformers", "the text encoder")
        self.opts = opts
        self.num_threads = num_threads
        self.model_path = resolve_model_path(opts.model)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            backbone = transformers.AutoModel.from_pretrained(self.model_path, local_files_only=True)
        except Exception as exc:  # turn loader failures into a user-facing message
            raise SymcereError(f"could not load text model {opts.model!r} from {self.model_path}: {exc}") from exc
        if self.tokenizer.pad_token is None:  # GPT-like tokenizers have no pad token
            fallback = self.tokenizer.eos_token or self.tokenizer.unk_token
            if fallback is None:
                raise SymcereError(f"tokenizer of {opts.model!r} has no pad, eos or unk token to pad with")
            self.tokenizer.pad_token = fallback
        if hasattr(backbone.config, "use_cache"):
            backbone.config.use_cache = False
        self.hidden_size: int = int(backbone.config.hidden_size)
        self.mask_token: str = self.tokenizer.mask_token or self.tokenizer.unk_token or "[MASK]"

        if opts.mode == "lora":
            peft = require("peft", "LoRA tuning of the text encoder")
            targets = opts.lora_targets or default_lora_targets([n for n, _ in backbone.named_modules()])
            lora_cfg = peft.LoraConfig(
                r=opts.lora_r,
                lora_alpha=opts.lora_alpha,
                lora_dropout=opts.lora_dropout,
                target_modules=list(targets),
                bias="none",
            )
            try:
                with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                    warnings.simplefilter("ignore", FutureWarning)
                    backbone = peft.get_peft_model(backbone, lora_cfg)
            except ValueError as exc:
                raise SymcereError(f"could not apply LoRA to {opts.model!r} with targets {targets}: {exc}") from exc
            self.lora_targets: list[str] = list(targets)
        else:
            self.lora_targets = []
            backbone.requires_grad_(opts.mode == "full")
        self.backbone = backbone
        if opts.mode == "frozen":
            self.backbone.eval()

    def train(self, mode: bool = True) -> TextEncoder:
        """Like ``nn.Module.train``, but a frozen backbone always stays in eval mode (no dropout)."""
        super().train(mode)
        if self.opts.mode == "frozen":
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
            max_length=self.opts.max_tokens,
            return_tensors="pt",
        )
        dev = self.device
        return {k: v.to(dev) for k, v in batch.items()}

    def pool(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Pool token states (n, L, h) into (n, h) with the configured pooling."""
        if self.opts.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.to(hidden.dtype)
        if self.opts.pooling == "mean":
            summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
            return summed / mask.sum(dim=1, keepdim=True).clamp_min(1.0)
        # "last": the last non-padding position, correct for both left and right padding
        positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(attention_mask)
        last = (positions * attention_mask.long()).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def forward(self, texts: Sequence[str]) -> Tensor:
        """Embed ``texts`` -> float32 tensor (n, hidden_size) on the encoder's device; gradients flow in lora /
        full modes. With ``item_pooling="review_mean"`` each text is the mean of its reviews' embeddings."""
        dev = self.device
        if len(texts) == 0:
            return torch.zeros(0, self.hidden_size, device=dev)
        if self.opts.item_pooling == "review_mean":
            parts = [split_reviews(t) for t in texts]
            owner = torch.tensor([i for i, p in enumerate(parts) for _ in p], device=dev)
            emb = self._embed([r for p in parts for r in p])
            summed = torch.zeros(len(texts), emb.shape[1], device=emb.device).index_add_(0, owner, emb)
            return summed / torch.bincount(owner, minlength=len(texts)).unsqueeze(1).to(emb.dtype)
        return self._embed(texts)

    def _embed(self, texts: Sequence[str]) -> Tensor:
        """One pooled embedding per sequence (the ``concat`` case of ``forward``)."""
        batch = self.tokenize(texts)
        with bf16_autocast(self.device, self.opts.bf16):
            out = self.backbone(**batch)
            pooled = self.pool(out.last_hidden_state, batch["attention_mask"])
        return pooled.float()

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> Tensor:
        """No-grad batched embedding of ``texts`` in eval mode -> float32 (n, hidden_size) on the encoder's device.

        Texts are batched in order of length (less padding) and returned in input order.
        """
        texts = list(texts)
        bs = batch_size or self.opts.batch_size
        out = torch.empty(len(texts), self.hidden_size, device=self.device)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        was_training = self.training
        self.eval()
        try:
            with (
                torch_threads(self.num_threads),
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
                    out[idx] = self([texts[i] for i in idx])
                    bar.update(len(idx))
        finally:
            self.train(was_training)
        return out

    def mask(self, text: str, rng: np.random.Generator) -> str:
        """The word-masked view of ``text`` (Eq. 10-11) with this encoder's rate, strategy and mask token; per
        review for ``review_mean``, so the masked text keeps its review boundaries."""
        o = self.opts
        per_review = o.item_pooling == "review_mean"
        return mask_item_text(text, o.mask_rate, rng, o.mask_strategy, self.mask_token, per_review)
