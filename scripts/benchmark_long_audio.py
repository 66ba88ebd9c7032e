"""Long-audio latency and memory of a speech LLM (paper Tables 3/4, the talk's Table 12).

For every audio length x beam size x (method, budget) it runs the model
adapter's own ``generate`` (feature extraction, audio encoder, LLM prefill
with reduction, beam-search decode) on one synthetic clip and reports:

- ``rtf``: whole ``generate`` wall time / audio seconds;
- ``prefill_s``: from the call to the end of the language model's first
  forward (features + audio encoder + LLM prefill of beams x prompt tokens:
  ``generate`` expands the prompt per beam before the prefill, as the paper's
  timings also show);
- ``decode_s``: from the end of that forward to the end of the last one, i.e.
  ``new_tokens - 1`` decode steps (the first token comes from the prefill);
  ``throughput_tok_s = batch * (new_tokens - 1) / decode_s`` (beams of a
  sample together; ``--batch-sizes`` copies of the clip per call, default 1);
- ``flops_realized``: analytic LLM prefill FLOPs reduction
  (:mod:`fastadasp.reduction.flops`); ``token_reduction``: fraction of audio
  token-layers removed (the paper's token-layer model: layer l counts the
  audio tokens entering it), which is what the paper's "token reduce" means;
- ``kv_bytes`` / ``kv_bytes_full``: analytic KV cache of the LLM after the
  prefill, all beams, at the model's dtype;
- ``decode_memory_ideal`` / ``decode_fraction_of_ideal``: the decode speed-up
  a smaller cache allows when a step is bound by memory traffic,
  ``(W + 3 C_full) / (W + 3 C_reduced)`` (``C`` without beams), and the
  measured ``speedup_decode`` as a fraction of it
  (:func:`fastadasp.run.benchmarking.decode_memory_ideal`; ``W`` =
  ``decode_weight_bytes`` read per step, ``C`` = ``decode_cache_mean_bytes``,
  the cache of all beams and batch rows averaged over the decode steps);
- ``peak_mem_bytes``: peak memory the call adds (CUDA:
  ``max_memory_allocated`` minus what was allocated before; CPU: resident set
  size sampled every 2 ms minus the RSS at the start, approximate, see
  :class:`fastadasp.run.benchmarking.PeakMemory`).

Every call generates exactly ``--new-tokens`` tokens (``min_new_tokens =
max_new_tokens``), so decode times compare like with like. First one short
untimed call per beam and variant (``--warmup-audio-s``) warms every code
path; then per (audio, beam) cell the methods run interleaved, the order
rotating (``--warmup`` untimed repetitions first, default none); rows hold medians over ``--repeats`` and ``spread`` the
per-metric median/min/max. Ratios against the full-token row of the same cell
(``speedup_*``) are computed from numbers of the same run.

``--source random`` (default) builds a random model of the family scaled to a
CPU (``--hidden``, ``--layers``; the tiny audio encoder): shapes, not quality.
On a GPU with the real checkpoint:

    python scripts/benchmark_long_audio.py --model qwen2_audio --source Qwen/Qwen2-Audio-7B \\
        --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fastadasp.run.benchmarking import (
    ForwardMarks,
    PeakMemory,
    clock,
    decode_cache_growth_bytes,
    decode_memory_ideal,
    decode_weight_bytes,
    device_name,
    interleaved,
    markdown_table,
    spread,
    write_json,
)
from fastadasp.reduction import COST_MODELS, Budget
from fastadasp.reduction.budget import DEPRECATED_COST_MODEL_NAMES

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SAMPLE_RATE = 16000
TIMED = ("rtf", "prefill_s", "decode_s", "throughput_tok_s", "peak_mem_bytes")


def synthetic_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like enough to keep the encoder busy: gliding tones and noise, 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f = 180 + 80 * np.sin(2 * np.pi * 0.3 * t)
    return (0.3 * np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) + rng.normal(0, 0.05, t.shape)).astype("float32")


def load_model(args):
    """The family's adapter from ``configs/model/<model>.yaml``; ``--source
    random`` builds a random model of the family at the benchmark's shape."""
    cfg = OmegaConf.load(CONFIGS / "model" / f"{args.model}.yaml")
    source = args.source
    if source == "random":
        from fastadasp.testing.tiny_models import tiny_model_dir

        family = instantiate(cfg, _partial_=True).func.family  # the adapter class's family name
        heads = max(1, args.hidden // 64)
        text = {"hidden_size": args.hidden, "num_hidden_layers": args.layers, "num_attention_heads": heads,
                "num_key_value_heads": heads, "intermediate_size": 64 * round(args.hidden * 2.75 / 64)}
        source = str(tiny_model_dir(family, sizes={"text": text}))
    overrides = {"source": source, "device": args.device, "dtype": args.dtype}
    return instantiate(cfg, **{k: v for k, v in overrides.items() if k in cfg})


def load_method(name: str):
    return instantiate(OmegaConf.load(CONFIGS / "method" / f"{name}.yaml"))


def task_prompt(lm, task: str) -> str:
    prompts = OmegaConf.load(CONFIGS / "task" / f"{task}.yaml").prompts
    family = getattr(lm, "family", None)
    if family not in prompts:
        raise KeyError(f"configs/task/{task}.yaml has no prompt for model family {family!r}")
    return prompts[family]


def measure(lm, audio: np.ndarray, prompt: str, method, budget: Budget, new_tokens: int, device: str,
            batch: int = 1) -> dict:
    """One ``generate`` call on ``batch`` copies of the clip, split at the end of the LLM's first forward."""
    with ForwardMarks(lm.language_model, device) as marks, PeakMemory(device) as mem:
        start = clock(device)
        outs = lm.generate([audio] * batch, prompt, method, budget, new_tokens, [f"clip{i}" for i in range(batch)])
        end = clock(device)
    steps = len(marks.times) - 1
    if any(len(o.tokens) != new_tokens for o in outs) or steps != new_tokens - 1:
        raise RuntimeError(f"expected {new_tokens} tokens from {new_tokens} forwards, got "
                           f"{[len(o.tokens) for o in outs]} tokens from {steps + 1} forwards: is min_new_tokens honoured?")
    decode_s = marks.times[-1] - marks.times[0]
    out = outs[0]
    return {
        "total_s": end - start,
        "prefill_s": marks.times[0] - start,
        "decode_s": decode_s,
        "throughput_tok_s": batch * steps / decode_s if decode_s > 0 else float("inf"),
        "peak_mem_bytes": mem.bytes,
        "prefill_shape": marks.shapes[0],
        "generation": out,
    }


def row_from(runs: list[dict], *, audio_s: float, beam: int, method, flops: float, audio_tokens: int,
             new_tokens: int, batch: int = 1, weight_bytes: int = 0, growth_bytes: float = 0.0) -> dict:
    """Medians (and spread) of one variant's repetitions; ``weight_bytes`` read per
    decode step, ``growth_bytes`` appended to the cache per step and sequence."""
    g = runs[-1]["generation"]
    tokens = g.tokens_per_layer
    text = tokens[0] - audio_tokens
    audio_layers = sum(t - text for t in tokens[:-1])
    per_run = {
        "rtf": [r["total_s"] / (audio_s * batch) for r in runs],
        "prefill_s": [r["prefill_s"] for r in runs],
        "decode_s": [r["decode_s"] for r in runs],
        "throughput_tok_s": [r["throughput_tok_s"] for r in runs],
        "peak_mem_bytes": [r["peak_mem_bytes"] for r in runs],
    }
    decode_s = statistics.median(per_run["decode_s"])
    kv = g.extra.get("kv_bytes", 0.0) * beam * batch
    return {
        "batch": batch,
        "beam": beam,
        "audio_s": audio_s,
        "method": method.name,
        "flops_target": flops,
        "token_reduction": 1 - audio_layers / (audio_tokens * (len(tokens) - 1)),
        "flops_realized": g.flops_realized,
        "rtf": statistics.median(per_run["rtf"]),
        "prefill_s": statistics.median(per_run["prefill_s"]),
        "decode_s": decode_s,
        "new_tokens": new_tokens,
        "throughput_tok_s": batch * (new_tokens - 1) / decode_s,
        "kv_bytes": kv,
        "kv_bytes_full": g.extra.get("kv_bytes_full", 0.0) * beam * batch,
        "decode_weight_bytes": weight_bytes,
        # the cache decode steps 1..n-1 attend over, on average: the prefill's plus (n / 2) appended tokens
        "decode_cache_mean_bytes": kv + growth_bytes * beam * batch * new_tokens / 2,
        "peak_mem_bytes": statistics.median(per_run["peak_mem_bytes"]),
        "repeats": len(runs),
        "spread": {k: spread(v) for k, v in per_run.items()},
        "audio_tokens": audio_tokens,
        "prompt_tokens": tokens[0],
        "prefill_batch_tokens": list(runs[-1]["prefill_shape"]),
        "tokens_per_layer": tokens,
        "method_settings": method.describe(),
    }


def add_ratios(rows: list[dict]) -> None:
    """Speed-ups against the full-token row of the same (audio, beam) cell."""
    full = {(r["audio_s"], r["beam"], r["batch"]): r for r in rows if r["method"] == "none"}
    for r in rows:
        ref = full.get((r["audio_s"], r["beam"], r["batch"]))
        if ref is None:
            continue
        r["speedup_prefill"] = ref["prefill_s"] / r["prefill_s"]
        r["speedup_decode"] = ref["decode_s"] / r["decode_s"]
        r["speedup_rtf"] = ref["rtf"] / r["rtf"]
        r["decode_memory_ideal"] = decode_memory_ideal(r["decode_weight_bytes"], ref["decode_cache_mean_bytes"],
                                                       r["decode_cache_mean_bytes"], r["beam"])
        r["decode_fraction_of_ideal"] = r["speedup_decode"] / r["decode_memory_ideal"]


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    lm = load_model(args)
    prompt = task_prompt(lm, args.task)
    weight_bytes = decode_weight_bytes(lm.language_model, lm.model.get_output_embeddings())
    growth_bytes = decode_cache_growth_bytes(lm.stack_spec, 1, lm.model.dtype.itemsize)
    variants = [("none", 0.0)] + [(m, f) for m in args.methods if m != "none" for f in args.flops]
    methods = {name: load_method(name) for name, _ in variants}
    gen_config = lm.model.generation_config
    saved = gen_config.min_new_tokens
    gen_config.min_new_tokens = args.new_tokens  # every call generates exactly --new-tokens
    rows = []
    try:
        if args.warmup_audio_s > 0:  # one short untimed call per beam and variant warms every code path
            short = synthetic_audio(args.warmup_audio_s, args.seed)
            for beam in args.beams:
                lm.num_beams = beam
                for name, flops in variants:
                    measure(lm, short, prompt, methods[name], COST_MODELS[args.budget_model](flops),
                            args.new_tokens, args.device)
        for audio_s in args.audio_s:
            audio = synthetic_audio(audio_s, args.seed)
            _, segments = lm.prepare([audio], prompt)
            audio_tokens = int((segments >= 0).sum())
            for batch in args.batch_sizes:
                for beam in args.beams:
                    lm.num_beams = beam
                    calls = {
                        f"{name}@{flops}": (lambda m=methods[name], f=flops: measure(
                            lm, audio, prompt, m, COST_MODELS[args.budget_model](f), args.new_tokens, args.device,
                            batch))
                        for name, flops in variants
                    }
                    runs = interleaved(calls, args.repeats, args.warmup)
                    for name, flops in variants:
                        rows.append(row_from(runs[f"{name}@{flops}"], audio_s=audio_s, beam=beam, method=methods[name],
                                             flops=flops, audio_tokens=audio_tokens, new_tokens=args.new_tokens,
                                             batch=batch, weight_bytes=weight_bytes, growth_bytes=growth_bytes))
                        print(f"audio {audio_s:g} s, batch {batch}, beam {beam}, {name} @ {flops}: prefill "
                              f"{rows[-1]['prefill_s']:.3f} s, decode {rows[-1]['decode_s']:.3f} s", flush=True)
    finally:
        gen_config.min_new_tokens = saved
        lm.num_beams = 1
    add_ratios(rows)
    spec = lm.stack_spec
    return {
        "kind": "long_audio_benchmark",
        "device": device_name(args.device),
        "model": lm.name if args.source != "random" else f"random {args.model} (LLM hidden {args.hidden}, "
                 f"{args.layers} layers; tiny audio encoder)",
        "dtype": args.dtype,
        "command": " ".join(["python scripts/benchmark_long_audio.py", shlex.join(args.argv)]).strip(),
        "rows": rows,
        "settings": {k: v for k, v in vars(args).items() if k not in ("argv", "json")},
        "llm": vars(spec) if hasattr(spec, "__dict__") else {f: getattr(spec, f) for f in spec.__dataclass_fields__},
        "budget_model": args.budget_model,
        "memory": PeakMemory(args.device).kind,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }


COLUMNS = {
    "batch": "batch", "beam": "beam", "audio_s": "audio s", "method": "method", "flops_target": "FLOPs target",
    "token_reduction": "token red.", "flops_realized": "FLOPs red.", "rtf": "RTF", "prefill_s": "prefill s",
    "decode_s": "decode s", "throughput_tok_s": "tok/s", "speedup_decode": "decode speed-up",
    "decode_memory_ideal": "memory ideal", "decode_fraction_of_ideal": "of ideal",
    "kv_mib": "KV MiB", "peak_mib": "peak MiB", "decode_spread": "decode min-max s",
}


def report(payload: dict) -> str:
    rows = [r | {"kv_mib": r["kv_bytes"] / 2**20, "peak_mib": r["peak_mem_bytes"] / 2**20,
                 "decode_spread": f"{r['spread']['decode_s']['min']:.3g}-{r['spread']['decode_s']['max']:.3g}"}
            for r in payload["rows"]]
    head = f"{payload['device']} | {payload['model']} | {payload['dtype']} | {payload['command']}"
    return head + "\n\n" + markdown_table(rows, COLUMNS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="qwen2_audio", help="configs/model/<name>.yaml (default: %(default)s)")
    p.add_argument("--source", default="random",
                   help="checkpoint name or folder, 'tiny:<family>', or 'random' (default): a random model of "
                   "the family scaled by --hidden/--layers")
    p.add_argument("--hidden", type=int, default=512, help="LLM hidden size of --source random (default: %(default)s)")
    p.add_argument("--layers", type=int, default=6, help="LLM layers of --source random (default: %(default)s)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--task", default="asr", help="configs/task/<name>.yaml, for the prompt (default: %(default)s)")
    p.add_argument("--audio-s", type=float, nargs="+", default=[60.0, 120.0])
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1],
                   help="copies of the clip per generate call (default: %(default)s); with a batch, rtf is per "
                   "audio second processed, throughput and KV bytes cover the whole batch")
    p.add_argument("--methods", nargs="+", default=["fastadasp_dense"],
                   help="configs/method names, timed against full tokens (default: %(default)s)")
    p.add_argument("--flops", type=float, nargs="+", default=[0.5], help="budgets (default: %(default)s)")
    p.add_argument("--budget-model", choices=(*COST_MODELS, *DEPRECATED_COST_MODEL_NAMES), default="analytic",
                   help="analytic: analytic FLOPs target; token_layer: the authors' token-layer model "
                   "(flops, paper: their earlier names) (default: %(default)s)")
    p.add_argument("--new-tokens", type=int, default=24, help="tokens generated per call (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=0, help="untimed repetitions per (audio, beam) cell (default: %(default)s)")
    p.add_argument("--warmup-audio-s", type=float, default=10.0,
                   help="before the grid, one untimed call per beam and variant on a clip this long; 0 = none "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="synthetic audio seed")
    p.add_argument("--json", type=Path, default=None,
                   help="output (default: results/benchmarks/long_audio_<device>.json)")
    args = p.parse_args(argv)
    args.budget_model = DEPRECATED_COST_MODEL_NAMES.get(args.budget_model, args.budget_model)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.new_tokens < 2:
        p.error("--new-tokens must be at least 2 (one prefill token and one decode step)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    payload = run(args)
    path = args.json or REPO / "results" / "benchmarks" / f"long_audio_{torch.device(args.device).type}.json"
    write_json(path, payload)
    print(report(payload))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
