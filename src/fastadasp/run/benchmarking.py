"""What the benchmark scripts share: device names, synchronised clocks,
interleaved repeats, spread, peak memory, markdown tables, and the random
Qwen2-shaped language model the speech-LLM benchmarks time.

Timing rules, the same in every script: variants run in one process,
interleaved (the order rotates between repetitions so drift hits all alike),
warm-up repetitions are dropped, medians are reported with their spread, and
ratios are computed from numbers taken in the same run. On CUDA every clock
reading synchronises the device first.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import statistics
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..engine import Budget, CausalPolicy, TokenReducer
from ..reduction import ReductionMethod, StackSpec

__all__ = [
    "device_name",
    "synchronize",
    "clock",
    "interleaved",
    "spread",
    "micro_ms",
    "PeakMemory",
    "ForwardMarks",
    "markdown_table",
    "write_json",
    "QWEN_7B",
    "random_qwen2_lm",
    "llm_prompts",
    "llm_reducer",
    "cache_bytes",
    "decode_weight_bytes",
    "decode_cache_growth_bytes",
    "decode_memory_ideal",
    "compiled_forward",
    "COMPILE_ENTRY",
]


# -- device and clocks --------------------------------------------------------------
def device_name(device: str | torch.device = "cpu") -> str:
    """The GPU's name, else the CPU model with the thread count (as metrics.json records it)."""
    from .provenance import device_name as describe

    return describe(device)


def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: str | torch.device = "cpu") -> float:
    """``perf_counter`` after the device has finished its queued work."""
    synchronize(device)
    return time.perf_counter()


def interleaved(variants: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[Any]]:
    """Call every variant once per repetition, the order rotating; return each
    variant's results of the timed repetitions (warm-up ones are dropped)."""
    names = list(variants)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for rep in range(warmup + repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            out = variants[name]()
            if rep >= warmup:
                results[name].append(out)
    return results


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the relative half-range ``(max - min) / 2 / median``."""
    values = list(values)
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {"median": med, "min": lo, "max": hi, "rel_half_range": (hi - lo) / 2 / med if med else 0.0,
            "n": len(values)}


def micro_ms(fn: Callable[[], Any], min_run_time: float = 1.0) -> float:
    """Median ms of a short kernel-level call (``torch.utils.benchmark``:
    it warms up, synchronises CUDA and picks the number of runs)."""
    from torch.utils import benchmark

    return 1000 * benchmark.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median


# -- memory ---------------------------------------------------------------------------
def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # no procfs: the process's lifetime high-water mark
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim``), so that
    the next block's allocations show up in the resident set size again."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS then undercounts reused memory
        pass


class PeakMemory:
    """Peak memory a block of code adds, in bytes (``.bytes`` after exit).

    CUDA: ``torch.cuda.max_memory_allocated`` during the block minus what was
    allocated when it began (weights and inputs excluded). CPU: the resident
    set size sampled every ``interval`` seconds by a thread, peak minus the
    RSS at the start, after returning the allocator's free memory to the OS
    (``malloc_trim``; otherwise a second call reuses freed pages and shows no
    growth). The CPU figure can miss spikes shorter than the interval and
    counts the whole process; it is approximate (``kind`` says which one was
    taken). The trim makes the block fault its pages in again, the same for
    every variant.
    """

    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.002):
        self.device, self.interval = torch.device(device), interval
        self.bytes, self.kind = 0, "cuda_max_memory_allocated" if self.device.type == "cuda" else "cpu_rss_sampled"

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        _release_free_memory()
        self._start = self._peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
            return
        self._stop.set()
        self._thread.join()
        self.bytes = max(self._peak, _rss_bytes()) - self._start


class ForwardMarks:
    """Clock reading at the end of every forward of ``module`` (and the
    leading shape of its input), e.g. to split ``generate`` into its prefill
    (first forward) and decode steps."""

    def __init__(self, module: nn.Module, device: str | torch.device = "cpu"):
        self.module, self.device = module, device
        self.times: list[float] = []
        self.shapes: list[tuple[int, ...]] = []

    def _hook(self, module, args, kwargs, output) -> None:
        self.times.append(clock(self.device))
        x = kwargs.get("inputs_embeds")
        x = kwargs.get("input_ids") if x is None else x
        x = args[0] if x is None and args else x
        self.shapes.append(tuple(x.shape[:2]) if isinstance(x, Tensor) else ())

    def __enter__(self) -> "ForwardMarks":
        self._handle = self.module.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


# -- reports --------------------------------------------------------------------------
def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str], floatfmt: str = ".3g") -> str:
    """A GitHub markdown table of ``rows`` with ``columns`` (key -> header)."""
    from tabulate import tabulate

    body = [[row.get(key, "-") for key in columns] for row in rows]
    return tabulate(body, headers=list(columns.values()), tablefmt="github", floatfmt=floatfmt)


def write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path


# -- the random Qwen2-shaped LLM ---------------------------------------------------------
#: Qwen-7B, the language model of Qwen2-Audio-7B (and of Qwen-Audio): 32 layers of width
#: 4096, 32 heads of 128 with as many KV heads, SwiGLU 11008, vocabulary 151936
QWEN_7B = {"hidden": 4096, "layers": 32, "heads": 32, "intermediate": 11008, "vocab": 151936}


def random_qwen2_lm(hidden: int, layers: int, seed: int = 0, vocab: int = 4096, max_positions: int = 16384,
                    heads: int | None = None, intermediate: int | None = None,
                    dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """A random Qwen2 decoder (Qwen2-Audio's LLM block, scaled): by default heads
    of 64, as many KV heads as heads (Qwen-7B has no GQA), SwiGLU 2.75x, SDPA.
    Built directly on ``device`` in ``dtype`` (a 7B-shaped model never passes
    through host memory in float32); the seed makes the weights reproducible
    per device."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    heads = heads or max(1, hidden // 64)
    config = Qwen2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate or 64 * round(hidden * 2.75 / 64),  # 1024 -> 2816
        vocab_size=vocab,
        max_position_embeddings=max_positions,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype).eval()


@torch.inference_mode()
def llm_prompts(model, batch: int, audio: int, text: int, seed: int, text_before: int = 20):
    """A speech-LLM prompt as ``inputs_embeds``: text, an audio span of random
    vectors at the embedding's scale, text. Returns ``embeds (B, T, d)``,
    ``attention_mask (B, T)`` and ``segments (B, T)`` (0 on the audio, -1
    elsewhere), on the model's device; the draws are made on the host, so a
    seed gives the same prompt on every device."""
    g = torch.Generator().manual_seed(seed)
    emb = model.model.embed_tokens
    device = emb.weight.device
    before = min(text_before, text)
    vocab, d = emb.weight.shape
    parts = [
        emb(torch.randint(0, vocab, (batch, before), generator=g).to(device)),
        (torch.randn(batch, audio, d, generator=g) * float(emb.weight.float().std())).to(device, emb.weight.dtype),
        emb(torch.randint(0, vocab, (batch, text - before), generator=g).to(device)),
    ]
    embeds = torch.cat(parts, dim=1).to(model.dtype).contiguous()
    segments = torch.full(embeds.shape[:2], -1, dtype=torch.long, device=device)
    segments[:, before : before + audio] = 0
    return embeds, torch.ones(embeds.shape[:2], dtype=torch.long, device=device), segments


def llm_reducer(model, spec: StackSpec, method: ReductionMethod, flops: float, profile: bool = True,
                positions: str = "keep", mass_kernel: str = "torch") -> TokenReducer:
    """The reducer :class:`~fastadasp.models.speech_lm.SpeechLM` builds, over a bare causal LM."""
    from ..models.speech_lm import PRE_NORM_DECODER_LAYOUT

    policy = CausalPolicy(model.model.rotary_emb, model.config._attn_implementation, positions)
    return TokenReducer(model.model.layers, PRE_NORM_DECODER_LAYOUT, method, spec, Budget(flops), policy, profile=profile,
                        mass_kernel=mass_kernel)


@contextmanager
def maybe_reducing(reducer: TokenReducer | None, segments: Tensor, mask: Tensor | None,
                   keys: Sequence[str] | None = None) -> Iterator[Any]:
    """``with reducer, reducer.forward_state(...)`` or nothing for full tokens."""
    with ExitStack() as stack:
        if reducer is None:
            yield None
            return
        stack.enter_context(reducer)
        yield stack.enter_context(reducer.forward_state(segments, mask, keys))


def cache_bytes(cache) -> tuple[int, list[int]]:
    """Bytes held by a ``DynamicCache``'s keys and values, and each layer's length."""
    total, lengths = 0, []
    for layer in cache.layers:
        total += layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
        lengths.append(int(layer.keys.shape[-2]))
    return total, lengths


# -- decode: the memory-traffic ideal --------------------------------------------------------
def decode_weight_bytes(decoder: nn.Module, head: nn.Module) -> int:
    """Weight bytes one decode step reads: every tensor of the decoder stack and
    the output head, each once; not the input embedding table, of which a step
    gathers one row per sequence (unless it is also the tied output head)."""
    tensors = {p.data_ptr(): p for module in (decoder, head) for p in module.parameters()}
    table = decoder.get_input_embeddings().weight
    if all(p.data_ptr() != table.data_ptr() for p in head.parameters()):
        tensors.pop(table.data_ptr(), None)
    return sum(p.numel() * p.element_size() for p in tensors.values())


def decode_cache_growth_bytes(spec: StackSpec, sequences: int, bytes_per_value: int) -> float:
    """KV-cache bytes a decode step appends: one token per layer for each of ``sequences`` (batch x beams)."""
    from ..reduction import kv_cache_bytes

    return sequences * kv_cache_bytes(spec, [1] * spec.num_layers, bytes_per_value)


def decode_memory_ideal(weight_bytes: float, cache_full: float, cache_reduced: float, beams: int) -> float:
    """The decode speed-up a smaller KV cache allows when a step is bound by memory traffic.

    A decode step of a large LLM moves far more bytes than it computes with: it
    reads every weight once (``W``, shared by all beams and batch rows) and the
    KV cache of every sequence (``C``, all beams and rows) once for attention.
    Beam search then reorders the cache to follow the surviving beams, an
    ``index_select`` that reads and writes all of it again: ``3C`` per step with
    beams, ``C`` without. Token reduction shrinks ``C`` only, so at best

        ideal = (W + k * C_full) / (W + k * C_reduced),   k = 3 with beams > 1, else 1

    with ``C`` the cache the decode steps see on average (after the prefill plus
    half the tokens the decode appends). A measured speed-up divided by this
    ideal tells the method's limit (ideal near 1: the weights dominate) from
    the engine's overhead (fraction well below 1). The model is a GPU's: on a
    CPU, where a step's compute and allocations over the cache also count, a
    fraction above 1 is possible."""
    k = 3 if beams > 1 else 1
    return (weight_bytes + k * cache_full) / (weight_bytes + k * cache_reduced)


# -- the compiled path (model.compile=true) --------------------------------------------------
#: the engine's function behind ``model.compile=true``: ``compile_model(hf_model) -> callable`` with
#: the model's call signature, the reduction hooks traced into it
COMPILE_ENTRY = ("fastadasp.engine", "compile_model")


def compiled_forward(model: nn.Module) -> tuple[Callable[..., Any] | None, str]:
    """``(model.compile=true's compiled forward of model, "")``, or ``(None, why not)``
    when this checkout does not have it yet, so that a check can record the
    reason and go on."""
    import importlib

    module, name = COMPILE_ENTRY
    compile_model = getattr(importlib.import_module(module), name, None)
    if compile_model is None:
        return None, f"model.compile is not in this checkout ({module}.{name} is missing): compiled path skipped"
    return compile_model(model), ""
