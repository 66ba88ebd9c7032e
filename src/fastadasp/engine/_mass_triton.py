"""The Triton kernel behind :func:`fastadasp.engine.mass_kernel.received_mass`
(imported on first use: ``import triton.language`` fixes, for the whole
process, whether kernels compile for the GPU or run in Triton's interpreter,
which ``TRITON_INTERPRET=1`` selects)."""

import triton
import triton.language as tl


@triton.jit
def received_mass_kernel(
    q_ptr, k_ptr, lse_ptr, cols_ptr, mask_ptr, out_ptr,
    T, M, HEADS, G, HEAD_DIM, rows_per_slice,
    sq_b, sq_h, sq_t, sq_d,
    sk_b, sk_h, sk_t, sk_d,
    sl_b, sl_h, sl_t,
    sc_b, sc_m,
    sm_b, sm_h, sm_g, sm_t, sm_k,
    so_s, so_b, so_h, so_m,
    qk_scale,
    CAUSAL: tl.constexpr, MASK: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    pid_s = tl.program_id(2)
    b = pid_bh // HEADS
    h = pid_bh % HEADS
    kv = h // G
    gi = h % G
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.load(cols_ptr + b * sc_b + offs_n * sc_m, mask=offs_n < M, other=T)
    live = cols < T
    cols = tl.where(live, cols, 0)
    offs_d = tl.arange(0, BLOCK_D)
    keys = tl.load(k_ptr + b * sk_b + kv * sk_h + cols[None, :] * sk_t + offs_d[:, None] * sk_d,
                   mask=(offs_d[:, None] < HEAD_DIM) & live[None, :], other=0.0)  # (BLOCK_D, BLOCK_N): k^T
    if UPCAST:
        keys = keys.to(tl.float32)
    row_lo = pid_s * rows_per_slice
    row_hi = tl.minimum(T, row_lo + rows_per_slice)
    if CAUSAL:  # queries before the block's smallest key see none of it
        first = tl.min(tl.where(live, cols, T), axis=0)
        row_lo = tl.maximum(row_lo, first // BLOCK_M * BLOCK_M)
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for start in range(row_lo, row_hi, BLOCK_M):
        rows = start + tl.arange(0, BLOCK_M)
        in_rows = rows < row_hi
        q = tl.load(q_ptr + b * sq_b + h * sq_h + rows[:, None] * sq_t + offs_d[None, :] * sq_d,
                    mask=in_rows[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
        lse = tl.load(lse_ptr + b * sl_b + h * sl_h + rows * sl_t, mask=in_rows, other=float("inf"))
        if UPCAST:
            q = q.to(tl.float32)
        if IEEE:
            scores = tl.dot(q, keys, input_precision="ieee")
        else:
            scores = tl.dot(q, keys, out_dtype=tl.float32)
        logp = scores * qk_scale - lse[:, None] * 1.4426950408889634
        if MASK != 0:
            m_ptrs = mask_ptr + b * sm_b + kv * sm_h + gi * sm_g + rows[:, None] * sm_t + cols[None, :] * sm_k
            m_in = in_rows[:, None] & live[None, :]
            if MASK == 1:
                logp = tl.where(tl.load(m_ptrs, mask=m_in, other=0) != 0, logp, float("-inf"))
            else:
                logp = logp + tl.load(m_ptrs, mask=m_in, other=0.0).to(tl.float32) * 1.4426950408889634
        if CAUSAL:
            logp = tl.where(cols[None, :] > rows[:, None], float("-inf"), logp)
        acc += tl.sum(tl.exp2(logp), axis=0)
    tl.store(out_ptr + pid_s * so_s + b * so_b + h * so_h + offs_n * so_m, tl.where(live, acc, 0.0),
             mask=offs_n < M)
