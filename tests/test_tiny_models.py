"""Tiny random speech LMs: build offline, load through from_pretrained, generate.

The outputs of these models mean nothing; the tests check the plumbing that real
checkpoints share with them (processor placeholder expansion, batching with
padding, audio reaching the logits, idempotent builds).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fastadasp.testing import tiny_models as tiny

torch.set_num_threads(1)

SR = 16000
PROMPTS = {
    "qwen2_audio": "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe the input speech.",
    "audioflamingo3": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<sound>Transcribe the input speech.<|im_end|>\n<|im_start|>assistant\n"
    ),
}


def _classes(family):
    import transformers

    return {
        "qwen2_audio": transformers.Qwen2AudioForConditionalGeneration,
        "audioflamingo3": transformers.AudioFlamingo3ForConditionalGeneration,
    }[family]


def _sine(seconds, freq):
    t = np.arange(int(seconds * SR)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _noise(seconds, seed):
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _process(processor, family, audios):
    """Batch with padding, on the left (what batched greedy generate needs)."""
    text = [PROMPTS[family]] * len(audios)
    if family == "qwen2_audio":
        # pads right unless asked; audio features are always padded to 3000 frames
        return processor(text=text, audio=audios, sampling_rate=SR, padding=True, padding_side="left",
                         return_tensors="pt")
    # AF3 pads text on the left by default; a top-level padding=True would also pad the
    # audio features to the longest clip and break the encoder, so it goes in text_kwargs
    return processor(text=text, audio=audios, sampling_rate=SR, text_kwargs={"padding": True})


def _feature_mask(inputs):
    key = "feature_attention_mask" if "feature_attention_mask" in inputs else "input_features_mask"
    return inputs[key]


def _generate_style_position_ids(attention_mask):
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {name: tiny.build_tiny(name, root / name) for name in tiny.TINY_FAMILIES}


@pytest.fixture(scope="module")
def loaded(built):
    from transformers import AutoProcessor

    out = {}
    for family, folder in built.items():
        processor = AutoProcessor.from_pretrained(folder)
        model = _classes(family).from_pretrained(folder).eval()
        out[family] = (processor, model)
    return out


@pytest.mark.parametrize("family", sorted(tiny.TINY_FAMILIES))
def test_build_is_complete_idempotent_and_deterministic(built, family, tmp_path):
    folder = built[family]
    assert tiny.is_complete(folder, family)
    weights = folder / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    assert tiny.build_tiny(family, folder) == folder
    assert weights.stat().st_mtime_ns == mtime  # complete folder: not rebuilt

    again = tiny.build_tiny(family, tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name

    stamp = json.loads((again / tiny.STAMP_FILE).read_text())
    (again / tiny.STAMP_FILE).write_text(json.dumps(dict(stamp, version="stale")))
    assert not tiny.is_complete(again, family)
    tiny.build_tiny(family, again)
    assert tiny.is_complete(again, family)


def test_tiny_model_dir_honours_cache_env(monkeypatch, tmp_path, built):
    monkeypatch.setenv("FASTADASP_CACHE", str(tmp_path))
    assert tiny.default_tiny_root() == tmp_path / "tiny"
    folder = tiny.tiny_model_dir("qwen2_audio")  # built on first use
    assert folder == tmp_path / "tiny" / "qwen2_audio" and tiny.is_complete(folder, "qwen2_audio")
    assert (folder / "model.safetensors").read_bytes() == (built["qwen2_audio"] / "model.safetensors").read_bytes()
    with pytest.raises(KeyError):
        tiny.tiny_model_dir("no_such_model")


@pytest.mark.parametrize("family", sorted(tiny.TINY_FAMILIES))
def test_placeholders_match_encoder_output(loaded, family):
    processor, model = loaded[family]
    audio_id = model.config.audio_token_id
    assert processor.audio_token_id == audio_id
    audios = [_sine(2.0, 440), _noise(1.3, 0)]
    inputs = _process(processor, family, audios)

    n_placeholders = (inputs["input_ids"] == audio_id).sum(-1).tolist()
    assert n_placeholders[0] == 50  # 2 s -> 200 mel frames -> 100 (conv) -> 50 (pool)
    assert inputs["input_features"].shape[-1] == 3000  # always one padded 30 s window per clip here

    fmask = _feature_mask(inputs)
    _, out_lengths = model.model.audio_tower._get_feat_extract_output_lengths(fmask.sum(-1))
    assert out_lengths.tolist() == n_placeholders
    with torch.no_grad():  # and the encoder really yields that many valid frames
        if family == "qwen2_audio":
            enc = model.model.audio_tower(inputs["input_features"]).last_hidden_state
            assert enc.shape[1] == 750
        else:
            feats = model.model.get_audio_features(inputs["input_features"], fmask).pooler_output
            assert feats.shape[0] == sum(n_placeholders)
    # left padding: every row ends with real tokens
    assert inputs["attention_mask"][:, -1].all()
    assert not inputs["attention_mask"][1, 0]


@pytest.mark.parametrize("family", sorted(tiny.TINY_FAMILIES))
def test_audio_changes_prefill_logits(loaded, family):
    processor, model = loaded[family]
    # same length -> identical input_ids; only the audio differs
    inputs = _process(processor, family, [_sine(2.0, 440), _sine(2.0, 660)])
    assert torch.equal(inputs["input_ids"][0], inputs["input_ids"][1])
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1].float()
    rel = ((logits[0] - logits[1]).norm() / logits[0].norm()).item()
    assert rel > 0.1, rel
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("family", sorted(tiny.TINY_FAMILIES))
def test_batched_greedy_generate_matches_single(loaded, family):
    processor, model = loaded[family]
    audios = [_sine(2.0, 440), _noise(1.3, 0)]
    inputs = _process(processor, family, audios)
    prompt_len = inputs["input_ids"].shape[1]
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        assert out.shape[0] == 2 and 1 <= out.shape[1] - prompt_len <= 5
        # the first new token is the argmax of the prefill logits computed the way
        # generate does it (positions from the attention mask, not 0..L-1)
        pos = _generate_style_position_ids(inputs["attention_mask"])
        prefill = model(**inputs, position_ids=pos).logits[:, -1]
        assert out[:, prompt_len].tolist() == prefill.argmax(-1).tolist()
        # left padding does not change what a sample generates
        for i, audio in enumerate(audios):
            single = _process(processor, family, [audio])
            one = model.generate(**single, max_new_tokens=5, do_sample=False)
            new_single = one[0, single["input_ids"].shape[1]:].tolist()
            assert out[i, prompt_len:prompt_len + len(new_single)].tolist() == new_single
    text = processor.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
    assert len(text) == 2 and all(isinstance(t, str) for t in text)


def test_decoder_paths_are_standard_prenorm(loaded):
    for family, (_, model) in loaded.items():
        paths = tiny.FAMILY_PATHS[family]
        lm = model.get_submodule(paths["language_model"])
        layers = model.get_submodule(paths["decoder_layers"])
        assert len(layers) == 4 and lm.layers is layers
        for name in ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp"):
            assert hasattr(layers[0], name), (family, name)
        assert model.get_submodule(paths["rotary_emb"]) is lm.rotary_emb
        assert model.get_submodule(paths["lm_head"]).out_features == model.config.text_config.vocab_size
