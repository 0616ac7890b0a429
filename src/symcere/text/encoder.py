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
import torch.utils.checkpoint
from torch import Tensor, nn
from tqdm import tqdm

from symcere.errors import SymcereError
from symcere.extras import MissingExtra, require
from symcere.schema import TextOptions
from symcere.text.masking import mask_item_text, split_reviews
from symcere.text.models import resolve_model_path
from symcere.training.seeding import torch_threads

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


def length_buckets(lengths: Sequence[int], budget: int) -> list[np.ndarray]:
    """Indices of sequences grouped by token length (ascending) so that each group's padded size, its count
    times its longest length, stays within ``budget`` tokens (a longer sequence than ``budget`` is alone)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    groups, start = [], 0
    for stop in range(1, len(order) + 1):
        if stop == len(order) or (stop + 1 - start) * int(lengths[order[stop]]) > budget:
            groups.append(order[start:stop])
            start = stop
    return groups


def pool_items(emb: Tensor, owner: Sequence[int] | Tensor, n_items: int) -> Tensor:
    """Mean of the sequence embeddings ``emb`` (n_seq, h) of each item (``owner[k]``: item of sequence k)."""
    owner_t = torch.as_tensor(owner, dtype=torch.long, device=emb.device)
    if owner_t.numel() == n_items and bool((owner_t == torch.arange(n_items, device=emb.device)).all()):
        return emb
    summed = torch.zeros(n_items, emb.shape[1], device=emb.device, dtype=emb.dtype).index_add_(0, owner_t, emb)
    counts = torch.bincount(owner_t, minlength=n_items).clamp_min(1).unsqueeze(1)
    return summed / counts.to(emb.dtype)


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
            n_layers = int(getattr(backbone.config, "num_hidden_layers", 0) or 0)
            top = opts.lora_layers if opts.lora_layers is not None and opts.lora_layers < n_layers else None
            lora_cfg = peft.LoraConfig(
                r=opts.lora_r,
                lora_alpha=opts.lora_alpha,
                lora_dropout=opts.lora_dropout,
                target_modules=list(targets),
                bias="none",
                layers_to_transform=None if top is None else list(range(n_layers - top, n_layers)),
            )
            try:
                with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
                    warnings.simplefilter("ignore", FutureWarning)
                    backbone = peft.get_peft_model(backbone, lora_cfg)
            except ValueError as exc:
                raise SymcereError(f"could not apply LoRA to {opts.model!r} with targets {targets}: {exc}") from exc
            self.lora_targets: list[str] = list(targets)
            #: LoRA on the top ``lora_layers`` layers only (None: every layer)
            self.lora_layers: int | None = top
        else:
            self.lora_targets = []
            self.lora_layers = None
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
        return self.pad(self.token_ids(texts))

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated to ``max_tokens`` and not padded (one tokenizer call for all)."""
        if len(texts) == 0:
            return []
        out = self.tokenizer(list(texts), truncation=True, max_length=self.opts.max_tokens, padding=False)
        return [list(ids) for ids in out["input_ids"]]

    def pad(self, ids: Sequence[Sequence[int]]) -> dict[str, Tensor]:
        """Right-pad token-id lists into ``input_ids`` / ``attention_mask`` tensors on the encoder's device."""
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), int(self.tokenizer.pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.as_tensor(x, dtype=torch.long)
            mask[row, : len(x)] = 1
        dev = self.device
        return {"input_ids": input_ids.to(dev), "attention_mask": mask.to(dev)}

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

    def item_sequences(self, texts: Sequence[str]) -> tuple[list[str], list[int]]:
        """The sequences the encoder embeds for item ``texts`` and the item each belongs to: every review of
        the item (``review_mean``) or the item text itself (``concat``)."""
        if self.opts.item_pooling == "review_mean":
            parts = [split_reviews(t) for t in texts]
            return [r for p in parts for r in p], [i for i, p in enumerate(parts) for _ in p]
        return list(texts), list(range(len(texts)))

    def forward(self, texts: Sequence[str]) -> Tensor:
        """Embed ``texts`` -> float32 tensor (n, hidden_size) on the encoder's device; gradients flow in lora /
        full modes. With ``item_pooling="review_mean"`` each text is the mean of its reviews' embeddings."""
        seqs, owner = self.item_sequences(texts)
        return pool_items(self.embed_ids(self.token_ids(seqs)), owner, len(texts))

    def embed_ids(self, ids: Sequence[Sequence[int]], budget: int | None = None) -> Tensor:
        """Pooled float32 embeddings (n, hidden) of tokenised sequences, run in length-sorted buckets of at most
        ``budget`` padded tokens (default ``text.micro_batch`` sequences of ``max_tokens``).

        With gradients enabled and a trainable backbone, a bucket's activations are recomputed in the backward
        pass when ``text.checkpointing`` says so (``None``: whenever the call needs more than one bucket), so
        the memory of a training step is bounded by one bucket whatever the number of texts."""
        dev = self.device
        if len(ids) == 0:
            return torch.zeros(0, self.hidden_size, device=dev)
        o = self.opts
        budget = budget or o.micro_batch * o.max_tokens
        groups = length_buckets([len(x) for x in ids], budget)
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.backbone.parameters())
        ckpt = grad and (o.checkpointing if o.checkpointing is not None else len(groups) > 1)
        parts, order = [], []
        for idx in groups:
            batch = self.pad([ids[i] for i in idx])
            if ckpt:
                out = torch.utils.checkpoint.checkpoint(
                    self._embed_batch, batch["input_ids"], batch["attention_mask"], use_reentrant=False
                )
            else:
                out = self._embed_batch(batch["input_ids"], batch["attention_mask"])
            parts.append(out)
            order.append(idx)
        emb = torch.cat(parts)
        inverse = torch.empty(len(ids), dtype=torch.long)
        inverse[torch.as_tensor(np.concatenate(order))] = torch.arange(len(ids))
        return emb[inverse.to(dev)]

    def _embed_batch(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """One padded batch through the backbone and the token pooling -> float32 (n, hidden)."""
        with bf16_autocast(self.device, self.opts.bf16):
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
            pooled = self.pool(out.last_hidden_state, attention_mask)
        return pooled.float()

    def _embed(self, texts: Sequence[str]) -> Tensor:
        """One pooled embedding per sequence, as one padded batch (no item pooling)."""
        batch = self.tokenize(texts)
        return self._embed_batch(batch["input_ids"], batch["attention_mask"])

    @torch.no_grad()
    def encode_sequences(self, seqs: Sequence[str], batch_size: int | None = None, progress: bool = False) -> Tensor:
        """No-grad embedding of single sequences in eval mode -> float32 (n, hidden_size) on the encoder's device.

        Each distinct sequence is tokenised and embedded once; sequences run sorted by token length in buckets of
        at most ``batch_size`` (default ``text.batch_size``) x ``max_tokens`` padded tokens, so short texts share a
        forward pass instead of being padded to the longest one. Results are in input order.
        """
        seqs = list(seqs)
        unique = list(dict.fromkeys(seqs))
        where = {s: j for j, s in enumerate(unique)}
        budget = (batch_size or self.opts.batch_size) * self.opts.max_tokens
        ids = self.token_ids(unique)
        out = torch.empty(len(unique), self.hidden_size, device=self.device)
        was_training = self.training
        self.eval()
        try:
            with (
                torch_threads(self.num_threads),
                tqdm(
                    total=len(unique), desc="encoding texts", unit="text", file=sys.stderr, disable=not progress
                ) as bar,
            ):
                for idx in length_buckets([len(x) for x in ids], budget):
                    batch = self.pad([ids[i] for i in idx])
                    out[torch.as_tensor(idx, device=self.device)] = self._embed_batch(
                        batch["input_ids"], batch["attention_mask"]
                    )
                    bar.update(len(idx))
        finally:
            self.train(was_training)
        if len(unique) == len(seqs):
            return out
        return out[torch.as_tensor([where[s] for s in seqs], dtype=torch.long, device=self.device)]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False) -> Tensor:
        """No-grad embedding of item ``texts`` in eval mode -> float32 (n, hidden_size) on the encoder's device:
        their sequences (``item_sequences``) through ``encode_sequences``, then the item pooling."""
        texts = list(texts)
        seqs, owner = self.item_sequences(texts)
        return pool_items(self.encode_sequences(seqs, batch_size, progress), owner, len(texts))

    def mask(self, text: str, rng: np.random.Generator) -> str:
        """The word-masked view of ``text`` (Eq. 10-11) with this encoder's rate, strategy and mask token; per
        review for ``review_mean``, so the masked text keeps its review boundaries."""
        o = self.opts
        per_review = o.item_pooling == "review_mean"
        return mask_item_text(text, o.mask_rate, rng, o.mask_strategy, self.mask_token, per_review)
