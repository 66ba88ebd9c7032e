"""Analytic FLOPs of a transformer stack whose token count changes per layer.

A multiply-add counts as 2 FLOPs. Per layer with ``t_in`` tokens entering
and ``t_out`` leaving (reduction sits between attention and MLP, so the
reducing layer's attention runs on ``t_in`` and its MLP on ``t_out``):

* projections: ``2 * t_in * d * (H + 2 * H_kv) * hd`` (q, k, v) plus
  ``2 * t_in * H * hd * d`` (output projection);
* attention: ``4 * H * hd * pairs`` (``QK^T`` and ``PV``), with
  ``pairs = t_in * (past + t_in)`` for bidirectional attention and
  ``t_in * past + t_in * (t_in + 1) / 2`` for causal attention;
* MLP: ``2 * t_out * d * ffn * mlp_matrices`` (2 for GELU MLPs, 3 for gated
  SwiGLU MLPs).

Norms, softmax, activations, embeddings and the LM head are left out: they
are linear in tokens and small. Padding is never counted: FLOPs are those of
the sample's real tokens, not what a padded batched kernel executes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["StackSpec", "layer_flops", "stack_flops", "decode_step_flops", "decode_flops", "kv_cache_bytes"]


@dataclass(frozen=True)
class StackSpec:
    """Shapes of a stack of transformer blocks, all that the FLOPs count needs."""

    num_layers: int
    d_model: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_dim: int
    mlp_matrices: int = 2
    causal: bool = False


def layer_flops(spec: StackSpec, t_in: float, t_out: float | None = None, past: float = 0) -> float:
    """FLOPs of one layer; ``past`` cached tokens are attended but not projected."""
    t_out = t_in if t_out is None else t_out
    d, h, hkv, hd = spec.d_model, spec.num_heads, spec.num_kv_heads, spec.head_dim
    proj = 2 * t_in * d * (h + 2 * hkv) * hd + 2 * t_in * h * hd * d
    if spec.causal:
        pairs = t_in * past + t_in * (t_in + 1) / 2
    else:
        pairs = t_in * (past + t_in)
    attn = 4 * h * hd * pairs
    mlp = 2 * t_out * d * spec.ffn_dim * spec.mlp_matrices
    return float(proj + attn + mlp)


def stack_flops(spec: StackSpec, tokens: Sequence[float]) -> float:
    """FLOPs of a prefill whose layer ``l`` sees ``tokens[l]`` tokens at its
    attention and ``tokens[l+1]`` at its MLP (``len(tokens) == num_layers+1``)."""
    if len(tokens) != spec.num_layers + 1:
        raise ValueError(f"need {spec.num_layers + 1} token counts, got {len(tokens)}")
    return sum(layer_flops(spec, tokens[i], tokens[i + 1]) for i in range(spec.num_layers))


def decode_step_flops(spec: StackSpec, cache_lengths: Sequence[float]) -> float:
    """FLOPs of one decode step (one new token) given each layer's cache length."""
    return sum(layer_flops(spec, 1, 1, past=c) for c in cache_lengths)


def decode_flops(spec: StackSpec, cache_lengths: Sequence[float], steps: int) -> float:
    """FLOPs of ``steps`` decode steps from these cache lengths, each step caching
    one more token per layer. A step's FLOPs are affine in the cache lengths, so
    the sum over steps has a closed form (no loop over generated tokens)."""
    if steps <= 0:
        return 0.0
    first = decode_step_flops(spec, cache_lengths)
    per_step = decode_step_flops(spec, [c + 1 for c in cache_lengths]) - first
    return steps * first + per_step * steps * (steps - 1) / 2


def kv_cache_bytes(spec: StackSpec, cache_lengths: Sequence[float], bytes_per_value: int = 2) -> float:
    """Bytes of keys and values cached over all layers."""
    return float(sum(2 * spec.num_kv_heads * spec.head_dim * c * bytes_per_value for c in cache_lengths))
