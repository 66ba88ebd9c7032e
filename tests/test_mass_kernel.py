"""The fused received-mass kernel (engine/mass_kernel.py) against the exact mass.

The kernel runs here in Triton's interpreter, which must be switched on
before Triton is first imported (hence the environment variable at the top
of this module). The reference is independent of both mass paths: full
scores in float64, a plain softmax, masked and summed over heads and valid
queries.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports Triton: the CPU runs it only interpreted

import pytest
import torch

from fastadasp.engine.attention import attention_with_lse
from fastadasp.engine.mass_kernel import check_mass_kernel, received_mass, triton_unavailable

REASON = triton_unavailable("cpu")
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))


def exact_mass(q, k, scale, causal, mask=None, query_valid=None):
    """(B, T) mass each key receives, float64 softmax over full scores; and the
    log-sum-exp (B, H, T) float32 the flash kernel would return (+inf on excluded queries)."""
    b, h, t, _ = q.shape
    kk = k.double().repeat_interleave(h // k.shape[1], 1)
    scores = q.double() @ kk.transpose(-1, -2) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.double()
    if causal:
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    lse = torch.logsumexp(scores, -1)
    probs = torch.softmax(scores, -1).nan_to_num(0.0)
    if query_valid is not None:
        probs = probs * query_valid[:, None, :, None]
        lse = lse.masked_fill(~query_valid[:, None, :], float("inf"))
    return probs.sum((1, 2)), lse.float()


def inputs(b=2, h=4, hkv=2, t=45, hd=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t, hd, generator=g).to(dtype)
    k = torch.randn(b, hkv, t, hd, generator=g).to(dtype)
    return q, k


def chosen_columns(b, t, m, seed=1, fillers=3):
    """Ascending key indices per row, then fillers (>= t), as group_weights passes them."""
    g = torch.Generator().manual_seed(seed)
    cols = torch.stack([torch.randperm(t, generator=g)[:m].sort().values for _ in range(b)])
    return torch.cat([cols, torch.full((b, fillers), t + 2)], 1)


def expected_at(mass, cols):
    t = mass.shape[1]
    return mass.gather(1, cols.clamp_max(t - 1)).masked_fill(cols >= t, 0.0).float()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("slices", [1, 3])
def test_matches_exact_mass_with_gqa_and_ragged_tiles(causal, slices):
    # 45 queries in tiles of 16 and 23 columns in blocks of 16: both edges ragged; 4 query heads on 2 key heads
    q, k = inputs()
    scale = 16**-0.5
    mass, lse = exact_mass(q, k, scale, causal)
    cols = chosen_columns(2, 45, 20)
    got = received_mass(q, k, lse, cols, scale, causal, block_keys=16, block_rows=16, slices=slices)
    assert got.dtype == torch.float32 and got.shape == cols.shape
    torch.testing.assert_close(got, expected_at(mass, cols), rtol=1e-5, atol=1e-5)
    assert (got[:, -3:] == 0).all()  # fillers


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy: finfo.min * log2(e) -> -inf
def test_padded_encoder_additive_key_mask_and_excluded_queries():
    # Whisper's encoder in a padded batch: one additive row (B, 1, 1, T) hides row 1's last 12 keys, and
    # its padded queries are left out of the sums (+inf log-sum-exp, as attention_with_lse sets it)
    q, k = inputs(h=2, hkv=2, t=40)
    valid = torch.ones(2, 40, dtype=torch.bool)
    valid[1, 28:] = False
    additive = torch.zeros(2, 1, 1, 40).masked_fill(~valid[:, None, None, :], torch.finfo(torch.float32).min)
    mass, lse = exact_mass(q, k, 0.25, False, additive, valid)
    cols = chosen_columns(2, 40, 18, seed=4)
    got = received_mass(q, k, lse, cols, 0.25, False, additive.unsqueeze(2), block_keys=16, block_rows=16)
    torch.testing.assert_close(got, expected_at(mass, cols), rtol=1e-5, atol=1e-6)


def test_left_padded_decoder_bool_mask():
    # a causal prefill of a left-padded batch: a per-query bool mask (B, 1, T, T), padded rows see themselves only
    q, k = inputs(t=37)
    valid = torch.ones(2, 37, dtype=torch.bool)
    valid[0, :9] = False
    allowed = torch.ones(37, 37, dtype=torch.bool).tril()[None] & valid[:, None, :]
    allowed |= torch.eye(37, dtype=torch.bool)[None]
    mass, lse = exact_mass(q, k, 0.3, True, allowed[:, None], valid)
    cols = chosen_columns(2, 37, 15, seed=7)
    got = received_mass(q, k, lse, cols, 0.3, True, allowed[:, None, None], block_keys=16, block_rows=16)
    torch.testing.assert_close(got, expected_at(mass, cols), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_float32(dtype):
    # half-precision inputs, float32 scores and sums: equal to the exact mass of the same (rounded) inputs
    q, k = inputs(t=33, hd=24, dtype=dtype)  # head dim 24: padded to a 32-wide tile
    mass, lse = exact_mass(q.float(), k.float(), 24**-0.5, True)
    cols = chosen_columns(2, 33, 12, seed=2)
    got = received_mass(q, k, lse, cols, 24**-0.5, True, block_keys=16, block_rows=16)
    torch.testing.assert_close(got, expected_at(mass, cols), rtol=2e-5, atol=1e-5)


def test_unsorted_columns_and_no_columns():
    q, k = inputs(t=30)
    mass, lse = exact_mass(q, k, 0.25, True)
    cols = chosen_columns(2, 30, 10, seed=3)[:, torch.randperm(13, generator=torch.Generator().manual_seed(0))]
    got = received_mass(q, k, lse, cols, 0.25, True, block_keys=16, block_rows=16)
    torch.testing.assert_close(got, expected_at(mass, cols), rtol=1e-5, atol=1e-6)
    assert received_mass(q, k, lse, cols[:, :0], 0.25, True).shape == (2, 0)


def test_engine_dispatch_equals_torch_path_and_exact():
    # the engine's own path: CPU flash attention with its log-sum-exp, then the deferred mass by either kernel
    q, k = inputs(t=50)
    v = torch.randn_like(k)
    valid = torch.ones(2, 50, dtype=torch.bool)
    valid[1, :6] = False
    allowed = (torch.ones(50, 50, dtype=torch.bool).tril()[None] & valid[:, None, :]) | torch.eye(50, dtype=torch.bool)
    _, deferred = attention_with_lse(q, k, v, allowed[:, None], 0.25, True, valid)
    cols = chosen_columns(2, 50, 21, seed=5)
    by_torch = deferred.at(cols)
    deferred.kernel = "triton"
    by_triton = deferred.at(cols)
    mass, _ = exact_mass(q, k, 0.25, True, allowed[:, None], valid)
    torch.testing.assert_close(by_triton, by_torch, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_triton, expected_at(mass, cols), rtol=1e-5, atol=1e-6)


def test_reduced_prefill_with_triton_mass_equals_torch_mass(monkeypatch):
    # a weighted FastAdaSP prefill on a tiny random LLM, padded batch: same tokens kept, same hidden states
    from fastadasp.engine import attention
    from fastadasp.reduction import FastAdaSPDense
    from fastadasp.run.benchmarking import llm_prompts, llm_reducer, random_qwen2_lm
    from fastadasp.models.speech_lm import decoder_stack_spec

    model = random_qwen2_lm(64, 3, seed=0, vocab=128, heads=4)
    spec = decoder_stack_spec(model.config)
    embeds, mask, segments = (x.clone() for x in llm_prompts(model, 2, 60, 10, seed=3))
    mask[1, :7], segments[1, :7] = 0, -1
    calls = []
    monkeypatch.setattr(attention, "fused_received_mass", lambda *a: calls.append(1) or received_mass(*a))
    outs = {}
    for kernel in ("torch", "triton"):
        reducer = llm_reducer(model, spec, FastAdaSPDense("constant"), 0.4, profile=False, mass_kernel=kernel)
        with torch.inference_mode(), reducer, reducer.forward_state(segments, mask) as state:
            res = model(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True)
            outs[kernel] = ([t.tolist() for t in state.tokens], state.valid.clone(), res.hidden_states[-1])
    assert len(calls) == 3  # once per reducing layer, only when asked for
    assert outs["torch"][0] == outs["triton"][0] and outs["torch"][0][-1] != outs["torch"][0][0]
    assert torch.equal(outs["torch"][1], outs["triton"][1])
    torch.testing.assert_close(outs["triton"][2], outs["torch"][2], rtol=1e-5, atol=1e-5)


def test_op_has_a_fake_kernel_for_compile():
    q, k = inputs(t=20)
    _, lse = exact_mass(q, k, 0.25, True)
    cols = chosen_columns(2, 20, 6)
    torch.library.opcheck(torch.ops.fastadasp.received_mass.default, (q, k, lse, cols, None, 0.25, True, 16, 16, 1),
                          test_utils=("test_schema", "test_faketensor"))


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="mass_kernel must be one of"):
        check_mass_kernel("cuda_magic")
    q, k = inputs(t=20)
    with pytest.raises(ValueError, match="do not fit together"):
        received_mass(q, k, torch.zeros(2, 4, 19), chosen_columns(2, 20, 5), 0.25, True)


def test_model_setting_reaches_the_probes():
    # model.mass_kernel=triton: the adapter's reducer arms every reducing layer's probe with it
    from fastadasp.models.qwen2_audio import Qwen2AudioModel
    from fastadasp.reduction import AnalyticFlopsBudget, FastAdaSPDense

    lm = Qwen2AudioModel("tiny:qwen2_audio", mass_kernel="triton")
    with lm.reducer(FastAdaSPDense("constant"), AnalyticFlopsBudget(0.3)) as reducer:
        assert reducer._probes and {p.mass_kernel for p in reducer._probes.values()} == {"triton"}
    with pytest.raises(ValueError, match="mass_kernel must be one of"):
        Qwen2AudioModel("tiny:qwen2_audio", mass_kernel="cuda")
    from fastadasp.models.whisper import WhisperModel

    # a speed setting (equal outputs within rounding, as batch_size): runs resume across it, folders do not split
    assert "mass_kernel" in Qwen2AudioModel.throughput_settings and "mass_kernel" in WhisperModel.throughput_settings
