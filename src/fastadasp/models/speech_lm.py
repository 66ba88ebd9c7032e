"""Speech LLMs: audio tokens inside the LLM input, reduced in its decoder blocks.

This is the paper's own setting. The shared code here serves every Hugging
Face speech LM whose language model is a stack of pre-norm decoder blocks
(``input_layernorm -> self_attn -> post_attention_layernorm -> mlp``) with
rotary positions; a family adapter (``qwen2_audio.py``, ``audioflamingo3.py``)
adds only what differs: the model class, how a prompt and its audio become
inputs, and where the audio spans are.

Reduction runs during ``generate()``'s prefill inside the LLM blocks; the
decode steps see per-layer caches of different lengths (engine policies).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..engine import BlockLayout, Budget, CausalPolicy, TokenReducer, compile_model
from ..engine.mass_kernel import check_mass_kernel
from ..reduction import ReductionMethod, StackSpec
from .base import Generation, SpeechModel
from .whisper_decode import is_repetition_loop

__all__ = ["SpeechLM", "PRE_NORM_DECODER_LAYOUT", "decoder_stack_spec", "spans_from_mask", "split_runs"]


def _attention(block: nn.Module, normed: Tensor, kwargs: dict) -> Tensor:
    out, _ = block.self_attn(hidden_states=normed, **kwargs)
    return out


def _mlp(block: nn.Module, x: Tensor) -> Tensor:
    return block.mlp(block.post_attention_layernorm(x))


#: Llama / Qwen2 / Mistral-style decoder layers
PRE_NORM_DECODER_LAYOUT = BlockLayout(attn_norm="input_layernorm", attn="self_attn", attention=_attention, mlp=_mlp)


def decoder_stack_spec(c) -> StackSpec:
    """FLOPs shapes of a Llama/Qwen2-style decoder (gated SwiGLU MLP, GQA)."""
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return StackSpec(
        num_layers=c.num_hidden_layers,
        d_model=c.hidden_size,
        num_heads=c.num_attention_heads,
        num_kv_heads=c.num_key_value_heads,
        head_dim=head_dim,
        ffn_dim=c.intermediate_size,
        mlp_matrices=3,
        causal=True,
    )


def spans_from_mask(audio: Tensor) -> Tensor:
    """``(B, T)`` bool audio positions -> span ids (one per contiguous run),
    ``-1`` elsewhere."""
    start = audio.clone()
    start[:, 1:] &= ~audio[:, :-1]
    ids = start.long().cumsum(1) - 1
    return torch.where(audio, ids, torch.full_like(ids, -1))


def split_runs(segments: Tensor, max_len: int) -> Tensor:
    """Cut every span into consecutive windows of at most ``max_len`` tokens
    (a long audio's 30 s encoder windows), each its own span."""
    b, t = segments.shape
    pos = torch.arange(t, device=segments.device).expand(b, t)
    is_start = segments >= 0
    is_start[:, 1:] &= segments[:, 1:] != segments[:, :-1]
    start_pos = torch.where(is_start, pos, torch.zeros_like(pos)).cummax(1).values
    new_start = (segments >= 0) & ((pos - start_pos) % max_len == 0)
    ids = new_start.long().cumsum(1) - 1
    return torch.where(segments >= 0, ids, torch.full_like(ids, -1))


class SpeechLM(SpeechModel):
    """Shared adapter code for HF speech LMs with a pre-norm decoder LLM."""

    #: the ``...ForConditionalGeneration`` class
    model_class: type
    #: dotted path from the HF model to the language model (``Qwen2Model``)
    language_model_path: str = "model.language_model"
    #: the fused mass equals the torch path within float rounding (tests/test_mass_kernel.py), like batch_size
    throughput_settings = frozenset({"mass_kernel", "compile"})

    def __init__(
        self,
        source: str,
        device: str = "cpu",
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        device_map: str | None = None,
        positions: str = "keep",
        num_beams: int = 1,
        cache_dir: str | None = None,
        family: str | None = None,
        mass_kernel: str = "torch",
        compile: bool = False,
    ):
        """``compile``: run the language model compiled with the reduction hooks
        (:func:`~fastadasp.engine.compile_model`, prefill and decode steps; no CUDA
        graphs: the cache a forward returns must outlive the next forward)."""
        from transformers import AutoProcessor

        if not isinstance(compile, bool):  # before any weight loads
            raise ValueError(f"model.compile must be true or false, got {compile!r}")
        if family:  # e.g. "qwen2_audio_instruct": the same adapter with the chat-format prompts
            self.family = family
        self.name = source
        if source.startswith("tiny:"):  # a random tiny model of this family, built locally on first use
            from ..testing.tiny_models import tiny_model_dir

            source = str(tiny_model_dir(source.removeprefix("tiny:")))
        kwargs = {"dtype": getattr(torch, dtype), "attn_implementation": attn_implementation, "cache_dir": cache_dir}
        if device_map:
            kwargs["device_map"] = device_map
        model = self.model_class.from_pretrained(source, **kwargs)
        self.model = model if device_map else model.to(device)
        self.model.eval()
        self.processor = AutoProcessor.from_pretrained(source, cache_dir=cache_dir)
        self.processor.tokenizer.padding_side = "left"  # decoder-only generation
        self.positions, self.num_beams = positions, num_beams
        self.attn_implementation = attn_implementation
        self.mass_kernel = check_mass_kernel(mass_kernel, self.model.device if mass_kernel == "triton" else None)
        if compile:
            self.language_model.forward = compile_model(self.language_model)

    @classmethod
    def peek_stack_spec(cls, source: str, cache_dir: str | None = None, **_: object) -> StackSpec | None:
        """The LLM's shapes from ``config.json`` (local folder or hub cache), no weights."""
        from transformers import AutoConfig

        if source.startswith("tiny:"):
            from ..testing.tiny_models import tiny_model_dir

            source = str(tiny_model_dir(source.removeprefix("tiny:")))
        try:
            config = AutoConfig.from_pretrained(source, cache_dir=cache_dir)
        except (OSError, ValueError):
            return None  # not readable without the hub: loading will report it
        return decoder_stack_spec(config.get_text_config())

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- what differs per family -------------------------------------------------
    @abstractmethod
    def build_inputs(self, audios: Sequence[np.ndarray], prompt: str | Sequence[str]) -> dict:
        """Processor outputs (tensors) for one prompt per audio (or one shared prompt)."""

    def truncated_seconds(self, audio: np.ndarray) -> float:
        """Seconds of ``audio`` the family's processor drops (0: all of it is used)."""
        return 0.0

    @abstractmethod
    def audio_segments(self, inputs: dict) -> Tensor:
        """Span id per position of ``input_ids`` (``-1`` = not audio)."""

    # -- shared ---------------------------------------------------------------------
    @property
    def language_model(self) -> nn.Module:
        return self.model.get_submodule(self.language_model_path)

    @property
    def stack_spec(self) -> StackSpec:
        return decoder_stack_spec(self.language_model.config)

    def reducer(self, method: ReductionMethod, budget: Budget) -> TokenReducer:
        lm = self.language_model
        policy = CausalPolicy(lm.rotary_emb, lm.config._attn_implementation, self.positions)
        return TokenReducer(lm.layers, PRE_NORM_DECODER_LAYOUT, method, self.stack_spec, budget, policy,
                            mass_kernel=self.mass_kernel)

    def prepare(self, audios: Sequence[np.ndarray], prompt: str | Sequence[str]) -> tuple[dict, Tensor]:
        """Inputs on the model's device and their audio span ids."""
        inputs = self.build_inputs(audios, prompt)
        device = self.model.device
        inputs = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in inputs.items()}
        if "input_features" in inputs:
            inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
        segments = self.audio_segments(inputs)
        missing = [i for i in range(segments.shape[0]) if not bool((segments[i] >= 0).any())]
        if missing:
            raise ValueError(f"prompt has no audio span in batch rows {missing}: does the prompt hold the audio placeholder?")
        return inputs, segments

    @torch.inference_mode()
    def prefill(
        self,
        audios: Sequence[np.ndarray],
        prompt: str | Sequence[str],
        reducer: TokenReducer,
        sample_keys: Sequence[str] | None = None,
    ) -> Tensor:
        """One reduced prefill forward, no decoding, for analyses that read the
        blocks' outputs with hooks (Transfer Entropy). Returns which positions of
        the last block's output are audio, ``(B, T')`` (the spans after reduction)."""
        inputs, segments = self.prepare(audios, prompt)
        with reducer.forward_state(segments, inputs["attention_mask"], sample_keys) as state:
            self.model(**inputs, use_cache=False)
            return state.segments >= 0

    @torch.inference_mode()
    def generate(
        self,
        audios: Sequence[np.ndarray],
        prompt: str | Sequence[str],
        method: ReductionMethod,
        budget: Budget,
        max_new_tokens: int,
        sample_keys: Sequence[str] | None = None,
    ) -> list[Generation]:
        inputs, segments = self.prepare(audios, prompt)
        prompt_len = inputs["input_ids"].shape[1]
        gen_kwargs = dict(max_new_tokens=max_new_tokens, num_beams=self.num_beams, do_sample=False)
        with self.reducer(method, budget) as reducer, reducer.forward_state(
            segments, inputs["attention_mask"], sample_keys
        ) as state:
            out = self.model.generate(**inputs, **gen_kwargs)
            new = out[:, prompt_len:]
            lengths = self._generated_lengths(new)
            rows = [i * self.num_beams for i in range(len(audios))]
            full_lengths = [0] * state.batch
            for i, row in enumerate(rows):
                full_lengths[row] = lengths[i]
            costs = reducer.costs(state, full_lengths, bytes_per_value=self.model.dtype.itemsize)
        results = []
        for i, row in enumerate(rows):
            ids = new[i, : lengths[i]].tolist()
            cost = costs[row]
            results.append(
                Generation(
                    text=self.processor.tokenizer.decode(ids, skip_special_tokens=True).strip(),
                    tokens=ids,
                    flops_realized=cost.prefill_flops_reduction,
                    tokens_per_layer=cost.tokens_per_layer,
                    hit_max_new_tokens=(hit := lengths[i] >= max_new_tokens and not self._ended(ids)),
                    repetition_loop=is_repetition_loop(ids, hit),
                    extra={
                        "truncated_s": self.truncated_seconds(audios[i]),
                        "decode_flops_realized": cost.decode_flops_reduction,
                        "kv_bytes": cost.kv_bytes,
                        "kv_bytes_full": cost.kv_bytes_full,
                        "kv_reduction": cost.kv_reduction,
                        "kv_reduction_end": cost.kv_reduction_end,
                    },
                )
            )
        return results

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, (list, tuple)) else [eos]) if eos is not None else set()

    def _ended(self, ids: list[int]) -> bool:
        return bool(ids) and ids[-1] in self._eos_ids()

    def _generated_lengths(self, new: Tensor) -> list[int]:
        """Tokens generated per row, up to and including the first stop token."""
        eos = self._eos_ids()
        lengths = []
        for row in new.tolist():
            n = next((j + 1 for j, tok in enumerate(row) if tok in eos), len(row))
            lengths.append(n)
        return lengths
