"""Speech-LLM speed: a Qwen2-Audio-shaped random LLM, full tokens vs FLOPs reduction 0.5, side by side.

Qwen2-Audio's language model is a Qwen-7B-shaped decoder (multi-head
attention, SwiGLU MLP, rotary positions). This benchmark builds the same
block scaled down to run on a CPU (default: hidden 1024, 8 layers, 16 heads
of 64, SwiGLU 2816, vocabulary 4096), randomly initialised (seeded), float32,
SDPA attention. The prompt is laid out like a speech-LLM prompt, passed as
``inputs_embeds``: 20 text tokens (embeddings of random ids), the audio span
(random normal vectors scaled to the embedding's std; default 3000 tokens =
120 s at 25 tokens/s) and 20 more text tokens. Only the audio span is
reducible (``segments`` 0 there, -1 elsewhere). Random weights and inputs say
nothing about quality; they only set the shapes that speed depends on.

Reduction is applied exactly as :class:`fastadasp.models.speech_lm.SpeechLM`
applies it: a :class:`TokenReducer` over ``model.model.layers`` with
``PRE_NORM_DECODER_LAYOUT`` and ``CausalPolicy(rotary, "sdpa", "keep")``,
installed around the call (installing is not timed) and one
``forward_state`` per call (entered inside the timed region: the per-sample
budget planning is part of the cost).

Measured in one process, all variants interleaved (the order rotates between
repetitions), medians reported, ratios computed in this run:

1. prefill (``model(inputs_embeds, attention_mask, use_cache=True,
   logits_to_keep=1)``, what ``generate`` runs first), batch 1: full vs
   FastAdaSP dense constant weighted / unweighted (``merge_ave``, no attention
   probe) and FastAdaSP sparse at layer 2, all under ``Budget(flops)``; ideal
   speed-up ``1 / (1 - realised)`` from the analytic FLOPs of the layer stack.
2. machinery share: matching + merging time (``profile=True`` ->
   ``machinery_s``) over the full-token prefill time.
3. decode with beam search: ``model.generate(inputs_embeds=..., num_beams,
   min_new_tokens = max_new_tokens)`` (no stop token exists, so every run
   generates exactly ``--new-tokens``). A forward hook on the decoder marks
   the end of each forward: the first forward is the prefill of the
   ``beams x T`` expanded prompt, every later one a decode step. Decode time
   = end of generate - end of the prefill forward, measured inside the same
   call (more precise than subtracting a separately timed prefill, and it
   avoids timing the beam-expanded prefill twice). The reduced run uses
   FastAdaSP dense unweighted by default (``--decode-method``): it keeps the
   same tokens per layer as the weighted variant, so every decode step has
   the same shapes, and its beams x T prefill skips the slow attention probe.
4. samples/s with reduction on: eight batch-1 ``generate`` calls (greedy,
   ``--batch-new-tokens``) vs one call on the batch of the same eight prompts
   (shorter audio, ``--batch-audio-tokens``).
5. KV cache: analytic (``reducer.costs``, float32 = 4 bytes per value) and
   measured (``keys.numel() + values.numel()`` over the returned cache's
   layers, times the element size), after the prefill and at the end of the
   beam-search decode.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import ExitStack
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM

from fastadasp.engine import Budget, CausalPolicy, TokenReducer, attention_with_received
from fastadasp.models.speech_lm import PRE_NORM_DECODER_LAYOUT, decoder_stack_spec
from fastadasp.reduction import FastAdaSPDense, FastAdaSPSparse, StackSpec, kv_cache_bytes

MIB = 2**20
TEXT_BEFORE = 20


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- model and inputs -------------------------------------------------------------
def build_model(hidden: int, layers: int, seed: int) -> Qwen2ForCausalLM:
    heads = max(1, hidden // 64)
    ffn = 64 * round(hidden * 2.75 / 64)  # 1024 -> 2816
    config = Qwen2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=ffn,
        vocab_size=4096,
        max_position_embeddings=16384,
        attn_implementation="sdpa",
    )
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).to(torch.float32).eval()


def stack_spec(model: Qwen2ForCausalLM) -> StackSpec:
    return decoder_stack_spec(model.config)


@torch.inference_mode()
def make_prompts(model: Qwen2ForCausalLM, batch: int, audio: int, text: int, seed: int):
    """``inputs_embeds (B, T, d)``, ``attention_mask (B, T)`` and ``segments (B, T)``."""
    g = torch.Generator().manual_seed(seed)
    emb = model.model.embed_tokens
    before, after = min(TEXT_BEFORE, text), text - min(TEXT_BEFORE, text)
    std = float(emb.weight.std())
    vocab, d = emb.weight.shape
    parts = [
        emb(torch.randint(0, vocab, (batch, before), generator=g)),
        torch.randn(batch, audio, d, generator=g) * std,
        emb(torch.randint(0, vocab, (batch, after), generator=g)),
    ]
    embeds = torch.cat(parts, dim=1).to(model.dtype).contiguous()
    t = embeds.shape[1]
    segments = torch.full((batch, t), -1, dtype=torch.long)
    segments[:, before : before + audio] = 0
    mask = torch.ones(batch, t, dtype=torch.long)
    return embeds, mask, segments


def make_reducer(model, spec: StackSpec, method, flops: float, profile: bool = True) -> TokenReducer:
    policy = CausalPolicy(model.model.rotary_emb, model.config._attn_implementation, "keep")
    return TokenReducer(model.model.layers, PRE_NORM_DECODER_LAYOUT, method, spec, Budget(flops), policy, profile=profile)


def cache_bytes(cache) -> tuple[int, list[int]]:
    """Bytes held by a DynamicCache's keys and values, and each layer's length."""
    total, lengths = 0, []
    for layer in cache.layers:
        total += layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
        lengths.append(int(layer.keys.shape[-2]))
    return total, lengths


def _variants() -> list[tuple[str, object | None]]:
    return [
        ("full", None),
        ("FastAdaSP dense constant, weighted", FastAdaSPDense(schedule="constant", start_layer=0, weighted=True)),
        ("FastAdaSP dense constant, unweighted (merge_ave)", FastAdaSPDense(schedule="constant", start_layer=0, weighted=False)),
        ("FastAdaSP sparse, layer 2, weighted", FastAdaSPSparse(layer=2, weighted=True)),
    ]


# -- 1, 2, 5a: prefill --------------------------------------------------------------
@torch.inference_mode()
def prefill_once(model, spec, method, flops, embeds, mask, segments, new_tokens) -> dict:
    with ExitStack() as stack:
        reducer = None
        if method is not None:
            reducer = make_reducer(model, spec, method, flops)
            stack.enter_context(reducer)
        t0 = time.perf_counter()
        state = stack.enter_context(reducer.forward_state(segments, mask)) if reducer else None
        t_plan = time.perf_counter() - t0
        out = model(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)
        elapsed = time.perf_counter() - t0
        kv_measured, lengths = cache_bytes(out.cache)
        if reducer is None:
            t = embeds.shape[1]
            kv_full = kv_cache_bytes(spec, [t] * spec.num_layers, 4)
            return {"s": elapsed, "machinery_s": 0.0, "plan_s": 0.0, "realised": 0.0, "kv_analytic": kv_full,
                    "kv_analytic_full": kv_full, "kv_measured": kv_measured, "cache_lengths": lengths,
                    "tokens_per_layer": [t] * (spec.num_layers + 1)}
        cost = reducer.costs(state, [new_tokens] * state.batch, bytes_per_value=4)[0]
        return {"s": elapsed, "machinery_s": reducer.machinery_s, "plan_s": t_plan,
                "realised": reducer.realised(state)[0], "kv_analytic": cost.kv_bytes,
                "kv_analytic_full": cost.kv_bytes_full, "kv_measured": kv_measured, "cache_lengths": lengths,
                "tokens_per_layer": cost.tokens_per_layer}


def bench_prefill(model, spec, flops, prompt, warm_prompt, repeats, warmup, new_tokens) -> list[dict]:
    variants = _variants()
    runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
    for rep in range(warmup + repeats):
        shift = rep % len(variants)
        for name, method in variants[shift:] + variants[:shift]:
            if rep < warmup:
                prefill_once(model, spec, method, flops, *warm_prompt, new_tokens)
                continue
            runs[name].append(prefill_once(model, spec, method, flops, *prompt, new_tokens))
    full_med = statistics.median(r["s"] for r in runs["full"])
    rows = []
    for name, method in variants:
        times = [r["s"] for r in runs[name]]
        med = statistics.median(times)
        real = statistics.fmean(r["realised"] for r in runs[name])
        ideal = 1.0 / (1.0 - real)
        last = runs[name][-1]
        rows.append({
            "variant": name,
            "method": None if method is None else method.describe(),
            "median_ms": 1000 * med,
            "min_ms": 1000 * min(times),
            "max_ms": 1000 * max(times),
            "per_repeat_ms": [1000 * t for t in times],
            "speedup": full_med / med,
            "speedup_paired_median": statistics.median(f["s"] / r["s"] for f, r in zip(runs["full"], runs[name])),
            "flops_realised": real,
            "ideal_speedup": ideal,
            "fraction_of_ideal": (full_med / med) / ideal,
            "machinery_median_ms": 1000 * statistics.median(r["machinery_s"] for r in runs[name]),
            "plan_median_ms": 1000 * statistics.median(r["plan_s"] for r in runs[name]),
            "machinery_share_of_full": statistics.median(r["machinery_s"] for r in runs[name]) / full_med,
            "tokens_per_layer": last["tokens_per_layer"],
            "cache_lengths_measured": last["cache_lengths"],
            "kv_analytic_bytes": last["kv_analytic"],
            "kv_analytic_full_bytes": last["kv_analytic_full"],
            "kv_measured_bytes": last["kv_measured"],
        })
    return rows


def bench_probe(spec: StackSpec, t: int, repeats: int) -> dict:
    """The weighted methods' exact attention with received mass vs SDPA, causal, on one layer's full-length shape."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, spec.num_heads, t, spec.head_dim, generator=g) for _ in range(3))
    scale = spec.head_dim**-0.5
    causal = torch.ones(t, t, dtype=torch.bool).tril()[None, None]
    fns = {
        "sdpa, is_causal": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "sdpa, bool mask": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=causal),
        "probed (attention_with_received)": lambda: attention_with_received(q, k, v, None, scale, True),
    }
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for rep in range(1 + repeats):
            names = list(fns)
            for name in names[rep % len(names):] + names[: rep % len(names)]:
                t0 = time.perf_counter()
                fns[name]()
                if rep:
                    times[name].append(time.perf_counter() - t0)
    return {"shape": [1, spec.num_heads, t, spec.head_dim], **{name: 1000 * statistics.median(ts) for name, ts in times.items()}}


# -- 3, 5b: beam-search decode -----------------------------------------------------
@torch.inference_mode()
def generate_once(model, spec, method, flops, embeds, mask, segments, new_tokens, beams, keys=None) -> dict:
    """One ``generate`` call; returns total time, prefill forward time, decode time and step times."""
    marks: list[float] = []
    shapes: list[tuple] = []

    def hook(module, args, kwargs, output):
        marks.append(time.perf_counter())
        e = kwargs.get("inputs_embeds")
        shapes.append(tuple(e.shape[:2]) if e is not None else tuple(kwargs["input_ids"].shape))

    handle = model.model.register_forward_hook(hook, with_kwargs=True)
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=beams, do_sample=False,
               eos_token_id=None, pad_token_id=0, return_dict_in_generate=True)
    try:
        with ExitStack() as stack:
            reducer = state = None
            if method is not None:
                reducer = make_reducer(model, spec, method, flops)
                stack.enter_context(reducer)
            t0 = time.perf_counter()
            if reducer is not None:
                state = stack.enter_context(reducer.forward_state(segments, mask, keys))
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, **gen)
            t_end = time.perf_counter()
            info = {"realised": reducer.realised(state)[0] if reducer else 0.0,
                    "state_batch": state.batch if state is not None else embeds.shape[0] * beams}
            if reducer is not None:
                costs = reducer.costs(state, [new_tokens] * state.batch, bytes_per_value=4)
                info["tokens_per_layer"] = costs[0].tokens_per_layer
    finally:
        handle.remove()
    kv_end, end_lengths = cache_bytes(out.cache)
    steps = [b - a for a, b in zip(marks, marks[1:])]
    return {
        "total_s": t_end - t0,
        "prefill_s": marks[0] - t0,
        "decode_s": t_end - marks[0],
        "step_s": steps,
        "forward_shapes": shapes,
        "generated": int(out.sequences.shape[1]),
        "kv_end_measured": kv_end,
        "cache_lengths_end": end_lengths,
        **info,
    }


def bench_decode(model, spec, flops, prompt, new_tokens, beams, repeats, weighted: bool) -> dict:
    reduced = f"FastAdaSP dense constant, {'weighted' if weighted else 'unweighted'}"
    variants = [("full", None), (reduced, FastAdaSPDense("constant", 0, weighted))]
    runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
    for rep in range(repeats):
        order = variants if rep % 2 == 0 else variants[::-1]
        for name, method in order:
            runs[name].append(generate_once(model, spec, method, flops, *prompt, new_tokens, beams))
    rows = {}
    t = prompt[0].shape[1]
    for name, _ in variants:
        r = runs[name]
        decode_s = statistics.median(x["decode_s"] for x in r)
        step_med = statistics.median(s for x in r for s in x["step_s"])
        n_steps = len(r[0]["step_s"])
        tokens = r[-1].get("tokens_per_layer", [t] * (spec.num_layers + 1))
        kv_end_analytic = beams * kv_cache_bytes(spec, [c + n_steps for c in tokens[:-1]], 4)
        rows[name] = {
            "decode_median_s": decode_s,
            "decode_steps": n_steps,
            "tokens_per_s": n_steps / decode_s,
            "step_median_ms": 1000 * step_med,
            "tokens_per_s_from_step_median": 1.0 / step_med,
            "prefill_in_generate_median_s": statistics.median(x["prefill_s"] for x in r),
            "total_median_s": statistics.median(x["total_s"] for x in r),
            "generated": r[0]["generated"],
            "first_forward_shape": list(r[0]["forward_shapes"][0]),
            "later_forward_shape": list(r[0]["forward_shapes"][1]) if n_steps else None,
            "state_batch": r[0]["state_batch"],
            "realised": r[0]["realised"],
            "kv_end_measured_bytes": r[-1]["kv_end_measured"],
            "kv_end_analytic_bytes": kv_end_analytic,
            "cache_lengths_end": r[-1]["cache_lengths_end"],
            "tokens_per_layer": tokens,
            "per_repeat_decode_s": [x["decode_s"] for x in r],
            "per_step_ms": [[1000 * s for s in x["step_s"]] for x in r],
        }
    full, red = rows["full"], rows[reduced]
    return {"rows": rows, "reduced": reduced, "speedup": full["decode_median_s"] / red["decode_median_s"],
            "speedup_step_median": full["step_median_ms"] / red["step_median_ms"]}


# -- 4: batching --------------------------------------------------------------------
def bench_batch(model, spec, flops, prompt, new_tokens, repeats, warmup) -> dict:
    embeds, mask, segments = prompt
    b = embeds.shape[0]
    method = FastAdaSPDense("constant", 0, True)
    keys = [f"s{i}" for i in range(b)]

    def one_by_one() -> float:
        t0 = time.perf_counter()
        for i in range(b):
            generate_once(model, spec, method, flops, embeds[i : i + 1], mask[i : i + 1], segments[i : i + 1],
                          new_tokens, 1, [keys[i]])
        return time.perf_counter() - t0

    def batched() -> float:
        t0 = time.perf_counter()
        generate_once(model, spec, method, flops, embeds, mask, segments, new_tokens, 1, keys)
        return time.perf_counter() - t0

    fns = {"batch 1 x 8": one_by_one, "batch 8": batched}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(warmup):  # the model is warm from the prefill runs: one short batched call warms generate
        generate_once(model, spec, method, flops, embeds[:2], mask[:2], segments[:2], 2, 1, keys[:2])
    for rep in range(repeats):
        order = list(fns) if rep % 2 == 0 else list(fns)[::-1]
        for name in order:
            times[name].append(fns[name]())
    one, many = statistics.median(times["batch 1 x 8"]), statistics.median(times["batch 8"])
    return {
        "batch": b,
        "samples": b,
        "batch1_median_s": one,
        "batch_median_s": many,
        "batch1_samples_per_s": b / one,
        "batch_samples_per_s": b / many,
        "ratio": one / many,
        "per_repeat_s": times,
    }


# -- main ----------------------------------------------------------------------------
def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024, help="LLM hidden size; heads = hidden/64, SwiGLU 2.75x (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers (default: %(default)s)")
    parser.add_argument("--audio-tokens", type=int, default=3000, help="audio tokens, 25 per second (default: %(default)s = 120 s)")
    parser.add_argument("--text-tokens", type=int, default=40, help="text tokens, 20 before the audio and the rest after (default: %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens generated in the beam-search decode (default: %(default)s)")
    parser.add_argument("--beams", type=int, default=5, help="beams in the decode measurement (default: %(default)s)")
    parser.add_argument("--batch-audio-tokens", type=int, default=500, help="audio tokens per prompt in the batching measurement (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of the batching measurement (default: %(default)s)")
    parser.add_argument("--batch-new-tokens", type=int, default=8, help="greedy tokens in the batching measurement (default: %(default)s)")
    parser.add_argument("--flops", type=float, default=0.5, help="FLOPs-reduction target (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of the prefill and batching measurements (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first (default: %(default)s)")
    parser.add_argument("--warmup-audio-tokens", type=int, default=500,
                        help="audio tokens of the prefill warm-up prompt; the same variants and code paths run, "
                        "only shorter (default: %(default)s; 0 = the measured length)")
    parser.add_argument("--decode-repeats", type=int, default=1,
                        help="beam-search generate calls per variant; each one prefills beams x T tokens first, "
                        "the costliest part of the run (default: %(default)s)")
    parser.add_argument("--decode-method", choices=("unweighted", "weighted"), default="unweighted",
                        help="FastAdaSP dense variant of the decode measurement. Both keep the same number of tokens "
                        "per layer (the budget is solved from the layout, not the content), so the caches and every "
                        "decode step have the same shapes; unweighted skips the attention probe, which makes the "
                        "beams x T prefill inside generate much slower on CPU (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="weights and inputs seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    cpu = _cpu_model()
    print(f"CPU: {cpu} | torch {torch.__version__} | transformers {transformers.__version__} | torch threads {torch.get_num_threads()}")
    model = build_model(args.hidden, args.layers, args.seed)
    spec = stack_spec(model)
    params = sum(p.numel() for p in model.parameters())
    t_prompt = args.audio_tokens + args.text_tokens
    print(
        f"model: random Qwen2ForCausalLM (Qwen2-Audio LLM block, scaled) | {spec.num_layers} layers, d {spec.d_model}, "
        f"{spec.num_heads} heads x {spec.head_dim} (kv heads {spec.num_kv_heads}), SwiGLU {spec.ffn_dim}, vocab "
        f"{model.config.vocab_size} | {params / 1e6:.1f} M params | float32 | sdpa"
    )
    print(
        f"prompt: {min(TEXT_BEFORE, args.text_tokens)} text + {args.audio_tokens} audio "
        f"({args.audio_tokens / 25:.0f} s at 25 tokens/s) + {args.text_tokens - min(TEXT_BEFORE, args.text_tokens)} text "
        f"= {t_prompt} tokens | flops target {args.flops} | {args.repeats} repeats + {args.warmup} warm-up "
        f"(warm-up prompt {args.warmup_audio_tokens or args.audio_tokens} audio tokens), interleaved, order rotating"
    )

    prompt = make_prompts(model, 1, args.audio_tokens, args.text_tokens, args.seed + 1)
    warm = make_prompts(model, 1, args.warmup_audio_tokens or args.audio_tokens, args.text_tokens, args.seed + 2)

    # 1 + 2 + 5a
    t0 = time.perf_counter()
    rows = bench_prefill(model, spec, args.flops, prompt, warm, args.repeats, args.warmup, args.new_tokens)
    prefill_wall = time.perf_counter() - t0
    print()
    print(f"## 1. Prefill, batch 1, {t_prompt} tokens ({prefill_wall:.0f} s wall)")
    print()
    print("| variant | median ms | min-max ms | speed-up vs full | realised FLOPs reduction | ideal 1/(1-r) | fraction of ideal | machinery ms | plan ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        red = r["method"] is not None
        print(
            f"| {r['variant']} | {r['median_ms']:.0f} | {r['min_ms']:.0f}-{r['max_ms']:.0f} | {r['speedup']:.2f}x | "
            f"{r['flops_realised']:.3f} | {r['ideal_speedup']:.2f}x | "
            + (f"{r['fraction_of_ideal']:.2f} | {r['machinery_median_ms']:.1f} | {r['plan_median_ms']:.1f} |" if red else "- | - | - |")
        )
    print()
    print(
        "Speed-up = median full / median variant; per-repeat paired medians: "
        + ", ".join(f"{r['speedup_paired_median']:.2f}x" for r in rows[1:])
        + ". Plan = entering forward_state (budget solve), inside the timed region. Tokens entering each layer: "
        + "; ".join(f"{r['variant']}: {r['tokens_per_layer']}" for r in rows[1:])
    )
    weighted = rows[1]
    share = weighted["machinery_share_of_full"]
    probe = bench_probe(spec, t_prompt, 2)
    print(
        f"Attention at one full-length layer {tuple(probe['shape'])}: SDPA is_causal {probe['sdpa, is_causal']:.0f} ms, "
        f"SDPA with a bool causal mask {probe['sdpa, bool mask']:.0f} ms, attention_with_received (what the weighted "
        f"variants run at every reducing layer) {probe['probed (attention_with_received)']:.0f} ms. Without padding, "
        "reduced layers keep SDPA's is_causal kernel; a padded batch needs a per-layer bool mask."
    )
    print()
    print("## 2. Machinery share")
    print()
    for r in rows[1:]:
        print(
            f"- {r['variant']}: machinery {r['machinery_median_ms']:.1f} ms / full prefill {rows[0]['median_ms']:.0f} ms "
            f"= {100 * r['machinery_share_of_full']:.2f}% (with planning: "
            f"{100 * (r['machinery_median_ms'] + r['plan_median_ms']) / rows[0]['median_ms']:.2f}%)"
        )

    # 3 + 5b
    t0 = time.perf_counter()
    dec = bench_decode(model, spec, args.flops, prompt, args.new_tokens, args.beams, args.decode_repeats,
                       args.decode_method == "weighted")
    decode_wall = time.perf_counter() - t0
    full_d, red_d = dec["rows"]["full"], dec["rows"][dec["reduced"]]
    same_cache = red_d["tokens_per_layer"] == weighted["tokens_per_layer"]
    print()
    print(f"## 3. Decode, beam {args.beams}, {args.new_tokens} new tokens, {t_prompt}-token prompt, "
          f"{args.decode_repeats} call(s) per variant ({decode_wall:.0f} s wall)")
    print()
    print("| variant | prefill in generate s | decode s | decode steps | decode tokens/s | median step ms | tokens/s from median step |")
    print("|---|---|---|---|---|---|---|")
    for name, r in dec["rows"].items():
        print(
            f"| {name} | {r['prefill_in_generate_median_s']:.1f} | {r['decode_median_s']:.2f} | {r['decode_steps']} | "
            f"{r['tokens_per_s']:.2f} | {r['step_median_ms']:.0f} | {r['tokens_per_s_from_step_median']:.2f} |"
        )
    print()
    print(
        f"Decode speed-up (full / reduced decode time): {dec['speedup']:.2f}x (from median step: "
        f"{dec['speedup_step_median']:.2f}x). The paper reports 1.84x for WavLLM at 240 s on an A100. "
        f"Check: generate's first forward had shape {full_d['first_forward_shape']} (full) / {red_d['first_forward_shape']} "
        f"(reduced) = beams x prompt, later forwards {red_d['later_forward_shape']}; the reducer state expanded to "
        f"{red_d['state_batch']} rows; realised FLOPs reduction in generate {red_d['realised']:.3f} (batch-1 prefill: "
        f"{weighted['flops_realised']:.3f}); {full_d['generated']} tokens generated per row. Decode tokens/s counts the "
        f"{full_d['decode_steps']} tokens of the decode steps (the first token comes from the prefill) per sample "
        f"(the {args.beams} beams together). The reduced run used {dec['reduced']}; its tokens per layer "
        f"{'equal' if same_cache else 'DIFFER FROM'} the weighted prefill's ({red_d['tokens_per_layer']}), so its caches "
        "and decode steps have the same shapes. On a CPU the decode step is memory-bound: the DynamicCache grows by "
        "torch.cat and beam search reorders it (index_select) every step, each copying the whole cache."
    )

    # 4
    t0 = time.perf_counter()
    bprompt = make_prompts(model, args.batch_size, args.batch_audio_tokens, args.text_tokens, args.seed + 3)
    bat = bench_batch(model, spec, args.flops, bprompt, args.batch_new_tokens, args.repeats, args.warmup)
    batch_wall = time.perf_counter() - t0
    print()
    print(f"## 4. Batching with reduction on ({args.batch_audio_tokens} audio + {args.text_tokens} text tokens, "
          f"greedy, {args.batch_new_tokens} new tokens, {batch_wall:.0f} s wall)")
    print()
    print("| run | median s for 8 samples | samples/s |".replace("8", str(args.batch_size)))
    print("|---|---|---|")
    print(f"| batch 1, {args.batch_size} calls | {bat['batch1_median_s']:.2f} | {bat['batch1_samples_per_s']:.2f} |")
    print(f"| batch {args.batch_size}, 1 call | {bat['batch_median_s']:.2f} | {bat['batch_samples_per_s']:.2f} |")
    print()
    print(f"Batch {args.batch_size} / batch 1 samples/s: {bat['ratio']:.2f}x")

    # 5
    full_p = rows[0]
    print()
    print("## 5. KV cache (float32)")
    print()
    print("| variant | after prefill, analytic MiB | after prefill, measured MiB | end of beam decode, analytic MiB | end of beam decode, measured MiB | measured cache length per layer after prefill |")
    print("|---|---|---|---|---|---|")
    print(f"| full | {full_p['kv_analytic_full_bytes'] / MIB:.1f} | {full_p['kv_measured_bytes'] / MIB:.1f} | "
          f"{full_d['kv_end_analytic_bytes'] / MIB:.1f} | {full_d['kv_end_measured_bytes'] / MIB:.1f} | {full_p['cache_lengths_measured']} |")
    print(f"| {weighted['variant']} (end of decode: {dec['reduced'].split(', ')[1]}) | {weighted['kv_analytic_bytes'] / MIB:.1f} | {weighted['kv_measured_bytes'] / MIB:.1f} | "
          f"{red_d['kv_end_analytic_bytes'] / MIB:.1f} | {red_d['kv_end_measured_bytes'] / MIB:.1f} | {weighted['cache_lengths_measured']} |")
    kv_red_analytic = 1 - weighted["kv_analytic_bytes"] / weighted["kv_analytic_full_bytes"]
    kv_red_measured = 1 - weighted["kv_measured_bytes"] / full_p["kv_measured_bytes"]
    kv_end_red = 1 - red_d["kv_end_measured_bytes"] / full_d["kv_end_measured_bytes"]
    kv_consistent = (
        abs(weighted["kv_measured_bytes"] - weighted["kv_analytic_bytes"]) < 1
        and abs(full_p["kv_measured_bytes"] - full_p["kv_analytic_full_bytes"]) < 1
        and weighted["cache_lengths_measured"] == weighted["tokens_per_layer"][:-1]
        and abs(red_d["kv_end_measured_bytes"] - red_d["kv_end_analytic_bytes"]) < 1
        and abs(full_d["kv_end_measured_bytes"] - full_d["kv_end_analytic_bytes"]) < 1
    )
    print()
    print(
        f"KV reduction after prefill: analytic {kv_red_analytic:.3f}, measured {kv_red_measured:.3f} "
        f"(full/reduced {full_p['kv_measured_bytes'] / weighted['kv_measured_bytes']:.2f}x); at the end of the "
        f"beam decode (measured, {args.beams} beams): {kv_end_red:.3f}. Measured == analytic and cache lengths == "
        f"tokens entering each layer: {'yes' if kv_consistent else 'NO'}."
    )

    # summary
    frac = weighted["fraction_of_ideal"]
    print()
    print("## Summary")
    print()
    for r in rows[1:]:
        print(f"- Prefill speed-up, {r['variant']}: {r['speedup']:.2f}x = {r['fraction_of_ideal']:.3f} of the ideal "
              f"{r['ideal_speedup']:.2f}x (target >= 0.85 of ideal): {_met(r['fraction_of_ideal'] >= 0.85)}")
    print(f"- Machinery share ({weighted['variant']}): {100 * share:.2f}% of the full prefill (target < 3%): {_met(share < 0.03)}")
    print(f"- Decode speed-up, beam {args.beams}, {args.audio_tokens / 25:.0f} s audio: {dec['speedup']:.2f}x "
          f"({full_d['tokens_per_s']:.2f} -> {red_d['tokens_per_s']:.2f} tokens/s); no target here, the paper reports "
          f"1.84x (WavLLM, 240 s, A100): {'at or above' if dec['speedup'] >= 1.84 else 'below'} that")
    print(f"- Batch {args.batch_size} vs batch 1 samples/s with reduction on: {bat['ratio']:.2f}x (target >= 3x): {_met(bat['ratio'] >= 3)}")
    print(f"- KV cache after prefill: {full_p['kv_measured_bytes'] / MIB:.1f} -> {weighted['kv_measured_bytes'] / MIB:.1f} MiB "
          f"measured ({kv_red_measured:.1%} smaller), measured == analytic: {'yes' if kv_consistent else 'NO'}")
    total = time.perf_counter() - started
    print(f"\nTotal wall time {total:.0f} s.")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "cpu": cpu,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": torch.get_num_threads(),
            "spec": vars(spec) if hasattr(spec, "__dict__") else str(spec),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "prompt_tokens": t_prompt,
            "prefill": rows,
            "attention_probe_ms": probe,
            "machinery_share": share,
            "fraction_of_ideal": frac,
            "decode": dec,
            "batching": bat,
            "kv": {"reduction_after_prefill_analytic": kv_red_analytic, "reduction_after_prefill_measured": kv_red_measured,
                   "reduction_end_measured": kv_end_red, "consistent": kv_consistent},
            "wall_s": total,
        }
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
