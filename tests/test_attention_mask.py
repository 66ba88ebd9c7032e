"""The attention probe with masks over sequences several query chunks long.

Reference: the model's own eager attention (which returns the probabilities)
and the received mass summed from those probabilities directly. Masks come in
two shapes: a broadcast padding mask ``(B, 1, 1, T)`` (Whisper's encoder; one
row for all queries) and a full mask ``(B, 1, T, T)`` (causal decoders).
"""

import pytest
import torch

from fastadasp.engine import Budget, TokenReducer, attention_with_received
from fastadasp.engine.attention import CHUNK_ROWS, install_probe, remove_probe
from fastadasp.models.whisper import WHISPER_ENCODER_LAYOUT, whisper_stack_spec
from fastadasp.reduction import FastAdaSPDense, FastV

T = 3 * CHUNK_ROWS["cpu"][1] + 37  # several query chunks, the last one partial


def padding(lengths: list[int], t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]


def additive(allowed: torch.Tensor) -> torch.Tensor:
    return torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)


def reference(q, k, v, allowed, scale, query_valid):
    """Plain softmax attention and the received mass from its probabilities."""
    g = q.shape[1] // k.shape[1]
    kr, vr = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    scores = (q @ kr.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    p = scores.softmax(-1).nan_to_num(0.0)
    return (p @ vr).transpose(1, 2), (p * query_valid[:, None, :, None]).sum(dim=(1, 2))


@pytest.mark.parametrize("fmt", ["bool", "float"])
@pytest.mark.parametrize("shape", ["broadcast", "full", "full-causal"])
def test_chunked_attention_with_masks_equals_plain_softmax(fmt, shape):
    torch.manual_seed(0)
    b, h, hkv, hd = 2, 4, 2, 8
    q, k, v = torch.randn(b, h, T, hd), torch.randn(b, hkv, T, hd), torch.randn(b, hkv, T, hd)
    valid = padding([T, T - 150], T)  # sample 1: its last 150 tokens are padding
    allowed = valid[:, None, None, :]
    if shape != "broadcast":
        allowed = allowed.expand(b, 1, T, T).clone()
    if shape == "full-causal":
        allowed &= torch.ones(T, T, dtype=torch.bool).tril()
    mask = allowed if fmt == "bool" else additive(allowed)
    out, received = attention_with_received(q, k, v, mask, 0.3, False, valid)
    ref_out, ref_received = reference(q, k, v, allowed, 0.3, valid)
    assert torch.allclose(out[valid], ref_out[valid], atol=1e-5)
    assert torch.allclose(received, ref_received, atol=1e-3, rtol=1e-5)
    assert torch.all(received[1, T - 150 :] == 0)
    assert received[0].sum() == pytest.approx(h * T, rel=1e-5)  # every valid query spreads mass 1 per head


def test_per_head_mask_is_grouped_with_its_query_heads():
    torch.manual_seed(1)
    b, h, hkv, hd = 1, 4, 2, 8
    q, k, v = torch.randn(b, h, T, hd), torch.randn(b, hkv, T, hd), torch.randn(b, hkv, T, hd)
    allowed = torch.rand(b, h, 1, T) > 0.3
    allowed[..., 0] = True
    out, received = attention_with_received(q, k, v, allowed, 0.5, False, per_head=True)
    ref_out, _ = reference(q, k, v, allowed, 0.5, torch.ones(b, T, dtype=torch.bool))
    assert torch.allclose(out, ref_out, atol=1e-5)
    p = (q @ k.repeat_interleave(2, 1).transpose(-1, -2) * 0.5).masked_fill(~allowed, float("-inf")).softmax(-1)
    assert torch.allclose(received, p.sum(2), atol=1e-3)


def _probe_vs_eager(attn, call, mask, query_valid):
    """Run ``call(mask)`` through the armed probe and through eager attention."""
    config = attn.config
    eager = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        with torch.inference_mode():
            ref_out, probs = call(mask)
    finally:
        config._attn_implementation = eager
    probe = install_probe(attn)
    try:
        probe.arm(want_keys=True, want_received=True, query_valid=query_valid)
        with torch.inference_mode():
            out, _ = call(mask)
        keys, received = probe.disarm()
    finally:
        remove_probe(attn)
    ref_received = (probs.float() * query_valid[:, None, :, None]).sum(dim=(1, 2))
    return out, ref_out, received, ref_received, keys


@pytest.mark.parametrize("shape", ["broadcast", "full"])
def test_whisper_encoder_attention_with_a_padding_mask(tiny_whisper, shape):
    attn = tiny_whisper.model.encoder.layers[0].self_attn
    t = 1500
    torch.manual_seed(2)
    hidden = torch.randn(2, t, tiny_whisper.config.d_model)
    valid = padding([t, 1100], t)
    allowed = valid[:, None, None, :] if shape == "broadcast" else valid[:, None, None, :].expand(2, 1, t, t)
    out, ref_out, received, ref_received, keys = _probe_vs_eager(
        attn, lambda m: attn(hidden_states=hidden, attention_mask=m), additive(allowed), valid
    )
    assert torch.allclose(out[valid], ref_out[valid], atol=1e-5)
    assert torch.allclose(received, ref_received, atol=1e-3, rtol=1e-5)
    assert keys.shape == (2, t, tiny_whisper.config.d_model)


@pytest.fixture(scope="module")
def tiny_qwen2_attention():
    from transformers import Qwen2AudioForConditionalGeneration

    from fastadasp.testing.tiny_models import tiny_model_dir

    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_model_dir("qwen2_audio"), attn_implementation="sdpa")
    lm = model.eval().model.language_model
    return lm.layers[0].self_attn, lm.rotary_emb


@pytest.mark.parametrize("shape", ["broadcast", "full"])
@pytest.mark.parametrize("fmt", ["bool", "float"])
def test_qwen2_attention_with_masks(tiny_qwen2_attention, shape, fmt):
    attn, rotary = tiny_qwen2_attention
    torch.manual_seed(3)
    hidden = torch.randn(2, T, attn.config.hidden_size)
    valid = padding([T, T - 90], T).flip(1)  # left padding, as in generation
    positions = (valid.long().cumsum(1) - 1).clamp_min(0)
    rope = rotary(hidden, positions)
    allowed = valid[:, None, None, :]
    if shape == "full":
        allowed = allowed & torch.ones(T, T, dtype=torch.bool).tril()
        allowed |= torch.eye(T, dtype=torch.bool)  # padded rows attend to themselves: no NaN
    mask = allowed if fmt == "bool" else additive(allowed)
    eager_mask = additive(allowed)  # eager attention adds the mask

    def call(m):
        return attn(hidden_states=hidden, position_embeddings=rope, attention_mask=m)

    out, ref_out, received, ref_received, _ = _probe_vs_eager(
        attn, lambda m: call(eager_mask if attn.config._attn_implementation == "eager" else mask), mask, valid
    )
    assert torch.allclose(out[valid], ref_out[valid], atol=1e-5)
    assert torch.allclose(received, ref_received, atol=1e-3, rtol=1e-5)


def test_whisper_encoder_reduces_a_padded_batch_like_each_sample_alone(tiny_whisper):
    """End to end: the engine hands the probed layers a broadcast padding mask
    when a batch is padded; the padded sample must reduce exactly as alone."""
    torch.manual_seed(4)
    layers = tiny_whisper.model.encoder.layers
    spec = whisper_stack_spec(tiny_whisper.config)
    t, short = 1500, 1000
    x = torch.randn(2, t, tiny_whisper.config.d_model)
    valid = padding([t, short], t)
    for method in (FastAdaSPDense("constant"), FastV(layer=1)):
        def encode(h, v, keys):
            with TokenReducer(layers, WHISPER_ENCODER_LAYOUT, method, spec, Budget(0.4)) as red:
                segments = torch.zeros(h.shape[:2], dtype=torch.long)
                with torch.inference_mode(), red.forward_state(segments, v, keys) as state:
                    for layer in layers:
                        h = layer(h, None)
                    return h, state.valid.clone()

        batched, kept = encode(x, valid, ["a", "b"])
        alone, _ = encode(x[1:, :short], None, ["b"])
        n = int(kept[1].sum())
        assert n == alone.shape[1] < short
        assert torch.allclose(batched[1][kept[1]], alone[0], atol=1e-4)


# -- the deferred received mass (fused kernel + log-sum-exp, grouped keys only) ---------
@pytest.mark.parametrize("fmt", ["bool", "float"])
@pytest.mark.parametrize("shape", [None, "broadcast", "full-causal", "causal"])
def test_deferred_received_equals_the_full_probe_at_any_columns(shape, fmt):
    from fastadasp.engine.attention import attention_with_lse

    if shape in (None, "causal") and fmt == "float":
        pytest.skip("no mask")
    torch.manual_seed(5)
    b, h, hkv, hd = 2, 4, 2, 8
    q, k, v = torch.randn(b, h, T, hd), torch.randn(b, hkv, T, hd), torch.randn(b, hkv, T, hd)
    valid = padding([T, T - 70], T)
    causal = shape == "causal"
    allowed = None if shape in (None, "causal") else valid[:, None, None, :]
    if shape == "full-causal":
        allowed = allowed & torch.ones(T, T, dtype=torch.bool).tril()
        allowed |= torch.eye(T, dtype=torch.bool)
    query_valid = None if allowed is None else valid
    mask = allowed if fmt == "bool" or allowed is None else additive(allowed)
    out, received = attention_with_received(q, k, v, mask, 0.4, causal, query_valid,
                                            causal_keys=shape == "full-causal")
    out_lse, deferred = attention_with_lse(q, k, v, mask, 0.4, causal or shape == "full-causal", query_valid)
    rows = valid if query_valid is not None else torch.ones_like(valid)
    assert torch.allclose(out_lse[rows], out[rows], atol=1e-5)
    columns = torch.stack([torch.randperm(T)[:90].sort().values, torch.randperm(T)[:90].sort().values])
    columns[1, 80:] = T  # fillers
    mass = deferred.at(columns)
    expected = received.gather(1, columns.clamp_max(T - 1)).masked_fill(columns >= T, 0)
    assert torch.allclose(mass, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
def test_half_precision_mass_path_matches_float32(monkeypatch, causal):
    """The CUDA half-precision path (bf16 query and keys, the log-sum-exp split
    into two bf16 parts, float32 matmul output) run on the CPU: the CUDA-only
    ``bmm(out_dtype=float32)`` is replaced by an upcast ``bmm``, which computes
    the same products (bf16 x bf16 is exact in float32). With a power-of-two
    scale nothing else rounds, so it must match the float32 path on the same
    bf16 values closely; a wrong sign or layout of the split would not."""
    from fastadasp.engine import attention as A

    torch.manual_seed(7)
    b, h, hkv, hd = 2, 4, 2, 16
    q, k, v = (torch.randn(b, n, T, hd).bfloat16() for n in (h, hkv, hkv))
    _, exact = A.attention_with_lse(q.float(), k.float(), v.float(), None, 0.25, causal)
    lse = exact.lse + torch.rand(exact.lse.shape)  # masses below 1 per query; most not bf16-representable
    exact.lse = lse
    columns = torch.stack([torch.randperm(T)[:90].sort().values, torch.randperm(T)[:90].sort().values])
    expected = exact.at(columns)
    half = A.DeferredReceived(q, 0.25, k, lse, None, False, causal)
    monkeypatch.setattr(A, "_half_on_cuda", lambda x: x.dtype == torch.bfloat16)
    monkeypatch.setattr(A, "_float32_matmul", lambda x, y: torch.bmm(x.float(), y.float()))
    got = half.at(columns)
    assert got.dtype == torch.float32
    error = float(((got - expected).abs() / expected).max())
    half.lse = lse.bfloat16().float()  # what a single bf16 log-sum-exp would give
    single = float(((half.at(columns) - expected).abs() / expected).max())
    assert error < 2e-4 and error < single / 10, (error, single)


def _compare_deferred(red, run):
    """Run with the deferred received mass (the default on CPU) and with the full probe."""
    assert red._defer
    deferred = run(red)
    red._defer = False
    full = run(red)
    return deferred, full


def test_deferred_weights_give_the_same_whisper_encoder(tiny_whisper, features):
    from fastadasp.models.whisper import encode_whisper

    spec = whisper_stack_spec(tiny_whisper.config)
    for method in (FastAdaSPDense("constant"), FastAdaSPDense("decay")):
        red = TokenReducer(tiny_whisper.model.encoder.layers, WHISPER_ENCODER_LAYOUT, method, spec, Budget(0.5))

        def run(r):
            with r:
                return encode_whisper(tiny_whisper, features, r)

        (a, va, ra, ta), (b, vb, rb, tb) = _compare_deferred(red, run)
        assert ta == tb and ra == rb and torch.equal(va, vb)
        assert torch.allclose(a, b, atol=1e-5)


def test_deferred_weights_give_the_same_speech_lm_prefill():
    import numpy as np

    from fastadasp.models.qwen2_audio import Qwen2AudioModel
    from fastadasp.reduction import FastAdaSPSparse, RandomMerge

    lm = Qwen2AudioModel("tiny:qwen2_audio")
    prompt = "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe the audio."
    rng = np.random.default_rng(0)
    audios = [rng.normal(0, 0.1, int(s * 16000)).astype("float32") for s in (2.0, 3.1)]  # padded batch
    inputs, segments = lm.prepare(audios, prompt)
    for method in (FastAdaSPDense("constant"), FastAdaSPSparse(layer=1), RandomMerge(layer=1, seed=2)):
        red = lm.reducer(method, Budget(0.4))

        def run(r):
            with torch.inference_mode(), r, r.forward_state(segments, inputs["attention_mask"], ["a", "b"]) as state:
                return lm.model(**inputs).logits[:, -1], torch.stack(state.tokens, 1)

        (a, ta), (b, tb) = _compare_deferred(red, run)
        assert torch.equal(ta, tb)
        assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("batch,heads,kv_heads", [(1, 4, 4), (2, 4, 2)])
def test_gpu_policy_mass_equals_the_full_probe_at_any_columns(monkeypatch, causal, batch, heads, kv_heads):
    """The deferred mass as a GPU computes it (no size read: baddbmm over query
    sections, columns in any order, repeated, no fillers or some) against the full
    probe; small chunks force several sections of query rows."""
    from fastadasp.engine import attention as A

    torch.manual_seed(8)
    hd, t = 8, 300
    q, k, v = torch.randn(batch, heads, t, hd), torch.randn(batch, kv_heads, t, hd), torch.randn(batch, kv_heads, t, hd)
    _, received = attention_with_received(q, k, v, None, 0.3, causal)
    columns = torch.stack([torch.randperm(t)[:40] for _ in range(batch)])
    columns = torch.cat([columns, columns[:, :7]], 1)  # repeats, unsorted
    expected = received.gather(1, columns)
    with A.device_policy("cuda"):
        for budget in (A.MASS_CHUNK_BYTES["default"], 4 * 40 * heads * 70):  # one section; several
            monkeypatch.setitem(A.MASS_CHUNK_BYTES, "default", budget)
            _, deferred = A.attention_with_lse(q, k, v, None, 0.3, causal)
            assert torch.allclose(deferred.at(columns, fillers=False), expected, rtol=1e-4, atol=1e-5)
            padded = torch.cat([columns, torch.full((batch, 3), t)], 1)  # fillers get 0
            got = deferred.at(padded)
            assert torch.allclose(got[:, :-3], expected, rtol=1e-4, atol=1e-5) and bool((got[:, -3:] == 0).all())
