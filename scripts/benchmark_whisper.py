"""Encoder speed (`make bench`): Whisper tiny.en, full tokens vs FLOPs reduction 0.5, side by side.

All variants run in one process on the same utterances, interleaved: every
repetition times each variant once per utterance (the variant order rotates
between repetitions), so drift and noise on the machine hit all of them alike.
Reported times are medians over repetitions of the mean ms per utterance
(batch 1); speed-ups are ratios measured in this run.

- full: ``WhisperModel.encode(features)``, the stock layers, SDPA attention.
- FastAdaSP dense constant, weighted / unweighted (the ``merge_ave``
  ablation, which needs no attention probe) and FastAdaSP sparse at layer 1,
  each under ``Budget(flops=0.5)``; the reducer is installed around each
  timed ``encode`` (installing is not timed) with ``profile=True``, which
  accumulates the matching and merging time (``machinery_s``).

The ideal speed-up ``1 / (1 - realised)`` comes from the analytic FLOPs of
the encoder layer stack only; the convolutional front end (two convs over
3000 mel frames) and the final layer norm are outside it and not reduced.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from fastadasp.data.demo_set import demo_samples
from fastadasp.engine import Budget, TokenReducer, attention_with_received
from fastadasp.models.whisper import WHISPER_ENCODER_LAYOUT, WhisperModel
from fastadasp.reduction import FastAdaSPDense, FastAdaSPSparse

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _variants() -> list[tuple[str, object | None]]:
    return [
        ("full", None),
        ("FastAdaSP dense constant, weighted", FastAdaSPDense(schedule="constant", weighted=True)),
        ("FastAdaSP dense constant, unweighted (merge_ave)", FastAdaSPDense(schedule="constant", weighted=False)),
        ("FastAdaSP sparse, layer 1, weighted", FastAdaSPSparse(layer=1, weighted=True)),
    ]


def bench_encoder(model: WhisperModel, features: list[torch.Tensor], flops: float, repeats: int, warmup: int) -> list[dict]:
    variants = _variants()
    budget = Budget(flops=flops)
    times: dict[str, list[float]] = {name: [] for name, _ in variants}  # per repetition: mean s per utterance
    machinery: dict[str, list[float]] = {name: [] for name, _ in variants}
    realised: dict[str, list[float]] = {name: [] for name, _ in variants}

    def once(method, feats: torch.Tensor, key: str) -> tuple[float, float, float]:
        if method is None:
            t0 = time.perf_counter()
            model.encode(feats)
            return time.perf_counter() - t0, 0.0, 0.0
        reducer = TokenReducer(model.blocks, WHISPER_ENCODER_LAYOUT, method, model.stack_spec, budget, profile=True)
        with reducer:
            t0 = time.perf_counter()
            _, _, real, _ = model.encode(feats, reducer, [key])
            elapsed = time.perf_counter() - t0
        return elapsed, reducer.machinery_s, real[0]

    for rep in range(warmup + repeats):
        shift = rep % len(variants)
        order = variants[shift:] + variants[:shift]
        acc = {name: [0.0, 0.0, 0.0] for name, _ in variants}
        for i, feats in enumerate(features):
            for name, method in order:
                t, m, r = once(method, feats, f"utt{i}")
                acc[name][0] += t
                acc[name][1] += m
                acc[name][2] += r
        if rep < warmup:
            continue
        n = len(features)
        for name, _ in variants:
            times[name].append(acc[name][0] / n)
            machinery[name].append(acc[name][1] / n)
            realised[name].append(acc[name][2] / n)

    full_med = statistics.median(times["full"])
    rows = []
    for name, method in variants:
        med = statistics.median(times[name])
        real = statistics.fmean(realised[name])
        paired = statistics.median(f / t for f, t in zip(times["full"], times[name]))
        rows.append(
            {
                "variant": name,
                "method": None if method is None else method.describe(),
                "median_ms": 1000 * med,
                "min_ms": 1000 * min(times[name]),
                "max_ms": 1000 * max(times[name]),
                "speedup": full_med / med,
                "speedup_paired_median": paired,
                "flops_realised": real,
                "ideal_speedup": 1.0 / (1.0 - real),
                "machinery_median_ms": 1000 * statistics.median(machinery[name]),
                "machinery_share_of_full": statistics.median(machinery[name]) / full_med,
                "per_repeat_ms": [1000 * t for t in times[name]],
            }
        )
    return rows


def bench_attention(repeats: int, warmup: int, shape: tuple[int, int, int, int]) -> dict:
    """Chunked exact attention with received mass vs SDPA on one shape, interleaved."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
    scale = shape[-1] ** -0.5
    fns = {
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
        "probed": lambda: attention_with_received(q, k, v, None, scale, False),
    }
    timings: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for rep in range(warmup + repeats):
            order = list(fns) if rep % 2 == 0 else list(fns)[::-1]  # alternate which one goes first
            for name in order:
                t0 = time.perf_counter()
                fns[name]()
                if rep >= warmup:
                    timings[name].append(time.perf_counter() - t0)
        ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        out, received = attention_with_received(q, k, v, None, scale, False)
    s, p = statistics.median(timings["sdpa"]), statistics.median(timings["probed"])
    return {
        "shape": list(shape),
        "sdpa_median_ms": 1000 * s,
        "probed_median_ms": 1000 * p,
        "ratio": p / s,
        "max_abs_diff_vs_sdpa": float((out - ref).abs().max()),
        "received_total": float(received.sum()),  # = B * H * Tq when no query is masked
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data" / "demo_asr"), help="demo set folder (default: %(default)s)")
    parser.add_argument("--utterances", type=int, default=3, help="demo utterances, batch 1 (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first (default: %(default)s)")
    parser.add_argument("--flops", type=float, default=0.5, help="FLOPs-reduction target (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cpu = _cpu_model()
    print(f"CPU: {cpu} | torch {torch.__version__} | torch threads {torch.get_num_threads()}")
    model = WhisperModel()
    samples = demo_samples(args.data, limit=args.utterances)
    features = [model.featurize([s.load_audio(16000)]) for s in samples]
    print(
        f"model: {model.name} | {len(samples)} utterances (batch 1, padded to 30 s = 1500 encoder tokens) | "
        f"{args.repeats} repeats + {args.warmup} warm-up, interleaved | flops target {args.flops}"
    )

    rows = bench_encoder(model, features, args.flops, args.repeats, args.warmup)
    print()
    print("| variant | median ms | speed-up vs full | realised FLOPs reduction | ideal speed-up 1/(1-r) | machinery ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        mach = "-" if r["method"] is None else f"{r['machinery_median_ms']:.2f}"
        print(
            f"| {r['variant']} | {r['median_ms']:.1f} | {r['speedup']:.2f}x | {r['flops_realised']:.3f} | "
            f"{r['ideal_speedup']:.2f}x | {mach} |"
        )
    print()
    print(
        "Speed-up: median full / median variant, measured in this run (median of the per-repeat paired ratios: "
        + ", ".join(f"{r['speedup_paired_median']:.2f}x" for r in rows[1:])
        + "). Ideal speed-up counts the encoder layer stack only; the conv front end and final norm are not reduced."
    )
    weighted = rows[1]
    share = weighted["machinery_share_of_full"]
    print(
        f"Machinery share ({weighted['variant']}): median machinery {weighted['machinery_median_ms']:.2f} ms / "
        f"median full-token encoder {rows[0]['median_ms']:.1f} ms = {100 * share:.2f}% "
        f"(target < 3%: {'met' if share < 0.03 else 'NOT met'})"
    )

    attn = bench_attention(max(args.repeats, 7), max(args.warmup, 1), (1, 6, 1500, 64))
    print(
        f"Probed attention overhead on {tuple(attn['shape'])}: attention_with_received {attn['probed_median_ms']:.2f} ms vs "
        f"SDPA {attn['sdpa_median_ms']:.2f} ms = {attn['ratio']:.2f}x (max |diff| {attn['max_abs_diff_vs_sdpa']:.1e}). "
        "The weighted methods need the attention mass each token receives, which SDPA does not expose, "
        "so the reducing layers run this exact chunked attention instead."
    )

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "cpu": cpu,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "model": model.name,
            "utterances": [s.id for s in samples],
            "repeats": args.repeats,
            "warmup": args.warmup,
            "flops_target": args.flops,
            "encoder": rows,
            "machinery_share": share,
            "attention": attn,
        }
        args.json.write_text(json.dumps(payload, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
