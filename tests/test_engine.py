"""The engine on a tiny random Whisper encoder: exactness, budgets, hooks, batches."""

import pytest
import torch
from conftest import method_params, skip_unless_applicable

from fastadasp.engine import Budget, TokenReducer, attention_with_received
from fastadasp.reduction import AnalyticFlopsBudget, TokenLayerBudget
from fastadasp.engine.attention import PROBE_IMPLEMENTATION
from fastadasp.models.whisper import WHISPER_ENCODER_LAYOUT, encode_whisper, whisper_stack_spec
from fastadasp.reduction import (
    ATome,
    BudgetError,
    FastAdaSPDense,
    FastAdaSPSparse,
    NoReduction,
    RandomEvict,
)

#: every configs/method/*.yaml (a new method's config joins the matrix), then settings variants
ALL_METHODS = method_params("paper/fastadasp_dense_decay", ("fastadasp_dense", {"weighted": False}))


def reducer(whisper, method, flops, budget_type: type[Budget] = AnalyticFlopsBudget, **kw):
    return TokenReducer(whisper.model.encoder.layers, WHISPER_ENCODER_LAYOUT, method,
                        whisper_stack_spec(whisper.config), budget_type(flops, **kw))


def run(whisper, feats, method, flops, keys=None, **kw):
    with reducer(whisper, method, flops, **kw) as red:
        return encode_whisper(whisper, feats, red, keys)


def test_own_encoder_forward_equals_stock(tiny_whisper, features):
    with torch.inference_mode():
        stock = tiny_whisper.model.encoder(features).last_hidden_state
    ours, valid, realised, _ = encode_whisper(tiny_whisper, features)
    assert torch.equal(ours, stock) and bool(valid.all()) and realised == [0.0, 0.0]


@pytest.mark.parametrize("method", [NoReduction(), FastAdaSPDense()])
def test_flops_zero_is_identical_to_full_tokens(tiny_whisper, features, method):
    full, *_ = encode_whisper(tiny_whisper, features)
    reduced, valid, realised, tokens = run(tiny_whisper, features, method, 0.0)
    assert torch.equal(full, reduced) and realised == [0.0, 0.0] and tokens[0] == [1500] * 5


def test_method_none_with_a_budget_is_an_error(tiny_whisper, features):
    with pytest.raises(BudgetError, match="cannot reduce"):
        run(tiny_whisper, features, NoReduction(), 0.3)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("flops", [0.3, 0.5])
def test_every_method_meets_the_flops_budget(tiny_whisper, features, method, flops):
    skip_unless_applicable(method, whisper_stack_spec(tiny_whisper.config))
    hidden, valid, realised, tokens = run(tiny_whisper, features, method, flops)
    for r in realised:
        assert abs(r - flops) <= 0.01, (method, realised)
    assert hidden.shape[1] == int(valid.sum(1).max())
    assert all(t[-1] < 1500 for t in tokens)


def test_uncapped_atome_realises_between_r_and_2r(tiny_whisper, features):
    capped = run(tiny_whisper, features, ATome(cap_to_budget=True), 0.3)[3]
    uncapped = run(tiny_whisper, features, ATome(cap_to_budget=False), 0.3)[3]
    for c, u in zip(capped, uncapped):
        first_r = (1500 - c[1]) / 1500
        assert first_r * 1500 <= 1500 - u[1] <= 2 * first_r * 1500 + 1


def test_paper_budget_uses_one_ratio_and_reports_realised(tiny_whisper, features):
    _, _, realised, tokens = run(tiny_whisper, features, FastAdaSPSparse(layer=1), 0.3, budget_type=TokenLayerBudget)
    r = 1 - (4 * 0.7 - 2) / 2  # closed form, N=4, L=1
    assert tokens[0][2] == 1500 - int(1500 * r)
    assert realised[0] != pytest.approx(0.3, abs=1e-3)  # analytic FLOPs differ from the token-layer model


def test_context_manager_restores_the_model(tiny_whisper, features):
    enc = tiny_whisper.model.encoder
    config = tiny_whisper.config
    before = encode_whisper(tiny_whisper, features)[0]
    with reducer(tiny_whisper, FastAdaSPDense(), 0.5):
        assert "forward" in vars(enc.layers[0])
        assert enc.layers[0].self_attn.config._attn_implementation == PROBE_IMPLEMENTATION
        assert config._attn_implementation == "sdpa"  # the shared config is never touched
        # outside a forward_state the wrapped blocks run stock code
        assert torch.equal(encode_whisper(tiny_whisper, features)[0], before)
    for layer in enc.layers:
        assert "forward" not in vars(layer)
        assert layer.self_attn.config is config
        assert not hasattr(layer.self_attn, "_fastadasp_probe")
    assert torch.equal(encode_whisper(tiny_whisper, features)[0], before)


def test_random_methods_are_seeded_and_batch_independent(tiny_whisper, features):
    method = RandomEvict(layer=1, seed=7)
    a = run(tiny_whisper, features, method, 0.3, keys=["x", "y"])[0]
    b = run(tiny_whisper, features, method, 0.3, keys=["x", "y"])[0]
    assert torch.equal(a, b)
    alone = run(tiny_whisper, features[1:], method, 0.3, keys=["y"])[0]
    assert torch.allclose(a[1], alone[0], atol=1e-5)
    other = run(tiny_whisper, features, RandomEvict(layer=1, seed=8), 0.3, keys=["x", "y"])[0]
    assert not torch.allclose(a, other)


@pytest.mark.parametrize("method", method_params("paper/atome"))
def test_batched_equals_one_by_one(tiny_whisper, features, method):
    """Samples may keep different token counts (A-ToMe uncapped): padding masks keep
    every sample's output equal to running it alone."""
    skip_unless_applicable(method, whisper_stack_spec(tiny_whisper.config))
    hidden, valid, realised, tokens = run(tiny_whisper, features, method, 0.4)
    for i in range(features.shape[0]):
        alone, valid_i, realised_i, tokens_i = run(tiny_whisper, features[i : i + 1], method, 0.4, keys=[str(i)])
        n = int(valid[i].sum())
        assert n == alone.shape[1] and tokens[i] == tokens_i[0]
        assert torch.allclose(hidden[i][valid[i]], alone[0], atol=1e-4)


def test_probed_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 7, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    mask = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False  # sample 1: last two keys are padding
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[1, 5:] = False
    for causal in (False, True):
        out, received = attention_with_received(q, k, v, mask, 0.3, causal, valid)
        kr, vr = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
        scores = (q @ kr.transpose(-1, -2)) * 0.3
        scores = scores.masked_fill(~mask, float("-inf"))
        if causal:
            scores = scores.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
        p = scores.softmax(-1)
        ref_out = (p @ vr).transpose(1, 2)
        ref_rec = (p * valid[:, None, :, None]).sum(dim=(1, 2))
        assert torch.allclose(out[valid], ref_out[valid], atol=1e-5)
        assert torch.allclose(received, ref_rec, atol=1e-5)
        assert torch.all(received[1, 5:] == 0)


def count_host_reads(monkeypatch) -> list:
    """Record every ``item``/``tolist``/``bool``/``int``/``float`` of a tensor
    (device-to-host reads) and every ``torch.tensor``/``torch.as_tensor`` of
    host data (host-to-device copies on a GPU; both synchronise it) called
    from the project's code (not from torch or transformers)."""
    import sys

    reads = []

    def record(name, owner, original):
        def wrapper(*a, **k):
            caller = sys._getframe(1).f_code.co_filename
            if "fastadasp" in caller:
                reads.append((name, caller.rsplit("/", 1)[-1], sys._getframe(1).f_lineno))
            return original(*a, **k)

        monkeypatch.setattr(owner, name, wrapper)

    for name in ("item", "tolist", "__bool__", "__int__", "__float__"):
        record(name, torch.Tensor, getattr(torch.Tensor, name))
    for name in ("tensor", "as_tensor"):
        record(name, torch, getattr(torch, name))
    return reads


def reads_per_layer(defer: bool, causal: bool, exact: bool = True, sizes_read: bool = True) -> list:
    """Device reads per reducing layer. The output length (a shape) is planned on
    the host for methods that remove exactly floor(n * r) tokens per span, read
    otherwise (A-ToMe). Where the engine reads sizes (the CPU, ``READ_SIZES_ON``)
    the deferred received mass also reads how many keys are grouped and, in a
    causal stack, how far each query chunk reaches into them; elsewhere (CUDA)
    host-side bounds replace both."""
    return ([("tolist", "ops.py")] * (not exact) + [("__int__", "reducer.py")] * (defer and sizes_read)
            + [("tolist", "attention.py")] * (defer and causal and sizes_read))


PLAN_CHECK = [("tolist", "reducer.py")]  # once per forward, after the last layer: the host plan held


def bounded_sizes(monkeypatch) -> None:
    """The policy of a GPU (no size read from the device) on the CPU."""
    from fastadasp.engine import attention

    monkeypatch.setattr(attention, "READ_SIZES_ON", ())


def whisper_layers(tiny_whisper, red, monkeypatch, sizes_read=True):
    """Run a batch of 2 through the reducing encoder layers; (output, reads)."""
    torch.manual_seed(0)
    h = torch.randn(2, 1500, tiny_whisper.config.d_model)
    with red, red.forward_state(torch.zeros(2, 1500, dtype=torch.long), None, ["a", "b"]):
        if not sizes_read:
            bounded_sizes(monkeypatch)
        reads = count_host_reads(monkeypatch)  # planning the budget reads the layout once, before
        with torch.inference_mode():
            for layer in tiny_whisper.model.encoder.layers:
                h = layer(h, None)
        monkeypatch.undo()
    return h, [r[:2] for r in reads]


@pytest.mark.parametrize("sizes_read", [True, False])
@pytest.mark.parametrize("defer", [False, True])
def test_reduced_layers_read_the_device_once_per_reduction(tiny_whisper, features, monkeypatch, defer, sizes_read):
    """Per reducing layer, the device-to-host reads are the sizes of what
    comes next (reads_per_layer), none at all under a GPU's policy, and nothing
    is copied host-to-device: masks, padding, span counts, ratios and output
    lengths are planned once per forward. Both the chunked probe and the
    deferred mass; the same output under both policies."""
    red = reducer(tiny_whisper, FastAdaSPDense(), 0.5)
    red._defer = defer
    h, reads = whisper_layers(tiny_whisper, red, monkeypatch, sizes_read)
    assert reads == reads_per_layer(defer, causal=False, sizes_read=sizes_read) * 4 + PLAN_CHECK, reads
    if not sizes_read:
        h_read, _ = whisper_layers(tiny_whisper, red, monkeypatch)
        assert torch.allclose(h, h_read, atol=1e-6)


def test_a_data_dependent_count_is_read_per_layer(tiny_whisper, monkeypatch):
    """A-ToMe (uncapped) removes between r*n and 2r*n tokens: its output length is
    read per layer, and there is no plan to check."""
    red = reducer(tiny_whisper, ATome(cap_to_budget=False), 0.5)
    _, reads = whisper_layers(tiny_whisper, red, monkeypatch)
    assert reads == reads_per_layer(False, False, exact=False) * 4


def test_a_method_that_breaks_its_exact_count_fails_the_plan_check(tiny_whisper, monkeypatch):
    class Claims(ATome):
        exact_counts = True

    red = reducer(tiny_whisper, Claims(cap_to_budget=False), 0.5)
    with pytest.raises(RuntimeError, match="differ from the host plan"):
        whisper_layers(tiny_whisper, red, monkeypatch)


def test_host_plan_equals_the_lengths_the_device_gets():
    """plan_lengths on uneven spans and ratios (a padded batch) against
    counts_from_ratio and the token bookkeeping on the device."""
    from fastadasp.engine import TokenReducer
    from fastadasp.reduction import TokenLayout
    from fastadasp.reduction.ops import counts_from_ratio

    layouts = [TokenLayout(7, (333, 41)), TokenLayout(3, (1000,)), TokenLayout(0, ())]
    ratios = torch.tensor([[0.1, 0.0, 0.37], [0.29, 0.0, 0.05], [0.5, 0.5, 0.5]], dtype=torch.float64)
    plan = TokenReducer.plan_lengths(layouts, ratios, 1010, frozenset({0, 2}))
    spans = torch.tensor([[333, 41], [1000, 0], [0, 0]])
    t, want = 1010, {}
    for layer in (0, 2):
        cut = counts_from_ratio(spans, ratios[:, layer])
        spans = spans - cut
        out = t - cut.sum(1)
        t = int(out.max())
        want[layer] = (t, int(out.min()))
    assert plan == want and plan[0][1] < plan[0][0] == 1010  # uneven rows; the empty row stays longest


@pytest.mark.parametrize("sizes_read", [True, False])
@pytest.mark.parametrize("defer", [False, True])
def test_decoder_prefill_and_decode_read_the_device_once_per_reduction(monkeypatch, defer, sizes_read):
    """The same for a left-padded speech-LLM batch: the same reads per
    reducing layer in the prefill (none under a GPU's policy), none in the
    decode steps, and the same generation under both policies."""
    import numpy as np

    from fastadasp.models.qwen2_audio import Qwen2AudioModel

    lm = Qwen2AudioModel("tiny:qwen2_audio")
    rng = np.random.default_rng(0)
    audios = [rng.normal(0, 0.1, int(s * 16000)).astype("float32") for s in (2.0, 3.1)]
    inputs, segments = lm.prepare(audios, "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe the audio.")
    assert not bool(inputs["attention_mask"].all())
    red = lm.reducer(FastAdaSPDense(), Budget(0.4))
    red._defer = defer

    def generate(policy_read: bool):
        with red, red.forward_state(segments, inputs["attention_mask"], ["a", "b"]), torch.inference_mode():
            if not policy_read:
                bounded_sizes(monkeypatch)
            reads = count_host_reads(monkeypatch)
            out = lm.model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False,
                                    output_scores=True, return_dict_in_generate=True)
            monkeypatch.undo()
        return out, [r[:2] for r in reads]

    out, reads = generate(sizes_read)
    assert out.sequences.shape[1] == inputs["input_ids"].shape[1] + 4
    per_layer = reads_per_layer(defer, causal=True, sizes_read=sizes_read)
    assert reads == per_layer * len(lm.language_model.layers) + PLAN_CHECK, reads
    if not sizes_read:
        read, _ = generate(True)
        assert torch.equal(out.sequences, read.sequences)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(out.scores, read.scores))
