"""Index arithmetic on tensors shared by the losses and the text tower (torch only)."""

from __future__ import annotations

import torch
from torch import Tensor


def concat_ranges(start: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """The ranges ``start[r] .. start[r] + count[r] - 1`` concatenated in order of r, on ``count``'s device:
    ``(owner, positions)``, owner[k] the range r that position k belongs to."""
    owner = torch.repeat_interleave(torch.arange(len(count), device=count.device), count)
    offsets = torch.repeat_interleave(start - torch.cumsum(count, 0) + count, count)
    return owner, torch.arange(int(count.sum()), device=count.device) + offsets
