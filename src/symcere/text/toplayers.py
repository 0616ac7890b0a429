"""LoRA on the top layers of f_text only (``text.lora_layers``): the frozen lower layers run once per text.

The paper tunes the text encoder with LoRA (symcere.md section 3.1.2). When only the top ``N`` transformer
layers get adapters, the output of the layers below them never changes during training: ``TopLayerEncoder``
computes it once per sequence (every item text and every pre-drawn masked view of it) and a training step runs
only the top ``N`` layers, the token pooling and the item pooling on those cached hidden states. In eval mode
this equals the full forward (tests/test_toplayers.py). In train mode only LoRA's own dropout
(``text.lora_dropout``) is active: the frozen layers run without their dropout, the cached lower ones and the
top ones alike (their attention then takes the fused kernel, about three times faster on a CPU).

It needs a BERT-style backbone (``embeddings`` + ``encoder.layer``: BERT, MiniLM, RoBERTa, MPNet, ELECTRA,
XLM-R). The cached states are stored packed (``(total tokens, hidden)`` plus offsets, in bf16 when
``text.bf16``) as a non-persistent buffer, so they follow ``.to(device)`` and stay out of checkpoints.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.utils.checkpoint
from torch import Tensor, nn
from tqdm import tqdm

from symcere.errors import SymcereError
from symcere.text.encoder import TextEncoder, bf16_autocast, length_buckets


class _GivenStates(nn.Module):
    """Stands in for the embedding layer of the upper part: the input *is* the hidden states."""

    def forward(self, input_ids: Any = None, inputs_embeds: Tensor | None = None, **_: Any) -> Tensor:
        assert inputs_embeds is not None
        return inputs_embeds


def transformer_layers(backbone: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """The Hugging Face base model inside ``backbone`` (PEFT-wrapped or not) and its list of layers."""
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not hasattr(base, "embeddings") or not isinstance(layers, nn.ModuleList):
        raise SymcereError(
            f"text.lora_layers needs a BERT-style encoder (embeddings + encoder.layer); {type(base).__name__} is "
            "not one: set text.lora_layers=null (LoRA on every layer)"
        )
    return base, layers


def _part(base: nn.Module, layers: nn.ModuleList, embeddings: nn.Module) -> nn.Module:
    """A shallow copy of ``base`` that shares its parameters but runs only ``layers`` after ``embeddings``."""
    part = copy.copy(base)
    part._modules = dict(base._modules)
    enc = copy.copy(base.encoder)
    enc._modules = dict(base.encoder._modules)
    enc.layer = layers
    part.encoder = enc
    part.embeddings = embeddings
    if "pooler" in part._modules:
        part.pooler = None
    return part


class TopLayerEncoder(nn.Module):
    """Pooled embeddings of ``seqs`` (token pooling of ``encoder.opts``) through the top ``n_top`` layers, the
    layers below them evaluated once here (``forward(rows)``: rows of ``seqs``).

    ``encoder``'s backbone is shared, not copied: the LoRA adapters it trains are the ones used here.
    """

    states: Tensor
    offsets: Tensor
    lengths: Tensor

    def __init__(self, encoder: TextEncoder, seqs: Sequence[str], n_top: int, progress: bool = True) -> None:
        super().__init__()
        base, layers = transformer_layers(encoder.backbone)
        n = len(layers)
        if not 1 <= n_top < n:
            raise SymcereError(f"text.lora_layers={n_top}: the cached path needs 1 <= lora_layers < {n} layers")
        self.n_top, self.n_layers = int(n_top), n
        cut = n - self.n_top
        # plain attributes, not submodules: the parameters belong to (and are saved with) the encoder
        self.__dict__["_encoder"] = encoder
        self.__dict__["_lower"] = _part(base, layers[:cut], base.embeddings)
        self.__dict__["_upper"] = _part(base, layers[cut:], _GivenStates())
        states, offsets, lengths = self._precompute(encoder.token_ids(seqs), progress)
        self.register_buffer("states", states, persistent=False)
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("lengths", lengths, persistent=False)

    def __len__(self) -> int:
        return int(self.lengths.numel())

    @torch.no_grad()
    def _precompute(self, ids: list[list[int]], progress: bool) -> tuple[Tensor, Tensor, Tensor]:
        enc = self.__dict__["_encoder"]
        lower = self.__dict__["_lower"]
        dtype = torch.bfloat16 if enc.opts.bf16 else torch.float32
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        offsets = torch.zeros(len(ids) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        states = torch.empty(int(offsets[-1]), enc.hidden_size, dtype=dtype, device=enc.device)
        was_training = enc.training
        enc.eval()
        budget = enc.opts.batch_size * enc.opts.max_tokens
        try:
            with tqdm(
                total=len(ids), desc="caching lower text layers", unit="text", file=sys.stderr, disable=not progress
            ) as bar:
                for idx in length_buckets(lengths.tolist(), budget):
                    batch = enc.pad([ids[i] for i in idx])
                    with bf16_autocast(enc.device, enc.opts.bf16):
                        hidden = lower(**batch).last_hidden_state
                    for row, i in enumerate(idx.tolist()):
                        states[int(offsets[i]) : int(offsets[i + 1])] = hidden[row, : int(lengths[i])].to(dtype)
                    bar.update(len(idx))
        finally:
            enc.train(was_training)
        return states, offsets.to(enc.device), lengths.to(enc.device)

    def _gather(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Padded cached states (b, L, h) and attention mask (b, L) of ``rows``."""
        lengths = self.lengths[rows]
        width = int(lengths.max())
        pos = torch.arange(width, device=rows.device)
        mask = pos.unsqueeze(0) < lengths.unsqueeze(1)
        flat = (self.offsets[rows].unsqueeze(1) + pos.unsqueeze(0)).clamp_max(self.states.shape[0] - 1)
        hidden = self.states[flat] * mask.unsqueeze(-1).to(self.states.dtype)
        return hidden, mask.long()

    def _upper_batch(self, hidden: Tensor, mask: Tensor) -> Tensor:
        enc = self.__dict__["_encoder"]
        with bf16_autocast(enc.device, enc.opts.bf16):
            out = self.__dict__["_upper"](inputs_embeds=hidden, attention_mask=mask).last_hidden_state
            pooled = enc.pool(out, mask)
        return pooled.float()

    def forward(self, rows: Tensor | Sequence[int]) -> Tensor:
        """Pooled float32 embeddings (len(rows), hidden) of the sequences ``rows``; gradients reach the top
        layers' trainable parameters. Micro-batches and checkpointing follow ``text.micro_batch`` and
        ``text.checkpointing`` as in ``TextEncoder.embed_ids``."""
        enc = self.__dict__["_encoder"]
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.lengths.device).reshape(-1)
        if rows.numel() == 0:
            return torch.zeros(0, enc.hidden_size, device=self.lengths.device)
        o = enc.opts
        if enc.training:  # the frozen layers' own dropout stays off, as in the cached lower layers; LoRA's runs
            for name, module in self.__dict__["_upper"].encoder.layer.named_modules():
                if "lora_dropout" not in name:
                    module.training = False
        groups = length_buckets(self.lengths[rows].tolist(), o.micro_batch * o.max_tokens)
        grad = torch.is_grad_enabled() and any(p.requires_grad for p in enc.parameters())
        ckpt = grad and (o.checkpointing if o.checkpointing is not None else len(groups) > 1)
        parts = []
        for idx in groups:
            hidden, mask = self._gather(rows[torch.as_tensor(idx, device=rows.device)])
            if ckpt:
                parts.append(torch.utils.checkpoint.checkpoint(self._upper_batch, hidden, mask, use_reentrant=False))
            else:
                parts.append(self._upper_batch(hidden, mask))
        inverse = torch.empty(rows.numel(), dtype=torch.long, device=rows.device)
        order = torch.as_tensor(np.concatenate(groups), device=rows.device)
        inverse[order] = torch.arange(rows.numel(), device=rows.device)
        return torch.cat(parts)[inverse]
