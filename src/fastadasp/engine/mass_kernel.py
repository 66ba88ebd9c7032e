"""The received mass of chosen keys in one fused Triton pass (``model.mass_kernel=triton``).

A weighted merge needs, for each *grouped* key ``j``, the attention mass it
receives: ``sum over heads h and queries i of exp(scale * q_hi . k_j - lse_hi)``,
where ``lse_hi`` is the log-sum-exp of query row ``(h, i)`` that the flash
kernel returned with the attention output. The torch path
(:meth:`~fastadasp.engine.attention.DeferredReceived.at`) materialises those
log-probabilities in float32 chunks and exponentiates them in separate
launches: memory-bound work that cost about 9x SDPA per layer on an H200.
This kernel keeps a tile of grouped keys in registers, streams the queries
past it, and adds ``exp2`` of the scores straight into float32 column sums:
scores never reach memory, and the whole mass is one launch plus a sum.

One program per (block of grouped keys, batch row x query head, slice of
queries): the key block is loaded once, every query tile of the slice is
multiplied with it (``tl.dot``: bf16/fp16 inputs on the tensor cores with
float32 accumulation; float32 inputs in IEEE float32, not TF32), the score is
taken to base 2 in float32 (``s * scale * log2 e - lse * log2 e``), masked
(causal: key after query; the attention's own bool or additive mask,
broadcast like SDPA reads it; padded queries carry ``lse = +inf`` and so
give 0), and summed over the tile's rows. Each program writes its partial
sums to its own slot of a ``(slices, B, H, m)`` buffer, which one ``sum``
reduces: no atomics, so the result does not depend on scheduling. Causal
programs start at the first query that can see their smallest key.

Grouped-query attention: query head ``h`` reads key head ``h // (H / Hkv)``;
keys are never repeated. Columns ``>= T`` are fillers and get 0; they may
appear anywhere in a row (the kernel does not need them sorted).

On the CPU the kernel runs only in Triton's interpreter (``TRITON_INTERPRET=1``
before Triton is first imported; numpy, slow: tests use small shapes). The
interpreter multiplies bfloat16 tiles as raw integers, so there bfloat16
tiles are widened to float32 before the product (exact: a bfloat16 value is
a float32 value); the GPU multiplies them as they are.
The op is registered as ``fastadasp::received_mass`` (``torch.library``) so
that ``torch.compile`` treats it as one opaque call.
"""

import importlib.util
import math

import torch
from torch import Tensor

__all__ = ["MASS_KERNELS", "received_mass", "triton_unavailable", "check_mass_kernel"]

#: what ``model.mass_kernel`` accepts: the chunked torch code in attention.py, or this kernel
MASS_KERNELS = ("torch", "triton")
#: grouped keys per program and query rows per step (the first settings tried; tune on the GPU)
BLOCK_KEYS, BLOCK_ROWS = 64, 64
_LOG2E = 1.4426950408889634
_HAVE_TRITON = importlib.util.find_spec("triton") is not None


def triton_unavailable(device: torch.device | str = "cuda") -> str | None:
    """Why the kernel cannot run on ``device`` (``None`` when it can). Importing
    this answer's Triton fixes the process's mode (see :mod:`._mass_triton`)."""
    device = torch.device(device)
    if not _HAVE_TRITON:
        return "model.mass_kernel=triton needs the triton package (pip install triton; Linux only)"
    if device.type not in ("cuda", "cpu"):
        return f"model.mass_kernel=triton runs on CUDA (or in Triton's interpreter on the CPU), not on {device.type}"
    if device.type == "cpu" and not _interpreting():
        return ("model.mass_kernel=triton on the CPU runs only in Triton's interpreter (slow; for tests): set "
                "TRITON_INTERPRET=1 before triton is first imported")
    return None


def _interpreting() -> bool:
    """Whether this process's Triton interprets kernels (``TRITON_INTERPRET=1`` at its import)."""
    from triton.runtime.interpreter import InterpretedFunction

    from . import _mass_triton

    return isinstance(_mass_triton.received_mass_kernel, InterpretedFunction)


def check_mass_kernel(name: str, device: torch.device | str | None = None) -> str:
    """``name`` if it is a known mass kernel (that can run on ``device``, when
    given), else a one-line ``ValueError`` naming the cause."""
    if name not in MASS_KERNELS:
        raise ValueError(f"mass_kernel must be one of {MASS_KERNELS}, got {name!r}")
    reason = triton_unavailable(device) if name == "triton" and device is not None else None
    if reason:
        raise ValueError(reason)
    return name


def received_mass(
    query: Tensor,
    key: Tensor,
    lse: Tensor,
    columns: Tensor,
    scale: float,
    causal: bool,
    mask: Tensor | None = None,
    *,
    block_keys: int = BLOCK_KEYS,
    block_rows: int = BLOCK_ROWS,
    slices: int | None = None,
) -> Tensor:
    """Received mass ``(B, m)`` float32 of keys ``columns (B, m)``.

    ``query (B, H, T, hd)`` unscaled, ``key (B, Hkv, T, hd)``, any strides;
    ``lse (B, H, T)`` float32 in natural log, ``+inf`` on queries to leave out;
    ``mask`` None or broadcastable to ``(B, Hkv, g, T, T)`` (bool: True =
    attend; else additive, natural log), as ``_group_heads`` lays it out.
    ``slices`` splits the queries among programs (default: enough programs
    to fill the GPU; 1 on the CPU)."""
    if slices is None:
        slices = _default_slices(query, columns, block_keys, block_rows)
    return torch.ops.fastadasp.received_mass(query, key, lse, columns, mask, float(scale), bool(causal),
                                             int(block_keys), int(block_rows), int(slices))


def _default_slices(query: Tensor, columns: Tensor, block_keys: int, block_rows: int) -> int:
    """Query slices so that about two waves of programs cover the GPU's multiprocessors."""
    if query.device.type != "cuda":
        return 1
    b, h, t, _ = query.shape
    programs = math.ceil(columns.shape[1] / block_keys) * b * h
    sms = torch.cuda.get_device_properties(query.device).multi_processor_count
    return max(1, min(math.ceil(2 * sms / max(1, programs)), math.ceil(t / (4 * block_rows))))


@torch.library.custom_op("fastadasp::received_mass", mutates_args=())
def _received_mass_op(
    query: Tensor, key: Tensor, lse: Tensor, columns: Tensor, mask: Tensor | None, scale: float, causal: bool,
    block_keys: int, block_rows: int, slices: int,
) -> Tensor:
    reason = triton_unavailable(query.device)
    if reason:
        raise RuntimeError(reason)
    b, h, t, hd = query.shape
    hkv = key.shape[1]
    if h % hkv or key.shape[2] != t or lse.shape != (b, h, t) or columns.shape[0] != b:
        raise ValueError(f"received_mass: query {tuple(query.shape)}, key {tuple(key.shape)}, lse {tuple(lse.shape)}, "
                         f"columns {tuple(columns.shape)} do not fit together")
    m = columns.shape[1]
    if m == 0 or t == 0:
        return query.new_zeros(b, m, dtype=torch.float32)
    rows_per_slice = math.ceil(math.ceil(t / slices) / block_rows) * block_rows
    slices = math.ceil(t / rows_per_slice)  # the queries' slices, none empty
    partial = torch.empty(slices, b, h, m, dtype=torch.float32, device=query.device)
    kind, mask_arg, mask_strides = _mask_layout(mask, b, hkv, h // hkv, t)
    from ._mass_triton import received_mass_kernel  # Triton is imported on first use only (an optional dependency)

    upcast = query.dtype == torch.bfloat16 and _interpreting()  # the interpreter's bf16 dot multiplies integers
    grid = (math.ceil(m / block_keys), b * h, slices)
    received_mass_kernel[grid](
        query, key, lse, columns, mask_arg, partial,
        t, m, h, h // hkv, hd, rows_per_slice,
        *query.stride(), *key.stride(), *lse.stride(), *columns.stride(), *mask_strides, *partial.stride(),
        scale * _LOG2E,
        CAUSAL=causal, MASK=kind, UPCAST=upcast, IEEE=query.dtype == torch.float32,
        BLOCK_M=block_rows, BLOCK_N=block_keys, BLOCK_D=max(16, _next_power_of_2(hd)),
    )
    return partial.sum((0, 2))


@_received_mass_op.register_fake
def _(query, key, lse, columns, mask, scale, causal, block_keys, block_rows, slices):
    return query.new_empty(columns.shape, dtype=torch.float32)


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _mask_layout(mask: Tensor | None, b: int, hkv: int, g: int, t: int) -> tuple[int, Tensor | None, tuple[int, ...]]:
    """(0 none | 1 bool | 2 additive, the tensor to pass, its 5 strides with 0 on broadcast dimensions)."""
    if mask is None:
        return 0, None, (0,) * 5
    while mask.dim() < 5:
        mask = mask.unsqueeze(0)
    if mask.shape[-1] != t:
        raise ValueError(f"received_mass: a mask over {mask.shape[-1]} keys for {t} keys")
    strides = tuple(0 if size == 1 else stride for size, stride in zip(mask.shape, mask.stride()))
    if mask.dtype == torch.bool:
        return 1, mask.view(torch.uint8), strides  # a same-size view: the pointer type every backend loads
    return 2, mask, strides
