"""model.compile=true: the reduced forward compiled with the reduction hooks inside.

No graph break inside the engine (torch._dynamo.explain over reduced forwards),
one graph for every audio length (the host plan's sizes enter as dynamic integers),
outputs equal to eager within the reference tolerance. Tracing tests use dynamo's
eager backend (fast: no code generation); one test runs Inductor on a 2-layer model."""

import numpy as np
import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters

from fastadasp.engine import Budget, compile_model
from fastadasp.engine import compiled as compiled_module
from fastadasp.models.speech_lm import decoder_stack_spec
from fastadasp.reduction import ATome, FastAdaSPDense, FastAdaSPSparse
from fastadasp.run.benchmarking import llm_prompts, llm_reducer, random_qwen2_lm
from fastadasp.run.op_count import padded_llm_prompt


PROMPT = "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe the audio."


@pytest.fixture(scope="module")
def tiny_lm():
    return random_qwen2_lm(64, 2, 0, vocab=128, heads=4)


@pytest.fixture
def eager_backend(monkeypatch):
    monkeypatch.setattr(compiled_module, "COMPILE_OPTIONS", {"backend": "eager"})
    dynamo.reset()
    counters.clear()
    yield
    dynamo.reset()


def prefill(model, forward, method, prompt, flops=0.4):
    reducer = llm_reducer(model, decoder_stack_spec(model.config), method, flops, profile=False)
    embeds, mask, segments = prompt
    with torch.inference_mode(), reducer, reducer.forward_state(segments, mask):
        out = forward(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1], [layer.keys.shape[2] for layer in out.cache.layers]


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("method", [FastAdaSPDense(), FastAdaSPDense(weighted=False), FastAdaSPSparse(layer=1)],
                         ids=["weighted", "unweighted", "sparse"])
def test_the_reduced_forward_has_no_graph_break(tiny_lm, method, padded):
    prompt = padded_llm_prompt(tiny_lm, 90, 20, 1, pad=30) if padded else llm_prompts(tiny_lm, 1, 90, 20, 1)
    reducer = llm_reducer(tiny_lm, decoder_stack_spec(tiny_lm.config), method, 0.2, profile=False)
    with torch.inference_mode(), reducer, reducer.forward_state(prompt[2], prompt[1]):
        explained = dynamo.explain(tiny_lm)(inputs_embeds=prompt[0], attention_mask=prompt[1], use_cache=True,
                                            logits_to_keep=1)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons


def test_one_graph_serves_every_audio_length(tiny_lm, eager_backend):
    forward = compile_model(tiny_lm)
    for audio in (60, 77, 95, 120):
        for method in (FastAdaSPDense(), FastAdaSPDense(weighted=False)):
            got, lengths = prefill(tiny_lm, forward, method, llm_prompts(tiny_lm, 1, audio, 20, 1))
            want, want_lengths = prefill(tiny_lm, tiny_lm, method, llm_prompts(tiny_lm, 1, audio, 20, 1))
            assert lengths == want_lengths and torch.allclose(got, want, atol=1e-5)
    # one graph per structure (weighted, unweighted), none per length
    assert counters["stats"]["unique_graphs"] == 2


def test_padded_batches_of_any_length_share_a_graph(tiny_lm, eager_backend):
    forward = compile_model(tiny_lm)
    for audio, pad in ((60, 25), (81, 30), (104, 41)):
        prompt = padded_llm_prompt(tiny_lm, audio, 20, 1, pad=pad)
        got, lengths = prefill(tiny_lm, forward, FastAdaSPDense(), prompt)
        want, want_lengths = prefill(tiny_lm, tiny_lm, FastAdaSPDense(), prompt)
        assert lengths == want_lengths and torch.allclose(got, want, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1


def test_the_plan_is_still_checked_after_a_compiled_forward(tiny_lm, eager_backend):
    class Claims(ATome):
        exact_counts = True

    with pytest.raises(RuntimeError, match="differ from the host plan"):
        prefill(tiny_lm, compile_model(tiny_lm), Claims(cap_to_budget=False), llm_prompts(tiny_lm, 1, 90, 20, 1))


def test_compiled_outputs_equal_eager_with_inductor(tiny_lm):
    """The real backend (code generation on the CPU), one length: equal within the
    reference tolerance (1e-5 relative to the logits' scale)."""
    dynamo.reset()
    forward = compile_model(tiny_lm)
    prompt = llm_prompts(tiny_lm, 1, 100, 20, 1)
    got, lengths = prefill(tiny_lm, forward, FastAdaSPDense(), prompt)
    want, want_lengths = prefill(tiny_lm, tiny_lm, FastAdaSPDense(), prompt)
    assert lengths == want_lengths
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


def test_speech_lm_generates_the_same_with_model_compile(eager_backend):
    from fastadasp.models.qwen2_audio import Qwen2AudioModel

    compiled, eager = Qwen2AudioModel("tiny:qwen2_audio", compile=True), Qwen2AudioModel("tiny:qwen2_audio")
    rng = np.random.default_rng(0)
    for seconds in (2.0, 2.7):
        audio = [rng.normal(0, 0.1, int(seconds * 16000)).astype("float32")]
        a = compiled.generate(audio, PROMPT, FastAdaSPDense(), Budget(0.4), 4)[0]
        b = eager.generate(audio, PROMPT, FastAdaSPDense(), Budget(0.4), 4)[0]
        assert a.tokens == b.tokens and a.tokens_per_layer == b.tokens_per_layer
    with pytest.raises(ValueError, match="model.compile must be true or false"):
        Qwen2AudioModel("tiny:qwen2_audio", compile="yes")


def test_whisper_encoder_with_model_compile(tiny_whisper_dir, eager_backend):
    from fastadasp.models.whisper import WhisperModel

    compiled = WhisperModel(str(tiny_whisper_dir), compile=True)
    eager = WhisperModel(str(tiny_whisper_dir))
    feats = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(0))
    for model in (compiled, eager):
        with model.reducer(FastAdaSPDense(), Budget(0.5)) as red:
            model.out = model.encode(feats, red)
    (a, va, ra, ta), (b, vb, rb, tb) = compiled.out, eager.out
    assert torch.equal(va, vb) and ta == tb and ra == rb and torch.allclose(a, b, atol=1e-5)
