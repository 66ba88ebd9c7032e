"""The speech-LLM engine on both tiny families (random weights: plumbing, never results)."""

import pytest
import torch
from conftest import method_params, skip_unless_applicable, tone

from fastadasp.engine import Budget
from fastadasp.models.speech_lm import spans_from_mask, split_runs
from fastadasp.reduction import (
    BudgetError,
    FastAdaSPDense,
    FastV,
    NoReduction,
    RandomEvict,
)

#: every configs/method/*.yaml (a new method's config joins the matrix), then the decay schedule
METHODS = method_params("paper/fastadasp_dense_decay", seed=1)
AUDIOS = [tone(2.0, 0), tone(3.0, 1), tone(2.6, 2)]


def prefill_logits(lm, audios, method=None, flops=0.0, keys=None):
    inputs, segments = lm.prepare(audios, lm.prompt)
    with torch.inference_mode():
        if method is None:
            return lm.model(**inputs).logits[:, -1]
        with lm.reducer(method, Budget(flops)) as red, red.forward_state(segments, inputs["attention_mask"], keys):
            return lm.model(**inputs).logits[:, -1]


def test_no_reduction_is_the_stock_model_and_the_model_is_restored(lm):
    stock = prefill_logits(lm, AUDIOS)
    params = {k: v.clone() for k, v in lm.model.state_dict().items()}
    config = lm.language_model.config
    assert torch.equal(prefill_logits(lm, AUDIOS, NoReduction(), 0.0), stock)
    assert torch.equal(prefill_logits(lm, AUDIOS, FastAdaSPDense(), 0.0), stock)
    prefill_logits(lm, AUDIOS, FastAdaSPDense(), 0.4)
    for layer in lm.language_model.layers:
        assert "forward" not in vars(layer) and layer.self_attn.config is config
    assert config._attn_implementation == "sdpa"
    assert all(torch.equal(v, params[k]) for k, v in lm.model.state_dict().items())
    assert torch.equal(prefill_logits(lm, AUDIOS), stock)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("beams", [1, 5])
def test_every_method_generates_within_budget(lm, method, batch, beams):
    skip_unless_applicable(method, lm.stack_spec)
    lm.num_beams = beams
    try:
        out = lm.generate(AUDIOS[:batch], lm.prompt, method, Budget(0.3), 5, [f"s{i}" for i in range(batch)])
    finally:
        lm.num_beams = 1
    assert len(out) == batch and all(len(g.tokens) >= 1 for g in out)
    for g in out:
        realised = g.extra["kv_reduction"] if method.acts_on == "kv_cache" else g.flops_realized
        assert abs(realised - 0.3) <= 0.01, (method, realised)
        if method.acts_on == "tokens":
            assert g.tokens_per_layer[-1] < g.tokens_per_layer[0]
            assert g.extra["kv_reduction"] > 0 and g.extra["decode_flops_realized"] > 0
        else:
            assert g.flops_realized == 0.0  # H2O leaves prefill unchanged


@pytest.mark.parametrize("method", method_params("paper/atome"))
def test_batched_equals_one_by_one(lm, method):
    skip_unless_applicable(method, lm.stack_spec)
    keys = ["a", "b", "c"]
    batched = prefill_logits(lm, AUDIOS, method, 0.4, keys)
    for i, key in enumerate(keys):
        alone = prefill_logits(lm, AUDIOS[i : i + 1], method, 0.4, [key])
        assert torch.allclose(batched[i], alone[0], atol=1e-4)
    together = lm.generate(AUDIOS, lm.prompt, method, Budget(0.4), 6, keys)
    for i, key in enumerate(keys):
        assert together[i].tokens == lm.generate(AUDIOS[i : i + 1], lm.prompt, method, Budget(0.4), 6, [key])[0].tokens


def test_seeded_random_methods_reproduce_and_depend_on_the_seed(lm):
    a = prefill_logits(lm, AUDIOS, RandomEvict(layer=1, seed=5), 0.4, ["x", "y", "z"])
    b = prefill_logits(lm, AUDIOS, RandomEvict(layer=1, seed=5), 0.4, ["x", "y", "z"])
    c = prefill_logits(lm, AUDIOS, RandomEvict(layer=1, seed=6), 0.4, ["x", "y", "z"])
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_different_audio_gives_different_outputs(lm):
    logits = prefill_logits(lm, [AUDIOS[0], tone(2.0, 7)], FastAdaSPDense(), 0.3)
    assert not torch.allclose(logits[0], logits[1], atol=1e-3)


def test_both_position_modes_decode_and_differ(lm):
    outs = {}
    for mode in ("keep", "paper"):
        lm.positions = mode
        outs[mode] = prefill_logits(lm, AUDIOS, FastAdaSPDense(), 0.4)
        assert len(lm.generate(AUDIOS, lm.prompt, FastAdaSPDense(), Budget(0.4), 4)[0].tokens) >= 1
    lm.positions = "keep"
    assert not torch.allclose(outs["keep"], outs["paper"])


def test_long_audio_is_one_span_per_30s_window(lm):
    inputs, segments = lm.prepare([tone(65.0, 3)], lm.prompt)
    assert int(segments.max()) + 1 == 3  # 30 s + 30 s + 5 s
    lengths = [(segments == s).sum().item() for s in range(3)]
    assert lengths[0] == lengths[1] == 750 and 0 < lengths[2] < 750
    g = lm.generate([tone(65.0, 3)], lm.prompt, FastAdaSPDense(), Budget(0.3), 3)[0]
    assert abs(g.flops_realized - 0.3) <= 0.01


def test_prompt_without_audio_span_is_an_error(lm, monkeypatch):
    monkeypatch.setattr(lm, "prompt", "Transcribe nothing.")
    with pytest.raises(ValueError, match="placeholder|audio"):
        lm.generate(AUDIOS[:1], lm.prompt, FastAdaSPDense(), Budget(0.3), 3)


def test_audio_span_too_short_for_the_budget_is_an_error(lm):
    with pytest.raises(BudgetError, match="largest feasible reduction"):
        lm.generate([tone(0.3, 0)], lm.prompt, FastV(layer=3), Budget(0.5), 3)


def test_attention_implementation_that_cannot_serve_is_an_error(lm, monkeypatch):
    monkeypatch.setattr(lm.language_model.config, "_attn_implementation", "flash_attention_2")
    with pytest.raises(ValueError, match="flash_attention_2.*cannot serve"):
        lm.generate(AUDIOS[:1], lm.prompt, FastAdaSPDense(), Budget(0.3), 3)


def test_eager_attention_gives_the_same_reduction(lm, monkeypatch):
    sdpa = prefill_logits(lm, AUDIOS, FastAdaSPDense(), 0.4)
    monkeypatch.setattr(lm.language_model.config, "_attn_implementation", "eager")
    eager = prefill_logits(lm, AUDIOS, FastAdaSPDense(), 0.4)
    assert torch.allclose(sdpa, eager, atol=1e-4)


def test_span_helpers():
    mask = torch.tensor([[0, 1, 1, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    spans = spans_from_mask(mask)
    assert spans.tolist() == [[-1, 0, 0, -1, 1, 1, 1, 1, 1]]
    assert split_runs(spans, 2).tolist() == [[-1, 0, 0, -1, 1, 1, 2, 2, 3]]
