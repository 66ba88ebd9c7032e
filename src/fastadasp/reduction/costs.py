"""Realised analytic costs of one reduced forward: prefill and decode FLOPs, KV-cache bytes.

A pure function of counts (no tensors, no engine state): the tokens each layer
saw, the prompt entries each layer's cache still offers decoding (fewer than
its tokens where a KV-cache method such as H2O masked some), and how many
tokens each sample generated. The engine reads those counts from its state
(``TokenReducer.costs``); the FLOPs count is :mod:`.flops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .budget import flops_reduction
from .flops import StackSpec, decode_flops, kv_cache_bytes

__all__ = ["CostReport", "realised_costs"]


@dataclass
class CostReport:
    """Realised analytic costs of one sample (see :mod:`fastadasp.reduction.flops`).

    ``kv_bytes`` / ``kv_bytes_full``: the cache after prefill (what the
    reduction controls); ``kv_reduction_end``: the same at the end of
    generation, when the generated tokens (never reduced) are cached too.
    H2O entries are *masked*, not freed: its bytes count what decoding
    attends, not what the tensors occupy.
    """

    prefill_flops_reduction: float
    decode_flops_reduction: float
    kv_bytes_full: float
    kv_bytes: float
    kv_reduction_end: float
    tokens_per_layer: list[int]

    @property
    def kv_reduction(self) -> float:
        return 1.0 - self.kv_bytes / self.kv_bytes_full if self.kv_bytes_full else 0.0


def realised_costs(
    spec: StackSpec,
    tokens_per_layer: Sequence[Sequence[int]],
    cache_per_layer: Sequence[Sequence[float]],
    generated: Sequence[int],
    bytes_per_value: int = 2,
) -> list[CostReport]:
    """One report per sample. ``tokens_per_layer[i]``: the tokens entering each
    layer and leaving the last (``num_layers + 1``; the first is the full
    prompt); ``cache_per_layer[i]``: the prompt entries each layer's cache offers
    decoding (``num_layers``; may be a mean over heads); ``generated[i]``: the
    tokens the sample generated (the first comes from the prefill, so decoding
    ran ``generated - 1`` steps)."""
    n = spec.num_layers
    reports = []
    for tokens, cache, count in zip(tokens_per_layer, cache_per_layer, generated, strict=True):
        full = tokens[0]
        steps = max(count - 1, 0)
        dec_full = decode_flops(spec, [full] * n, steps)
        dec = decode_flops(spec, cache, steps)
        end_full = kv_cache_bytes(spec, [full + steps] * n, bytes_per_value)
        reports.append(
            CostReport(
                prefill_flops_reduction=flops_reduction(spec, tokens, full),
                decode_flops_reduction=1 - dec / dec_full if dec_full else 0.0,
                kv_bytes_full=kv_cache_bytes(spec, [full] * n, bytes_per_value),
                kv_bytes=kv_cache_bytes(spec, cache, bytes_per_value),
                kv_reduction_end=1 - kv_cache_bytes(spec, [c + steps for c in cache], bytes_per_value) / end_full,
                tokens_per_layer=[int(t) for t in tokens],
            )
        )
    return reports
