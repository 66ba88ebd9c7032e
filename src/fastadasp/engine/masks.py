"""Attention masks in the formats HF attention implementations take."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["additive_mask", "as_mask"]


def additive_mask(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    """bool (True = attend) -> additive float mask. ``finfo.min``, not
    ``-inf``, keeps a fully masked row finite instead of NaN."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def as_mask(allowed: Tensor, fmt: str, dtype: torch.dtype) -> Tensor:
    """bool (True = attend) -> ``"bool"`` (SDPA) or ``"float"`` (additive)."""
    return allowed if fmt == "bool" else additive_mask(allowed, dtype)
