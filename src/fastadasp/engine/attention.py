"""Attention that also reports the attention each key receives.

Methods such as FastAdaSP weight tokens by the attention mass they receive
(summed over all queries and heads). SDPA and flash kernels never materialise
the probabilities, and switching a whole model to eager attention costs
memory quadratic in the sequence at every layer. Instead, the engine routes
only the *reducing* layers' attention modules to :func:`probed_attention`,
registered with transformers' ``AttentionInterface`` as ``"fastadasp"``.
At an armed layer it computes exact attention in query chunks of bounded
memory and accumulates the received mass; everywhere else (other layers,
decode steps) it calls the model's own implementation unchanged.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .mass_kernel import received_mass as fused_received_mass

__all__ = [
    "AttentionProbe",
    "DeferredReceived",
    "probed_attention",
    "attention_with_received",
    "attention_with_lse",
    "PROBE_IMPLEMENTATION",
    "READ_SIZES_ON",
    "reads_sizes",
    "device_policy",
]

PROBE_IMPLEMENTATION = "fastadasp"
_PROBE_ATTR = "_fastadasp_probe"
#: bytes of float32 scores one query chunk may hold, and the chunk's row
#: bounds: on CPU 64-128 query rows per chunk measured fastest (Whisper and a
#: 3000-token LLM prefill alike); GPUs prefer few, big launches
CHUNK_BYTES = {"cpu": 8 * 2**20, "default": 256 * 2**20}
CHUNK_ROWS = {"cpu": (64, 128), "default": (64, 1 << 30)}
# The deferred received mass (fused kernel + log-sum-exp, grouped keys only)
# is what weighted merges use on CPU and CUDA: on CPU, Whisper tiny.en's
# encoder shape (6 heads x 1500 tokens, the 36% of keys its merges group)
# costs 1.25x SDPA against 1.5x for the chunked probe (the attention line of
# ``scripts/benchmark_whisper.py``), and it stays ahead up to 80% grouped and
# on causal 16-head layers of 3000 tokens.

#: the deferred mass's log-probabilities per query chunk, rows bounded as above:
#: on CPU 128 rows measured fastest up to 6000 tokens (one thread; Whisper's
#: layer 0 and causal 16-head layers of 3000 and 6000 tokens, 30% of keys grouped)
MASS_CHUNK_BYTES = {"cpu": 64 * 2**20, "default": 256 * 2**20}
_LOG2E = 1.4426950408889634
#: device types on which the engine reads data-dependent sizes (how many keys are
#: grouped, how far each query chunk reaches into them) to skip work: reading is
#: free on the CPU, which has no queue of launched kernels to drain. Elsewhere it
#: works with bounds known on the host, so a reducing layer never synchronises
READ_SIZES_ON = ("cpu",)


#: the device type whose chunk sizes the attention and the mass use; None: the tensors' own.
#: :func:`device_policy` sets it, so that the CPU runs (and an op count sees) a GPU's chunking
CHUNKS_AS: str | None = None


def reads_sizes(device: torch.device) -> bool:
    """Whether per-layer code may read data-dependent sizes from ``device``
    (looked up at call time: a benchmark may switch the policy). Never while
    ``torch.compile`` traces: a read would end the graph."""
    return device.type in READ_SIZES_ON and not torch.compiler.is_compiling()


def _chunk_policy(device: torch.device) -> str:
    kind = CHUNKS_AS or device.type
    return kind if kind in CHUNK_BYTES else "default"


@contextmanager
def device_policy(device_type: str) -> Iterator[None]:
    """Run the engine as it runs on ``device_type`` (sizes read or bounded, chunk
    sizes), whatever the tensors' device: an op count on the CPU of a GPU's path."""
    global READ_SIZES_ON, CHUNKS_AS
    saved = READ_SIZES_ON, CHUNKS_AS
    READ_SIZES_ON, CHUNKS_AS = ((device_type,) if device_type in saved[0] else ()), device_type
    try:
        yield
    finally:
        READ_SIZES_ON, CHUNKS_AS = saved


@dataclass
class AttentionProbe:
    """Per attention module: what the engine asked for and what it got."""

    inner: str  # the model's own attention implementation
    armed: bool = False
    want_keys: bool = False
    want_received: bool = False
    per_head: bool = False
    defer: bool = False  # the received mass may come later, at chosen keys only
    query_valid: Tensor | None = None  # (B, Tq) bool, padded queries excluded from the sums
    key: Tensor | None = None  # (B, Hkv, Tk, hd) post-RoPE, as the attention got it
    received: "Tensor | DeferredReceived | None" = None  # (B, Tk) float32, or what computes it later
    mass_kernel: str = "torch"  # how a deferred mass is computed: "torch" (DeferredReceived.at) or "triton"
    #: the attention mask hides only padded keys (and, causal, later ones), as the engine's policies
    #: build it: the deferred mass of unpadded keys then needs no mask beyond causality
    padding_mask: bool = False
    _saved_config: object = field(default=None, repr=False)

    def arm(
        self, want_keys: bool, want_received: bool, query_valid: Tensor | None, per_head: bool = False,
        defer: bool = False, padding_mask: bool = False,
    ) -> None:
        self.armed, self.want_keys, self.want_received, self.per_head = True, want_keys, want_received, per_head
        self.defer, self.padding_mask = defer and not per_head, padding_mask
        self.query_valid, self.key, self.received = query_valid, None, None

    @property
    def keys(self) -> Tensor | None:
        """``(B, Tk, Hkv * hd)``: the keys with heads concatenated."""
        return None if self.key is None else self.key.transpose(1, 2).reshape(self.key.shape[0], self.key.shape[2], -1)

    def disarm(self) -> "tuple[Tensor | None, Tensor | DeferredReceived | None]":
        """``(keys (B, Tk, Hkv * hd), received)``, and the probe is off."""
        keys, received = self.keys, self.received
        self.release()
        return keys, received

    def release(self) -> "tuple[Tensor | None, Tensor | DeferredReceived | None]":
        """``(keys (B, Tk, Hkv, hd), received)``, and the probe is off: keys per
        head as a view (no copy), which is how the engine takes them."""
        key, received = self.key, self.received
        self.armed, self.query_valid, self.key, self.received = False, None, None, None
        return (None if key is None else key.transpose(1, 2)), received


def attention_with_received(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float,
    is_causal: bool,
    query_valid: Tensor | None = None,
    per_head: bool = False,
    causal_keys: bool = False,
) -> tuple[Tensor, Tensor]:
    """Exact attention plus the mass each key receives, chunked over queries.

    ``query (B, H, Tq, hd)``, ``key/value (B, Hkv, Tk, hd)`` (grouped-query
    attention handled without repeating keys). ``attention_mask`` is boolean
    (True = attend) or additive float, broadcastable to ``(B, 1, Tq, Tk)``.
    Returns ``(B, Tq, H, hd)`` like transformers' attention functions, and
    the received mass in float32: ``(B, Tk)`` summed over heads, or
    ``(B, H, Tk)`` with ``per_head`` (H2O keeps heavy hitters per head).
    """
    b, h, tq, hd = query.shape
    hkv, tk = key.shape[1], key.shape[2]
    g = h // hkv
    q = (query * scaling).view(b, hkv, g, tq, hd)
    kt = key.unsqueeze(2).transpose(-1, -2)  # (B, Hkv, 1, hd, Tk)
    v = value.unsqueeze(2)
    out = query.new_empty(b, hkv, g, tq, hd)
    received = torch.zeros(b, hkv, g, tk, dtype=torch.float32, device=query.device)
    device = _chunk_policy(query.device)
    low, high = CHUNK_ROWS[device]
    chunk = min(max(low, CHUNK_BYTES[device] // max(1, 4 * b * h * tk)), high)
    offset = tk - tq
    key_pos = torch.arange(tk, device=query.device)
    may_mask_rows = attention_mask is not None or query_valid is not None
    if attention_mask is not None:
        mask, per_row = _group_heads(attention_mask, hkv, g)
    for s in range(0, tq, chunk):
        e = min(tq, s + chunk)
        kend = e + offset if (is_causal or causal_keys) else tk  # later keys are masked anyway
        scores = torch.matmul(q[:, :, :, s:e], kt[..., :kend]).float()  # (B, Hkv, g, c, kend)
        if attention_mask is not None:
            m = mask[..., s:e, :kend] if per_row else mask[..., :kend]  # (B, Hkv|1, g|1, c|1, kend)
            if m.dtype == torch.bool:
                scores = scores.masked_fill(~m, float("-inf"))
            else:
                scores = scores + m.float()
        if is_causal:
            q_pos = torch.arange(s, e, device=query.device)[:, None] + offset
            scores = scores.masked_fill(key_pos[None, :kend] > q_pos, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        if may_mask_rows:
            probs = probs.nan_to_num_(0.0)  # fully masked (padding) rows -> 0
        out[:, :, :, s:e] = torch.matmul(probs.to(value.dtype), v[..., :kend, :])
        if query_valid is not None:
            probs = probs * query_valid[:, None, None, s:e, None]
        received[..., :kend] += probs.sum(dim=3)
    received = received.view(b, h, tk) if per_head else received.sum(dim=(1, 2))
    return out.view(b, h, tq, hd).transpose(1, 2).contiguous(), received


@dataclass
class DeferredReceived:
    """The received mass of one attention call, computed on demand for some keys.

    Merge weights only matter inside merge groups (a singleton's weight
    cancels), and the groups follow from the keys alone. So the attention runs
    as one fused kernel that also returns each query's log-sum-exp, and the
    mass key ``j`` receives, ``sum_i exp(q_i . k_j - lse_i)`` over heads and
    valid queries, is computed afterwards for the grouped keys only: about a
    half-size ``QK^T`` instead of the chunked exact softmax over every key.
    """

    query: Tensor  # (B, H, T, hd), as the attention got it (unscaled)
    scale: float  # the attention's query scaling
    key: Tensor  # (B, Hkv, T, hd)
    lse: Tensor  # (B, H, T) float32, +inf on excluded (padded) queries
    mask: Tensor | None  # grouped as by _group_heads, (B, Hkv|1, g|1, T|1, T)
    per_row: bool
    causal: bool
    kernel: str = "torch"  # "triton": one fused pass (mass_kernel.py), no float32 scores in memory

    def at(self, columns: Tensor, fillers: bool = True) -> Tensor:
        """Received mass ``(B, m)`` of keys ``columns (B, m)``; entries ``>= T``
        are fillers and get 0 (``fillers=False``: the caller has none). Where
        sizes are read (the CPU, ``READ_SIZES_ON``) columns must ascend per row;
        elsewhere any order, repeats included."""
        if self.kernel == "triton":
            return fused_received_mass(self.query, self.key, self.lse, columns, self.scale, self.causal, self.mask)
        if not reads_sizes(self.query.device) and self.mask is None and self.query.dtype == torch.float32:
            return self._unmasked_at(columns, fillers)
        b, h, t, hd = self.query.shape
        hkv = self.key.shape[1]
        g = h // hkv
        m = columns.shape[1]
        cols = columns.clamp_max(t - 1)
        # [q, -lse] . [k, 1] = q . k - lse: one matmul gives the log-probabilities. They
        # must come out in float32 (a bf16 log-probability is off by percents after the
        # exp). Half-precision CUDA inputs stay half, with the log-sum-exp split into two
        # half-precision parts, and the tensor cores accumulate and return float32
        # (``bmm(out_dtype=float32)``); elsewhere everything is float32 and in base 2
        # (q and lse scaled by log2(e)): ``exp2`` is about 3x faster than ``exp`` on CPU.
        half = _half_on_cuda(self.query)
        extra = 2 if half else 1
        # queries as (B, Hkv, T, g, hd+e): a chunk of rows s..e-1 of every head of a group
        # is one contiguous (c*g, hd+e) matrix, so no chunk is copied before its matmul
        q = torch.empty(b, hkv, t, g, hd + extra, dtype=self.query.dtype if half else torch.float32,
                        device=self.query.device)
        grouped = self.query.unflatten(1, (hkv, g)).transpose(2, 3)  # (B, Hkv, T, g, hd)
        lse = self.lse.unflatten(1, (hkv, g)).transpose(2, 3)  # (B, Hkv, T, g)
        if half:
            hi = lse.to(self.query.dtype)
            torch.mul(grouped, self.scale, out=q[..., :hd])
            q[..., hd] = -hi
            q[..., hd + 1] = (hi.float() - lse).to(self.query.dtype)
        else:  # one pass writes the scaled query, in base 2, beside its log-sum-exp
            torch.mul(grouped, self.scale * _LOG2E, out=q[..., :hd])
            q[..., hd] = lse * -_LOG2E
        kc = _take_keys(self.key, cols).to(q.dtype)  # (B, Hkv, m, hd)
        kt = torch.cat([kc, kc.new_ones(b, hkv, m, extra)], -1).view(b * hkv, m, hd + extra)
        kt = kt.transpose(1, 2).contiguous()  # (B*Hkv, hd+e, m): ~5% faster CPU matmuls than the transposed view
        device = _chunk_policy(q.device)
        low, high = CHUNK_ROWS[device]
        chunk = min(max(low, MASS_CHUNK_BYTES[device] // max(1, 4 * b * h * m)), high)
        received = torch.zeros(b, m, dtype=torch.float32, device=q.device)
        ends = list(range(min(chunk, t), t, chunk)) + [t]
        starts = [0] + ends[:-1]
        if self.causal and not reads_sizes(q.device):  # every chunk: all columns, masked
            free, widths = [0] * len(ends), [m] * len(ends)
        elif self.causal:  # columns are ascending: a chunk of queries s..e-1 sees a prefix of them,
            # all of it up to column s (no mask needed there), the rest only below the diagonal
            first_rows = torch.arange(0, t, chunk, device=columns.device)  # = starts, made on the device
            bounds = torch.cat([first_rows, (first_rows + chunk).clamp_max(t) - 1])[None].expand(b, -1)
            counts = torch.searchsorted(columns, bounds.contiguous(), right=True)
            n = len(ends)
            sizes = torch.cat([counts[:, :n].min(0).values, counts[:, n:].max(0).values]).tolist()  # one read
            free, widths = sizes[:n], sizes[n:]
        else:
            free, widths = [m] * len(ends), [m] * len(ends)
        for s, e, lo, hi in zip(starts, ends, free, widths):
            rows = q[:, :, s:e].reshape(b * hkv, (e - s) * g, hd + extra)  # a view
            for a, z, diagonal in ((0, lo, False), (lo, hi, True)):
                if z > a:
                    received[:, a:z] += self._mass(rows, kt[..., a:z], cols[:, a:z], s, e, diagonal)
        return received.masked_fill(columns >= t, 0.0)

    def _unmasked_at(self, columns: Tensor, fillers: bool) -> Tensor:
        """:meth:`at` in few launches, for float32 and no mask beyond causality (a GPU's
        path: no size read). ``baddbmm`` gives ``log2 p = alpha q.k - log2(e) lse``
        for a chunk of query rows at once (the log-sum-exp comes in as the added
        input, broadcast over the columns), then mask, ``exp2`` and one sum."""
        b, h, t, hd = self.query.shape
        hkv, m = self.key.shape[1], columns.shape[1]
        g = h // hkv
        cols = columns.clamp_max(t - 1) if fillers else columns
        q = self.query.reshape(b * hkv, g * t, hd)  # rows of a group's heads, query by query
        nl = self.lse.reshape(b * hkv, g * t, 1)
        if b == 1:
            row = cols.view(m)
            kt = self.key[0].index_select(1, row).transpose(1, 2)  # (Hkv, hd, m)
        else:
            kt = self.key.gather(2, cols.view(b, 1, m, 1).expand(b, hkv, m, hd)).view(b * hkv, m, hd).transpose(1, 2)
        # query rows in a few equal sections, each within the chunk budget: a count, not a
        # loop over a range of the length, so a compiled forward keeps the length symbolic
        low, _ = CHUNK_ROWS[_chunk_policy(q.device)]
        budget = MASS_CHUNK_BYTES[_chunk_policy(q.device)]
        sections = max(1, min(g * t // low, -(-(4 * b * hkv * m * g * t) // budget)))
        q_pos = None
        if self.causal:  # each row's query position
            q_pos = torch.arange(g * t, device=q.device)
            q_pos = (q_pos.remainder_(t) if g > 1 else q_pos)[:, None]
        if sections > 1:
            parts = zip(q.tensor_split(sections, 1), nl.tensor_split(sections, 1),
                        q_pos.tensor_split(sections, 0) if self.causal else [None] * sections)
        else:
            parts = ((q, nl, q_pos),)
        received = None
        for q_part, nl_part, pos_part in parts:
            logp = torch.baddbmm(nl_part, q_part, kt, beta=-_LOG2E, alpha=self.scale * _LOG2E)  # (B*Hkv, c, m)
            if self.causal and b == 1:  # key after query: no mass (rows: a group's g heads, query by query)
                logp = logp.masked_fill_(row > pos_part, float("-inf"))
            elif self.causal:
                logp = logp.view(b, hkv, -1, m).masked_fill_((cols[:, None, :] > pos_part)[:, None], float("-inf"))
            part = logp.exp2_().view(b, -1, m).sum(1)
            received = part if received is None else received.add_(part)
        return received.masked_fill_(columns >= t, 0.0) if fillers else received

    def _mass(self, rows: Tensor, kt: Tensor, cols: Tensor, s: int, e: int, diagonal: bool) -> Tensor:
        """Mass that queries ``s..e-1`` (``rows (B*Hkv, c*g, hd+e)``) give keys
        ``cols (B, w)`` (``kt (B*Hkv, hd+e, w)``)."""
        b, w = cols.shape
        hkv = rows.shape[0] // b
        base2 = rows.dtype == torch.float32
        logp = _float32_matmul(rows, kt).view(b, hkv, e - s, -1, w)  # (B, Hkv, c, g, w)
        if self.mask is not None:
            mask = self.mask[..., s:e, :] if self.per_row else self.mask  # (B, Hkv|1, g|1, c|1, T)
            idx = cols[:, None, None, None, :].expand(b, *mask.shape[1:4], w)
            m_cols = mask.expand(b, *mask.shape[1:]).gather(4, idx).transpose(2, 3)
            if m_cols.dtype == torch.bool:
                logp = logp.masked_fill_(~m_cols, float("-inf"))
            else:
                logp = logp.add_(m_cols * _LOG2E if base2 else m_cols)
        if diagonal:
            q_pos = torch.arange(s, e, device=rows.device)[:, None, None]
            logp = logp.masked_fill_(cols[:, None, None, None, :] > q_pos, float("-inf"))
        return (logp.exp2_() if base2 else logp.exp_()).view(b, -1, w).sum(1)


def _float32_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``bmm`` with a float32 result: half-precision CUDA inputs go through the
    tensor cores with float32 accumulation and output (``out_dtype``)."""
    if a.dtype == torch.float32:
        return torch.bmm(a, b)
    return torch.bmm(a.contiguous(), b.contiguous(), out_dtype=torch.float32)


def _take_keys(key: Tensor, cols: Tensor) -> Tensor:
    """``key (B, Hkv, T, hd)`` at ``cols (B, m)`` -> ``(B, Hkv, m, hd)``; one
    ``index_select`` per row (several times faster than ``gather`` over every element)."""
    return torch.stack([key[i].index_select(1, cols[i]) for i in range(key.shape[0])])


def attention_with_lse(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float,
    is_causal: bool,
    query_valid: Tensor | None = None,
    mass_mask: bool = True,
) -> tuple[Tensor, DeferredReceived]:
    """Exact attention through a fused kernel (the one SDPA runs) that also
    returns the log-sum-exp; received mass deferred. Same arguments and
    output layout as :func:`attention_with_received`. ``mass_mask=False``:
    the mask hides only padded keys (and, causal, later ones), so the mass of
    unpadded keys is computed without it."""
    b, h, tq, hd = query.shape
    hkv = key.shape[1]
    k, v = (key, value) if hkv == h else (key.repeat_interleave(h // hkv, 1), value.repeat_interleave(h // hkv, 1))
    kernel_mask = attention_mask
    if kernel_mask is not None and kernel_mask.dtype == torch.bool:
        kernel_mask = torch.zeros(kernel_mask.shape, dtype=query.dtype, device=query.device).masked_fill_(
            ~kernel_mask, float("-inf"))
    elif kernel_mask is not None and kernel_mask.dtype != query.dtype:
        kernel_mask = kernel_mask.to(query.dtype)
    out, lse = _fused_attention_with_lse(query, k, v, kernel_mask, is_causal and kernel_mask is None, scaling)
    if attention_mask is not None:
        out = out.nan_to_num_(0.0)
    lse = lse if lse.dtype == torch.float32 else lse.float()
    if query_valid is not None:
        lse = lse.masked_fill(~query_valid[:, None, :], float("inf"))
    grouped = attention_mask is not None and mass_mask
    mask, per_row = _group_heads(attention_mask, hkv, h // hkv) if grouped else (None, False)
    deferred = DeferredReceived(query, scaling, key, lse, mask, per_row, is_causal)
    return out.transpose(1, 2).contiguous(), deferred


def _half_on_cuda(x: Tensor) -> bool:
    return x.device.type == "cuda" and x.dtype in (torch.float16, torch.bfloat16)


def _fused_attention_with_lse(
    query: Tensor, key: Tensor, value: Tensor, bias: Tensor | None, is_causal: bool, scale: float
) -> tuple[Tensor, Tensor]:
    """``(out (B, H, T, hd), lse (B, H, T) float32)`` from SDPA's own kernels:
    the CPU flash kernel; on CUDA flash attention (half precision, no mask)
    or memory-efficient attention (float32 or an additive mask)."""
    if query.device.type != "cuda":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, is_causal, attn_mask=bias, scale=scale)
        return out, lse
    if bias is None and _half_on_cuda(query) and query.shape[-1] <= 256:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(
            query, key, value, 0.0, is_causal, False, scale=scale)[:2]
        return out, lse
    if bias is not None:  # the kernel wants the bias's rows 16-aligned: pad the key axis, then view
        tk = bias.shape[-1]
        pad = -tk % 16
        bias = torch.nn.functional.pad(bias, (0, pad))[..., :tk] if pad else bias
        bias = bias.expand(query.shape[0], query.shape[1], query.shape[2], tk)
    out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, True, 0.0, is_causal, scale=scale)[:2]
    return out, lse[..., : query.shape[2]]  # the kernel pads the log-sum-exp to a block size


def _group_heads(mask: Tensor, hkv: int, g: int) -> tuple[Tensor, bool]:
    """A mask broadcastable to ``(B, H, Tq, Tk)`` -> ``(B, Hkv|1, g|1, Tq|1, Tk)``
    for grouped scores, and whether it has a row per query. A broadcast
    padding mask ``(B, 1, 1, Tk)`` (Whisper's encoder) has one row for all
    queries: it must not be sliced per query chunk."""
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    mb, mh, mq, mk = mask.shape
    if mh == 1:
        mask = mask.unsqueeze(2)
    elif mh == hkv * g:
        mask = mask.view(mb, hkv, g, mq, mk)
    else:
        raise ValueError(f"attention mask with {mh} heads for {hkv * g} query heads")
    return mask, mq > 1


def probed_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[Tensor, None]:
    """The ``"fastadasp"`` attention implementation (see module docstring)."""
    probe: AttentionProbe = getattr(module, _PROBE_ATTR)
    if not probe.armed:
        inner = ALL_ATTENTION_FUNCTIONS.get_interface(probe.inner, None)
        if inner is None:
            raise RuntimeError(f"attention implementation {probe.inner!r} is not available")
        return inner(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if probe.want_keys:
        probe.key = key
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    if not probe.want_received:
        inner = ALL_ATTENTION_FUNCTIONS.get_interface(probe.inner, None)
        return inner(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", False) if is_causal is None else is_causal
    # a causal prefill's own mask has a row per query and hides later keys; a
    # broadcast mask (one row) hides none, exactly as eager and SDPA read it
    per_query_mask = attention_mask is None or attention_mask.shape[-2] > 1
    causal_keys = bool(getattr(module, "is_causal", False)) and query.shape[2] == key.shape[2] and per_query_mask
    is_causal = bool(is_causal) and attention_mask is None and query.shape[2] > 1
    causal = is_causal or causal_keys
    if probe.defer and query.device.type in ("cpu", "cuda") and query.shape[2] == key.shape[2]:
        out, probe.received = attention_with_lse(query, key, value, attention_mask, scale, causal, probe.query_valid,
                                                 mass_mask=not probe.padding_mask)
        probe.received.kernel = probe.mass_kernel
        return out, None
    out, probe.received = attention_with_received(
        query, key, value, attention_mask, scale, is_causal, probe.query_valid, probe.per_head, causal_keys
    )
    return out, None


AttentionInterface.register(PROBE_IMPLEMENTATION, probed_attention)


def install_probe(attn: nn.Module) -> AttentionProbe:
    """Route ``attn`` through :func:`probed_attention`; the shared model
    config is left untouched (the module gets its own shallow copy)."""
    config = attn.config
    inner = config._attn_implementation or "eager"
    if inner not in ("eager", "sdpa") and not inner.startswith("flash") and inner != "flex_attention":
        raise ValueError(f"attention implementation {inner!r} cannot be probed")
    probe = AttentionProbe(inner=inner, _saved_config=config)
    own = copy.copy(config)
    own._attn_implementation_internal = PROBE_IMPLEMENTATION
    attn.config = own
    setattr(attn, _PROBE_ATTR, probe)
    return probe


def remove_probe(attn: nn.Module) -> None:
    probe: AttentionProbe = getattr(attn, _PROBE_ATTR)
    attn.config = probe._saved_config
    delattr(attn, _PROBE_ATTR)
