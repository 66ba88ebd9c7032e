"""Speech-LLM speed: a Qwen2-Audio-shaped random LLM, full tokens vs FLOPs reduction 0.5, side by side.

Qwen2-Audio's language model is a Qwen-7B-shaped decoder (multi-head
attention, SwiGLU MLP, rotary positions). This benchmark builds the same
block scaled down to run on a CPU (default: hidden 1024, 8 layers, 16 heads
of 64, SwiGLU 2816, vocabulary 4096), randomly initialised (seeded), float32,
SDPA (:func:`fastadasp.run.benchmarking.random_qwen2_lm`); on a GPU at the real
shape with ``--preset qwen-7b --device cuda --dtype bfloat16`` (built on
the device; the shapes, not the weights, set the speed). The prompt is laid out
like a speech-LLM prompt, passed as ``inputs_embeds``: 20 text tokens, the
audio span (random vectors at the embedding's scale; 3000 tokens = 120 s at
25 tokens/s) and 20 more text tokens; only the audio span is reducible.
Random weights and inputs say nothing about quality, only about speed.

Reduction is applied as :class:`fastadasp.models.speech_lm.SpeechLM` applies
it (:func:`fastadasp.run.benchmarking.llm_reducer`), installed around the call
(not timed), one ``forward_state`` per call (timed: planning is a cost).
All variants run in one process, interleaved with the order rotating;
medians with min-max; ratios from numbers of this run.

1. prefill (``model(inputs_embeds, use_cache=True, logits_to_keep=1)``),
   batch 1, per ``--audio-tokens`` length: full vs FastAdaSP dense constant
   weighted / unweighted (``merge_ave``) and FastAdaSP sparse at layer 2, all
   under ``Budget(flops)``; ideal speed-up ``1 / (1 - realised)`` from the
   analytic FLOPs of the layer stack. Repetitions continue (up to
   ``--max-repeats``) until one more repetition moves the weighted variant's
   median speed-up by less than ``--stable``.
2. machinery share: matching + merging + bookkeeping (``profile=True`` ->
   ``machinery_s``) over the full-token prefill time.
3. beam-search decode: ``generate(num_beams, min_new_tokens =
   max_new_tokens)`` per ``--decode-audio-tokens`` length, after one short
   warm-up generate per variant; a forward hook marks the end of
   the prefill forward (``beams x T`` tokens); decode time = end of the last
   forward - end of the prefill forward, over ``new_tokens - 1`` steps. The
   speed-up is also given as a fraction of its memory-traffic ideal
   ``(W + 3 C_full) / (W + 3 C_reduced)`` (weights read per step, KV cache of
   all beams; :func:`fastadasp.run.benchmarking.decode_memory_ideal`).
4. samples/s with reduction on: eight batch-1 greedy ``generate`` calls vs
   one call on the batch of the same eight prompts.
5. KV cache: analytic (``reducer.costs``, at the model's dtype) and
   measured (the returned cache's tensors), after the prefill.

Timed prefill passes run without the machinery clock (its readings
synchronise a GPU at every layer); ``--profile-repeats`` separate profiled
passes measure the machinery's share. ``--op-profile`` adds one
``torch.profiler`` pass per variant: how long the device was busy, the
host-device synchronisations and the top host ops. ``--op-count`` counts the
aten operators a reducing layer dispatches beyond the stock layer's, as a GPU
runs the engine (:mod:`fastadasp.run.op_count`), weighted and unweighted, batch
1 and a left-padded batch of 2. Every printed number is labelled with the
device it was measured on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import transformers

from fastadasp.run.benchmarking import (
    QWEN_7B,
    ForwardMarks,
    PeakMemory,
    cache_bytes,
    clock,
    compiled_forward,
    decode_cache_growth_bytes,
    decode_memory_ideal,
    decode_weight_bytes,
    device_name,
    interleaved,
    llm_prompts,
    llm_reducer,
    markdown_table,
    maybe_reducing,
    random_qwen2_lm,
    spread,
    write_json,
)
from fastadasp.engine import attention
from fastadasp.run.op_count import OP_COUNT_COLUMNS, count_llm_prefill, op_count_rows, padded_llm_prompt
from fastadasp.models.speech_lm import decoder_stack_spec
from fastadasp.reduction import FastAdaSPDense, FastAdaSPSparse, kv_cache_bytes

MIB = 2**20
WEIGHTED = "FastAdaSP dense constant, weighted"
VARIANTS = {
    "full": None,
    WEIGHTED: FastAdaSPDense(schedule="constant", start_layer=0, weighted=True),
    "FastAdaSP dense constant, unweighted (merge_ave)": FastAdaSPDense(schedule="constant", start_layer=0, weighted=False),
    "FastAdaSP sparse, layer 2, weighted": FastAdaSPSparse(layer=2, weighted=True),
}


# -- 1, 2, 5: prefill ---------------------------------------------------------------------
@torch.inference_mode()
def prefill_once(model, spec, method, flops, embeds, mask, segments, profile: bool = True, mass_kernel: str = "torch",
                 forward=None) -> dict:
    """One timed prefill; ``forward`` (default: the model) is what runs it, e.g. the compiled forward."""
    reducer = None if method is None else llm_reducer(model, spec, method, flops, profile=profile, mass_kernel=mass_kernel)
    device, width = embeds.device, model.dtype.itemsize
    with PeakMemory(device) if device.type == "cuda" else nullcontext() as peak:  # CPU sampling would perturb timing
        t0 = clock(device)
        with maybe_reducing(reducer, segments, mask) as state:
            out = (forward or model)(inputs_embeds=embeds, attention_mask=mask, use_cache=True, logits_to_keep=1)
            elapsed = clock(device) - t0
    kv_measured, lengths = cache_bytes(out.cache)
    t = embeds.shape[1]
    row = {"s": elapsed, "kv_measured": kv_measured, "cache_lengths": lengths,
           "peak_bytes": None if peak is None else peak.bytes}
    if reducer is None:
        return row | {"machinery_s": 0.0, "received_s": 0.0, "realised": 0.0, "tokens_per_layer": [t] * (spec.num_layers + 1),
                      "kv_analytic": kv_cache_bytes(spec, [t] * spec.num_layers, width)}
    cost = reducer.costs(state, [2], bytes_per_value=width)[0]
    return row | {"machinery_s": reducer.machinery_s, "received_s": reducer.received_s,
                  "realised": reducer.realised(state)[0], "tokens_per_layer": cost.tokens_per_layer, "kv_analytic": cost.kv_bytes}


def bench_prefill(model, spec, flops, prompt, warm_prompt, repeats, max_repeats, stable, variants=VARIANTS,
                  profile_repeats: int = 3, options: dict | None = None) -> list[dict]:
    """``options``: per variant name, extra :func:`prefill_once` settings (``mass_kernel``, ``forward``)."""
    options = options or {}
    for name, method in variants.items():  # warm every code path on a short prompt
        prefill_once(model, spec, method, flops, *warm_prompt, **options.get(name, {}))
    # timed passes without the machinery clock (its readings synchronise a GPU at every layer) ...
    calls = {name: (lambda m=method, o=options.get(name, {}): prefill_once(model, spec, m, flops, *prompt, profile=False, **o))
             for name, method in variants.items()}
    runs = interleaved(calls, repeats, 0)

    def weighted_speedup() -> float:
        return statistics.median(r["s"] for r in runs["full"]) / statistics.median(r["s"] for r in runs[WEIGHTED])

    before = weighted_speedup()
    while len(runs["full"]) < max_repeats:  # one more repetition until the median stops moving
        for name, results in interleaved(calls, 1, 0).items():
            runs[name] += results
        now = weighted_speedup()
        if abs(now - before) / before < stable:
            break
        before = now
    # ... and separate profiled passes for the machinery's share
    profiled = interleaved({name: (lambda m=method, o=options.get(name, {}): prefill_once(model, spec, m, flops, *prompt,
                                                                                         profile=True, **o))
                            for name, method in variants.items() if method is not None}, profile_repeats, 0)
    full = [r["s"] for r in runs["full"]]
    rows = []
    for name, method in variants.items():
        times = [r["s"] for r in runs[name]]
        real = statistics.fmean(r["realised"] for r in runs[name])
        speedup = statistics.median(full) / statistics.median(times)
        machinery = statistics.median(r["machinery_s"] for r in profiled.get(name, runs[name]))
        received = statistics.median(r["received_s"] for r in profiled.get(name, runs[name]))
        last = runs[name][-1]
        rows.append({
            "variant": name, "method": None if method is None else method.describe(),
            "median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times), "max_ms": 1000 * max(times),
            "repeats": len(times), "speedup": speedup, "speedup_paired": spread([f / t for f, t in zip(full, times)]),
            "flops_realised": real, "ideal_speedup": 1 / (1 - real), "fraction_of_ideal": speedup * (1 - real),
            "machinery_median_ms": 1000 * machinery, "machinery_share_of_full": machinery / statistics.median(full),
            "received_median_ms": 1000 * received,
            "peak_mib": None if last["peak_bytes"] is None else last["peak_bytes"] / MIB,
            "per_repeat_ms": [1000 * t for t in times], "tokens_per_layer": last["tokens_per_layer"],
            "cache_lengths_measured": last["cache_lengths"], "kv_analytic_bytes": last["kv_analytic"],
            "kv_measured_bytes": last["kv_measured"],
        })
    return rows


# -- where the prefill's time goes ---------------------------------------------------------
def op_profile(model, spec, flops, prompt, variants, options: dict | None = None) -> dict:
    """One prefill per variant under ``torch.profiler``: wall time, the time
    the device spent in kernels (a host-bound forward leaves the device idle:
    busy share < 1), the host-device synchronisations, and the ops by host time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = prompt[0].device.type == "cuda"
    out = {}
    for name, method in variants.items():
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            wall = prefill_once(model, spec, method, flops, *prompt, profile=False, **(options or {}).get(name, {}))["s"]
        events = prof.key_averages()
        # the device time attributed to host ops (the kernel rows repeat it: summing both counts it twice)
        kernel_s = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CPU) / 1e6 if cuda else None
        syncs = sum(e.count for e in events if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize"))
        copies = {e.key: e.count for e in events
                  if e.key in ("aten::_local_scalar_dense", "aten::_to_copy", "cudaMemcpyAsync")}
        out[name] = {"wall_s": wall, "kernel_s": kernel_s, "busy_share": None if kernel_s is None else kernel_s / wall,
                     "host_syncs": syncs, "copies": copies, "host_ops": sum(e.count for e in events if e.key.startswith("aten::")),
                     "top_host_ops": events.table(sort_by="self_cpu_time_total", row_limit=12)}
    return out


# -- how many operators a reducing layer dispatches -------------------------------------------
def op_counts(model, spec, flops, audio, text, seed) -> list[dict]:
    """FastAdaSP dense weighted and unweighted, batch 1 and a left-padded batch of 2
    (its second row a fifth shorter), counted as a GPU runs them
    (:mod:`fastadasp.run.op_count`); the mass as the torch path computes it."""
    unweighted = "FastAdaSP dense constant, unweighted (merge_ave)"
    methods = {WEIGHTED: VARIANTS[WEIGHTED], unweighted: VARIANTS[unweighted]}
    prompts = {False: llm_prompts(model, 1, audio, text, seed),
               True: padded_llm_prompt(model, audio, text, seed, pad=min(text, 20) + audio // 5)}

    def count(method, padded):
        return count_llm_prefill(model, llm_reducer(model, spec, method, flops, profile=False), *prompts[padded])

    return op_count_rows(count, methods)


# -- 3: beam-search decode ----------------------------------------------------------------
@torch.inference_mode()
def generate_once(model, spec, method, flops, embeds, mask, segments, new_tokens, beams, keys=None) -> dict:
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_beams=beams, do_sample=False,
               eos_token_id=None, pad_token_id=0, return_dict_in_generate=True)
    reducer = None if method is None else llm_reducer(model, spec, method, flops, profile=False)
    with ForwardMarks(model.model, embeds.device) as marks:
        t0 = clock(embeds.device)
        with maybe_reducing(reducer, segments, mask, keys):
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, **gen)
        end = clock(embeds.device)
    steps = len(marks.times) - 1
    return {"total_s": end - t0, "prefill_s": marks.times[0] - t0, "decode_s": marks.times[-1] - marks.times[0],
            "steps": steps, "prefill_shape": list(marks.shapes[0]), "kv_end_measured": cache_bytes(out.cache)[0]}


def bench_decode(model, spec, flops, prompt, new_tokens, beams, repeats, weighted: bool) -> dict:
    reduced = f"FastAdaSP dense constant, {'weighted' if weighted else 'unweighted'}"
    methods = {"full": None, reduced: FastAdaSPDense("constant", 0, weighted)}
    for m in methods.values():  # warm-up: a first beam search on this shape pays one-off costs (seen: 60 s on a GPU)
        generate_once(model, spec, m, flops, *prompt, 2, beams)
    runs = interleaved({name: (lambda m=m: generate_once(model, spec, m, flops, *prompt, new_tokens, beams))
                        for name, m in methods.items()}, repeats, 0)
    rows = {}
    for name, r in runs.items():
        decode = [x["decode_s"] for x in r]
        rows[name] = {"decode_s": spread(decode), "steps": r[0]["steps"],
                      "tokens_per_s": r[0]["steps"] / statistics.median(decode),
                      "prefill_s": spread([x["prefill_s"] for x in r]), "prefill_shape": r[0]["prefill_shape"],
                      "kv_end_measured_bytes": r[-1]["kv_end_measured"]}
    paired = [f["decode_s"] / x["decode_s"] for f, x in zip(runs["full"], runs[reduced])]
    speedup = rows["full"]["decode_s"]["median"] / rows[reduced]["decode_s"]["median"]
    return {"rows": rows, "reduced": reduced, "speedup": speedup, "speedup_per_repeat": paired,
            **decode_ideal(model, spec, beams, rows["full"], rows[reduced], speedup)}


def decode_ideal(model, spec, beams: int, full: dict, reduced: dict, speedup: float) -> dict:
    """The speed-up beside its memory-traffic ideal (:func:`~fastadasp.run.benchmarking.decode_memory_ideal`):
    weights read per step, and each variant's cache averaged over the decode (the measured cache at the
    end, less half of what the decode steps appended)."""
    weights = decode_weight_bytes(model.model, model.lm_head)
    growth = decode_cache_growth_bytes(spec, beams, model.dtype.itemsize)
    steps = full["steps"]
    cache = {name: r["kv_end_measured_bytes"] - growth * (steps - 1) / 2 for name, r in (("full", full), ("reduced", reduced))}
    ideal = decode_memory_ideal(weights, cache["full"], cache["reduced"], beams)
    return {"weight_bytes": weights, "cache_mean_bytes": cache, "memory_ideal": ideal, "fraction_of_ideal": speedup / ideal}


# -- 4: batching --------------------------------------------------------------------------
def bench_batch(model, spec, flops, prompt, new_tokens, repeats) -> dict:
    embeds, mask, segments = prompt
    b = embeds.shape[0]
    method = FastAdaSPDense("constant", 0, True)
    keys = [f"s{i}" for i in range(b)]

    device = embeds.device

    def one_by_one() -> float:
        t0 = clock(device)
        for i in range(b):
            generate_once(model, spec, method, flops, embeds[i : i + 1], mask[i : i + 1], segments[i : i + 1],
                          new_tokens, 1, [keys[i]])
        return clock(device) - t0

    def batched() -> float:
        t0 = clock(device)
        generate_once(model, spec, method, flops, embeds, mask, segments, new_tokens, 1, keys)
        return clock(device) - t0

    generate_once(model, spec, method, flops, embeds[:2], mask[:2], segments[:2], 2, 1, keys[:2])  # warm generate
    runs = interleaved({"batch 1": one_by_one, f"batch {b}": batched}, repeats, 0)
    one, many = statistics.median(runs["batch 1"]), statistics.median(runs[f"batch {b}"])
    return {"batch": b, "batch1_s": spread(runs["batch 1"]), "batch_s": spread(runs[f"batch {b}"]),
            "batch1_samples_per_s": b / one, "batch_samples_per_s": b / many, "ratio": one / many}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("qwen-7b",), default=None,
                   help="the real shape: qwen-7b = Qwen2-Audio-7B's LLM (32 layers, d 4096, 32 heads of 128, SwiGLU "
                   "11008, vocabulary 151936); overrides --hidden/--layers/--heads/--intermediate/--vocab")
    p.add_argument("--hidden", type=int, default=1024, help="LLM hidden size; heads = hidden/64 (default: %(default)s)")
    p.add_argument("--layers", type=int, default=8, help="decoder layers (default: %(default)s)")
    p.add_argument("--heads", type=int, default=None, help="attention heads (default: hidden/64)")
    p.add_argument("--intermediate", type=int, default=None, help="SwiGLU width (default: 2.75 x hidden)")
    p.add_argument("--vocab", type=int, default=4096, help="vocabulary size (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: %(default)s)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="weights and activations (default: %(default)s)")
    p.add_argument("--profile-repeats", type=int, default=3,
                   help="separate profiled prefill passes that measure the machinery's share (default: %(default)s)")
    p.add_argument("--audio-tokens", type=int, nargs="+", default=[3000], help="audio tokens per prefill prompt, "
                   "25 per second; the decode uses the first (default: %(default)s)")
    p.add_argument("--text-tokens", type=int, default=40, help="text tokens, 20 before the audio (default: %(default)s)")
    p.add_argument("--flops", type=float, default=0.5, help="FLOPs-reduction target (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="least timed prefill repetitions (default: %(default)s)")
    p.add_argument("--max-repeats", type=int, default=7, help="most prefill repetitions (default: %(default)s)")
    p.add_argument("--stable", type=float, default=0.02,
                   help="stop adding prefill repetitions when the weighted median speed-up moves less (default: %(default)s)")
    p.add_argument("--warmup-audio-tokens", type=int, default=500, help="audio tokens of the warm-up prompt (default: %(default)s)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per beam-search generate (default: %(default)s)")
    p.add_argument("--decode-audio-tokens", type=int, nargs="+", default=None,
                   help="audio tokens of the decode prompts (default: the first --audio-tokens)")
    p.add_argument("--beams", type=int, default=5, help="beams of the decode measurement (default: %(default)s)")
    p.add_argument("--decode-repeats", type=int, default=2, help="generate calls per variant (default: %(default)s)")
    p.add_argument("--decode-method", choices=("unweighted", "weighted"), default="unweighted",
                   help="FastAdaSP dense variant of the decode measurement; both keep the same tokens per layer "
                   "(the budget is solved from the layout), so the decode steps have the same shapes (default: %(default)s)")
    p.add_argument("--batch-audio-tokens", type=int, default=500, help="audio tokens per prompt of the batching test")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batch-new-tokens", type=int, default=8)
    p.add_argument("--skip", nargs="*", default=[], choices=("prefill", "decode", "batch"),
                   help="sections to leave out")
    p.add_argument("--prefill-variants", nargs="+", type=int, default=list(range(len(VARIANTS))),
                   help="indices into the prefill variants (0 full, 1 weighted, 2 unweighted, 3 sparse), e.g. "
                   "'0 1' for long prompts (default: all)")
    p.add_argument("--op-profile", action="store_true",
                   help="also profile one prefill per variant (first length): device busy share, syncs, top host ops")
    p.add_argument("--op-count", action="store_true",
                   help="count the aten operators one reduced prefill dispatches (first length), on a GPU's path "
                   "(no size read, the GPU's mass chunking) whatever the device: the engine's per reducing layer beyond "
                   "the stock layer's, by category, weighted and unweighted, batch 1 and a left-padded batch of 2")
    p.add_argument("--sizes", choices=("engine", "read", "bounded"), default="engine",
                   help="per-layer sizes of the deferred mass: the engine's policy (read on CPU, host bounds elsewhere), "
                        "always read from the device, or always bounded on the host (default: %(default)s)")
    p.add_argument("--mass-kernel", nargs="+", choices=("torch", "triton"), default=["torch"],
                   help="deferred-mass kernels of the weighted prefill; triton adds a variant with the fused kernel "
                   "(engine/mass_kernel.py) (default: %(default)s)")
    p.add_argument("--compile", action="store_true",
                   help="add full and weighted prefill variants through model.compile=true's compiled forward")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    if args.preset == "qwen-7b":
        vars(args).update(QWEN_7B)
    device = torch.device(args.device)
    if args.sizes != "engine":  # an A/B of the synchronising reads against the extra arithmetic of bounds
        attention.READ_SIZES_ON = (device.type,) if args.sizes == "read" else ()
    decode_lengths = args.decode_audio_tokens or args.audio_tokens[:1]
    longest = max(args.audio_tokens + decode_lengths + [args.batch_audio_tokens])
    model = random_qwen2_lm(args.hidden, args.layers, args.seed, vocab=args.vocab, heads=args.heads,
                            intermediate=args.intermediate, max_positions=max(16384, longest + 1024),
                            dtype=getattr(torch, args.dtype), device=device)
    spec = decoder_stack_spec(model.config)
    card = device_name(device)
    print(f"{card} | torch {torch.__version__} | transformers {transformers.__version__} | random Qwen2 LLM: "
          f"{spec.num_layers} layers, d {spec.d_model}, {spec.num_heads} heads x {spec.head_dim}, SwiGLU {spec.ffn_dim}, "
          f"{sum(q.numel() for q in model.parameters()) / 1e6:.0f} M params, {args.dtype}, sdpa | flops {args.flops}")
    payload = {"device": card, "torch": torch.__version__, "transformers": transformers.__version__,
               "spec": vars(spec) if hasattr(spec, "__dict__") else str(spec), "args": {k: str(v) if isinstance(v, Path) else v
                                                                              for k, v in vars(args).items()}, "prefill": {}}
    warm = llm_prompts(model, 1, args.warmup_audio_tokens, args.text_tokens, args.seed + 2)
    chosen = {name: m for i, (name, m) in enumerate(VARIANTS.items()) if i in set(args.prefill_variants) | {0, 1}}
    options: dict[str, dict] = {}
    if "triton" in args.mass_kernel:
        chosen[f"{WEIGHTED}, triton mass"] = VARIANTS[WEIGHTED]
        options[f"{WEIGHTED}, triton mass"] = {"mass_kernel": "triton"}
    if args.compile:
        forward, why_not = compiled_forward(model)
        if forward is None:
            print(why_not)
            payload["skipped"] = [why_not]
        else:
            for name, kernel in [("full", "torch"), (WEIGHTED, "torch")] + [(WEIGHTED, "triton")] * ("triton" in args.mass_kernel):
                label = f"{name}, compiled" + (", triton mass" if kernel == "triton" else "")
                chosen[label], options[label] = VARIANTS[name], {"mass_kernel": kernel, "forward": forward}
    if args.op_count:
        payload["op_count"] = op_counts(model, spec, args.flops, args.audio_tokens[0], args.text_tokens, args.seed + 1)
        print(f"\n## Operators per reducing layer ({args.audio_tokens[0]} audio tokens, a GPU's path, counted on {card})\n")
        print(markdown_table([{k: v for k, v in r.items() if k != "layers"} for r in payload["op_count"]],
                             OP_COUNT_COLUMNS, ".3g"))
    for audio in [] if "prefill" in args.skip else args.audio_tokens:
        prompt = llm_prompts(model, 1, audio, args.text_tokens, args.seed + 1)
        rows = bench_prefill(model, spec, args.flops, prompt, warm, args.repeats, args.max_repeats, args.stable, chosen,
                             args.profile_repeats, options)
        payload["prefill"][audio] = rows
        if args.json:  # after every length: a run stopped by a time limit keeps what it measured
            write_json(args.json, payload)
        table = [r | {"range": f"{r['min_ms']:.0f}-{r['max_ms']:.0f}",
                      "paired": f"{r['speedup_paired']['min']:.2f}-{r['speedup_paired']['max']:.2f}x",
                      "machinery": "-" if r["method"] is None else f"{r['machinery_median_ms']:.1f} ({100 * r['machinery_share_of_full']:.2f}%)"}
                 for r in rows]
        print(f"\n## 1-2. Prefill, batch 1, {audio} audio + {args.text_tokens} text tokens ({rows[0]['repeats']} repeats, "
              f"{card})\n")
        print(markdown_table(table, {"variant": "variant", "median_ms": "median ms", "range": "min-max ms",
                                     "speedup": "speed-up", "paired": "paired speed-ups", "flops_realised": "realised FLOPs",
                                     "ideal_speedup": "ideal", "fraction_of_ideal": "fraction of ideal",
                                     "machinery": "machinery ms (share)", "received_median_ms": "deferred mass ms",
                                     "peak_mib": "peak MiB"}, ".3g"))
        full, red = rows[0], rows[1]
        ok = red["kv_measured_bytes"] == red["kv_analytic_bytes"] and red["cache_lengths_measured"] == red["tokens_per_layer"][:-1]
        print(f"\n5. KV cache after prefill: {full['kv_measured_bytes'] / MIB:.1f} -> {red['kv_measured_bytes'] / MIB:.1f} MiB "
              f"measured ({1 - red['kv_measured_bytes'] / full['kv_measured_bytes']:.1%} smaller); measured == analytic "
              f"and cache lengths == tokens entering each layer: {'yes' if ok else 'NO'}")

    if args.op_profile:
        prompt = llm_prompts(model, 1, args.audio_tokens[0], args.text_tokens, args.seed + 1)
        prof = op_profile(model, spec, args.flops, prompt, chosen, options)
        payload["op_profile"] = prof
        print(f"\n## Where the prefill's time goes ({args.audio_tokens[0]} audio tokens, one profiled pass each, {card})\n")
        print(markdown_table([{"variant": k, **v, "copies": str(v["copies"])} for k, v in prof.items()],
                             {"variant": "variant", "wall_s": "wall s", "kernel_s": "device kernels s",
                              "busy_share": "device busy share", "host_syncs": "stream syncs", "host_ops": "aten ops",
                              "copies": "scalar reads / copies"}, ".3g"))
        print(f"\nTop host ops, {WEIGHTED}:\n{prof[WEIGHTED]['top_host_ops']}")
    for audio in [] if "decode" in args.skip else decode_lengths:
        prompt = llm_prompts(model, 1, audio, args.text_tokens, args.seed + 1)
        dec = bench_decode(model, spec, args.flops, prompt, args.new_tokens, args.beams, args.decode_repeats,
                           args.decode_method == "weighted")
        payload.setdefault("decode", dec)  # the first length, as before
        payload.setdefault("decode_by_audio_tokens", {})[audio] = dec
        table = [{"variant": name, "prefill": f"{r['prefill_s']['median']:.2f}", "decode": f"{r['decode_s']['median']:.2f}",
                  "range": f"{r['decode_s']['min']:.2f}-{r['decode_s']['max']:.2f}", "steps": r["steps"],
                  "tok_s": r["tokens_per_s"], "shape": r["prefill_shape"]} for name, r in dec["rows"].items()]
        print(f"\n## 3. Decode, beam {args.beams}, {args.new_tokens} new tokens, {audio} audio tokens\n")
        print(markdown_table(table, {"variant": "variant", "prefill": "prefill s", "decode": "decode s",
                                     "range": "decode min-max s", "steps": "steps", "tok_s": "tokens/s",
                                     "shape": "prefill forward (beams, T)"}, ".3g"))
        print(f"\nDecode speed-up {dec['speedup']:.2f}x (per repeat: "
              + ", ".join(f"{x:.2f}x" for x in dec["speedup_per_repeat"]) + f"); memory-traffic ideal "
              f"{dec['memory_ideal']:.2f}x (weights {dec['weight_bytes'] / 2**30:.2f} GiB, cache "
              f"{dec['cache_mean_bytes']['full'] / 2**30:.2f} -> {dec['cache_mean_bytes']['reduced'] / 2**30:.2f} GiB): "
              f"{dec['fraction_of_ideal']:.2f} of ideal [{card}]")
    if "batch" not in args.skip:
        bprompt = llm_prompts(model, args.batch_size, args.batch_audio_tokens, args.text_tokens, args.seed + 3)
        bat = bench_batch(model, spec, args.flops, bprompt, args.batch_new_tokens, args.repeats)
        payload["batching"] = bat
        print(f"\n## 4. Batching, reduction on ({args.batch_audio_tokens} audio tokens, greedy, {args.batch_new_tokens} "
              f"new tokens): batch 1 {bat['batch1_samples_per_s']:.2f} samples/s, batch {bat['batch']} "
              f"{bat['batch_samples_per_s']:.2f} samples/s = {bat['ratio']:.2f}x [{card}]")
    payload["wall_s"] = time.perf_counter() - started
    print(f"\nTotal wall time {payload['wall_s']:.0f} s.")
    if args.json:
        print(f"wrote {write_json(args.json, payload)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
