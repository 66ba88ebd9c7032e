"""How a stack's per-layer keyword arguments follow a shrinking sequence.

HF models compute one attention mask and one set of rotary embeddings per
forward and hand the same ones to every layer. After a reduction the later
layers see fewer tokens, so the engine rewrites those arguments per layer.
A policy is generic over model families; the adapter only supplies the
rotary-embedding callable and picks the policy.

* :class:`BidirectionalPolicy` -- encoder stacks (Whisper): a key-padding
  mask when samples in a batch keep different numbers of tokens.
* :class:`CausalPolicy` -- decoder stacks of speech LLMs: during prefill, a
  causal + padding mask over the current tokens and rotary embeddings at the
  surviving tokens' positions (``keep``: each token or merged group keeps its
  first token's original position; ``paper``: the authors' contiguous,
  right-aligned re-indexing, in which the last token keeps its position).
  During decoding, every layer's mask covers *that layer's* cache, whose
  length differs per layer, plus per-head evictions (H2O).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .masks import as_mask
from .state import ReductionState

__all__ = ["BidirectionalPolicy", "CausalPolicy", "POSITION_MODES"]

POSITION_MODES = ("keep", "paper")


class BidirectionalPolicy:
    """Padding mask for a bidirectional encoder (additive float, ``(B,1,1,T)``)."""

    causal = False

    def prefill(self, state: ReductionState, kwargs: dict, layer: int, hidden: Tensor) -> dict:
        if not state.padded:
            return {**kwargs, "attention_mask": None}
        return {**kwargs, "attention_mask": as_mask(state.valid[:, None, None, :], "float", torch.float32)}

    def decode(self, state: ReductionState, kwargs: dict, layer: int, hidden: Tensor) -> dict:
        raise RuntimeError("an encoder stack has no decode steps")


class CausalPolicy:
    """Masks and positions for a causal decoder stack with a KV cache."""

    causal = True

    def __init__(
        self,
        rotary: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
        attn_implementation: str,
        positions: str = "keep",
    ):
        if positions not in POSITION_MODES:
            raise ValueError(f"positions must be one of {POSITION_MODES}, got {positions!r}")
        if attn_implementation not in ("sdpa", "eager"):
            raise ValueError(
                f"attention implementation {attn_implementation!r} cannot serve token reduction: reduced layers need "
                "per-layer 4D masks (cache lengths differ per layer); use attn_implementation=sdpa or eager"
            )
        self.rotary, self.positions = rotary, positions
        self.fmt = "bool" if attn_implementation == "sdpa" else "float"

    # -- prefill --------------------------------------------------------------
    def prefill(self, state: ReductionState, kwargs: dict, layer: int, hidden: Tensor) -> dict:
        if state.positions is None:  # first layer: take the model's own positions and rotary embeddings
            pos = kwargs.get("position_ids")
            b, t = state.valid.shape
            pos = (state.valid.long().cumsum(1) - 1).clamp_min(0) if pos is None else pos.expand(b, t)
            state.positions = pos if pos.device == state.valid.device else pos.to(state.valid.device)
            if self.positions == "paper":
                state.last_position = state.positions.masked_fill(~state.valid, -1).max(dim=1).values
            state.extra["rotary"], state.extra["rotary_version"] = kwargs.get("position_embeddings"), 0
        if not state.reduced:
            return kwargs
        if state.extra.get("layer_args_version") != len(state.reductions):
            pos = self._positions(state)
            unpadded = self.fmt == "bool" and not state.padded  # SDPA's own causal kernel is faster
            state.extra["layer_args"] = {
                "attention_mask": None if unpadded else as_mask(self._allowed(state.valid)[:, None], self.fmt,
                                                                hidden.dtype),
                "position_embeddings": self._rotary(state, hidden, pos),
                "position_ids": pos,
            }
            state.extra["layer_args_version"] = len(state.reductions)
        return {**kwargs, **state.extra["layer_args"]}

    @staticmethod
    def _allowed(valid: Tensor) -> Tensor:
        """Causal and padding mask ``(B, T, T)``: a token attends to the valid tokens up
        to itself; a padding row to everything up to itself (never empty: no NaN; and
        nothing reads a padding row's output)."""
        return (valid[:, None, :] | ~valid[:, :, None]).tril()

    def _rotary(self, state: ReductionState, hidden: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        """Rotary embeddings at ``pos``. Where tokens keep their first token's position
        (``keep``), they are the earlier ones taken at each group's first token: the
        same values as computing them again, in two gathers per reduction (padding
        slots get whatever the gather gives: no query or key there is ever read)."""
        known, version = state.extra.get("rotary"), state.extra.get("rotary_version", 0)
        if self.positions != "keep" or known is None:
            return self.rotary(hidden, pos)
        cos, sin = known
        for red in list(state.reductions.values())[version:]:
            cos, sin = red.take_first(cos, fill=None), red.take_first(sin, fill=None)
        state.extra["rotary"], state.extra["rotary_version"] = (cos, sin), len(state.reductions)
        return cos, sin

    def _positions(self, state: ReductionState) -> Tensor:
        if self.positions == "keep":
            return state.positions
        valid = state.valid.long()
        after = valid.flip(1).cumsum(1).flip(1) - valid  # valid tokens after this one
        last = state.last_position[:, None]
        return torch.where(state.valid, last - after, torch.zeros_like(after))

    # -- decode ---------------------------------------------------------------
    def decode(self, state: ReductionState, kwargs: dict, layer: int, hidden: Tensor) -> dict:
        if not state.reduced and not state.kv_keep:
            return kwargs  # every cache has full length: the model's own mask is right
        q = hidden.shape[1]
        cached = state.cache_valid[layer]  # (B, c_l)
        b = cached.shape[0]
        if q == 1 and self.fmt == "bool" and not state.padded and not state.kv_keep:
            return {**kwargs, "attention_mask": None}  # one query attends to this layer's whole cache
        new = torch.ones(b, q, dtype=torch.bool, device=cached.device)
        keys = torch.cat([cached, new], 1)  # (B, c_l + q)
        allowed = keys[:, None, None, :].expand(b, 1, q, keys.shape[1]).clone()
        if q > 1:
            allowed[:, :, :, cached.shape[1] :] &= torch.ones(q, q, dtype=torch.bool, device=cached.device).tril()
        keep = state.kv_keep.get(layer)
        if keep is not None:  # per-head evictions (H2O), (B, H, c_l)
            h = keep.shape[1]
            allowed = allowed.expand(b, h, q, keys.shape[1]).clone()
            allowed[..., : cached.shape[1]] &= keep[:, :, None, :]
        state.cache_valid[layer] = keys
        if keep is not None:
            state.kv_keep[layer] = torch.cat([keep, torch.ones(b, keep.shape[1], q, dtype=torch.bool,
                                                                device=keep.device)], 2)
        return {**kwargs, "attention_mask": as_mask(allowed, self.fmt, hidden.dtype)}
