"""Encoder speed (`make bench`): Whisper tiny.en and base, full tokens vs FLOPs reduction 0.5, side by side.

    python scripts/benchmark_whisper.py [--models whisper_tiny_en whisper_base] [--repeats 7]

Each model (a ``configs/model/`` name, composed and instantiated as ``run.py`` does) is measured
on its own, all its variants side by side.

All variants run in one process on the same utterances, interleaved: every
repetition times each variant once per utterance (the variant order rotates
between repetitions), so drift and noise on the machine hit all of them alike.
Reported times are medians over repetitions of the mean ms per utterance
(batch 1), with min-max; speed-ups are ratios measured in this run.

- full: ``WhisperModel.encode(features)``, the stock layers, SDPA attention.
- FastAdaSP dense constant, weighted / unweighted (the ``merge_ave``
  ablation, which needs no received attention) and FastAdaSP sparse at
  layer 1, each under ``Budget(flops=0.5)``; the reducer is installed around
  each timed ``encode`` (installing is not timed) with ``profile=True``, which
  accumulates the matching and merging time (``machinery_s``).

The ideal speed-up ``1 / (1 - realised)`` comes from the analytic FLOPs of
the encoder layer stack only; the convolutional front end (two convs over
3000 mel frames) and the final layer norm are outside it and not reduced.
The attention micro-benchmark compares SDPA with the two ways the weighted
methods get the received attention: the chunked exact probe
(``attention_with_received``, any device) and the fused kernel with
log-sum-exp plus the grouped keys' mass (``attention_with_lse``, CPU).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from fastadasp.run.benchmarking import clock, device_name, interleaved, markdown_table, micro_ms, spread, write_json
from fastadasp.data.synthetic.demo_sets import demo_samples
from fastadasp.engine import Budget, TokenReducer, attention_with_received
from fastadasp.engine.attention import attention_with_lse
from fastadasp.models.whisper import WHISPER_ENCODER_LAYOUT, WhisperModel
from fastadasp.reduction import FastAdaSPDense, FastAdaSPSparse
from fastadasp.run.op_count import OP_COUNT_COLUMNS, count_encoder_layers, op_count_rows

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "full": None,
    "FastAdaSP dense constant, weighted": FastAdaSPDense(schedule="constant", weighted=True),
    "FastAdaSP dense constant, unweighted (merge_ave)": FastAdaSPDense(schedule="constant", weighted=False),
    "FastAdaSP sparse, layer 1, weighted": FastAdaSPSparse(layer=1, weighted=True),
}


def encode_all(model: WhisperModel, features: list[torch.Tensor], method, flops: float) -> dict:
    """Mean seconds per utterance (and machinery, realised FLOPs) of one pass over ``features``."""
    total = machinery = realised = 0.0
    for i, feats in enumerate(features):
        if method is None:
            t0 = clock()
            model.encode(feats)
            total += clock() - t0
            continue
        reducer = TokenReducer(model.blocks, WHISPER_ENCODER_LAYOUT, method, model.stack_spec, Budget(flops),
                               profile=True)
        with reducer:
            t0 = clock()
            _, _, real, _ = model.encode(feats, reducer, [f"utt{i}"])
            total += clock() - t0
        machinery += reducer.machinery_s
        realised += real[0]
    n = len(features)
    return {"s": total / n, "machinery_s": machinery / n, "realised": realised / n}


def bench_encoder(model, features, flops: float, repeats: int, warmup: int) -> list[dict]:
    runs = interleaved({name: (lambda m=m: encode_all(model, features, m, flops)) for name, m in VARIANTS.items()},
                       repeats, warmup)
    full = [r["s"] for r in runs["full"]]
    rows = []
    for name, method in VARIANTS.items():
        times = [r["s"] for r in runs[name]]
        real = statistics.fmean(r["realised"] for r in runs[name])
        machinery = statistics.median(r["machinery_s"] for r in runs[name])
        rows.append({
            "variant": name,
            "method": None if method is None else method.describe(),
            "median_ms": 1000 * statistics.median(times),
            "min_ms": 1000 * min(times),
            "max_ms": 1000 * max(times),
            "speedup": statistics.median(full) / statistics.median(times),
            "speedup_paired": spread([f / t for f, t in zip(full, times)]),
            "flops_realised": real,
            "ideal_speedup": 1.0 / (1.0 - real),
            "machinery_median_ms": 1000 * machinery,
            "machinery_share_of_full": machinery / statistics.median(full),
            "per_repeat_ms": [1000 * t for t in times],
        })
    return rows


def bench_attention(shape: tuple[int, int, int, int], grouped_fraction: float = 0.36) -> dict:
    """SDPA vs the two received-attention paths on one shape (``torch.utils.benchmark``);
    ``grouped_fraction``: keys in merge groups (35-41% at tiny.en's layers on the demo set)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
    scale = shape[-1] ** -0.5
    t = shape[2]
    columns = torch.randperm(t, generator=g)[: int(grouped_fraction * t)].sort().values[None].expand(shape[0], -1)

    def lse_path():
        _, deferred = attention_with_lse(q, k, v, None, scale, False)
        return deferred.at(columns)

    with torch.inference_mode():
        ms = {
            "sdpa": micro_ms(lambda: F.scaled_dot_product_attention(q, k, v)),
            "probe": micro_ms(lambda: attention_with_received(q, k, v, None, scale, False)),
            "lse_grouped": micro_ms(lse_path),
        }
        ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        out, received = attention_with_received(q, k, v, None, scale, False)
        diff = float((lse_path() - received.gather(1, columns)).abs().max() / received.abs().max())
    return {"shape": list(shape), "grouped_fraction": grouped_fraction, **{f"{k}_ms": v for k, v in ms.items()},
            "probe_over_sdpa": ms["probe"] / ms["sdpa"], "lse_grouped_over_sdpa": ms["lse_grouped"] / ms["sdpa"],
            "max_abs_diff_probe_vs_sdpa": float((out - ref).abs().max()), "max_rel_diff_lse_vs_probe": diff}


@torch.inference_mode()
def op_counts(model: WhisperModel, features: list[torch.Tensor], flops: float) -> list[dict]:
    """FastAdaSP dense weighted and unweighted on the encoder's layers, as a GPU runs
    them (:mod:`fastadasp.run.op_count`), from the hidden states of the first
    utterances' front end (convolutions and positions): batch 1, and a batch of 2
    whose second row is padding after 1000 tokens."""
    enc = model.model.model.encoder
    feats = torch.cat([features[0], features[min(1, len(features) - 1)]])
    x = torch.nn.functional.gelu(enc.conv2(torch.nn.functional.gelu(enc.conv1(feats)))).permute(0, 2, 1)
    x = x + enc.embed_positions.weight[: x.shape[1]]
    valid = torch.arange(x.shape[1])[None] < torch.tensor([[x.shape[1]], [1000]])
    methods = {name: VARIANTS[name] for name in ("FastAdaSP dense constant, weighted",
                                                   "FastAdaSP dense constant, unweighted (merge_ave)")}

    def count(method, padded):
        hidden, rows = (x, valid) if padded else (x[:1], None)
        return count_encoder_layers(model.blocks, WHISPER_ENCODER_LAYOUT, model.stack_spec, method, flops, hidden, rows)

    return op_count_rows(count, methods)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["whisper_tiny_en", "whisper_base"],
                        help="configs/model/ names of Whisper models (default: %(default)s)")
    parser.add_argument("--data", default=str(REPO / "data" / "demo_asr"), help="demo set folder (default: %(default)s)")
    parser.add_argument("--utterances", type=int, default=3, help="demo utterances, batch 1 (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first (default: %(default)s)")
    parser.add_argument("--flops", type=float, default=0.5, help="FLOPs-reduction target (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--op-count", action="store_true",
                        help="instead of timing: count the aten operators of one reduced encoder forward on a GPU's "
                        "path (no size read, the GPU's mass chunking), per reducing layer beyond the stock layer's, by "
                        "category, weighted and unweighted, batch 1 and a padded batch of 2 (the second row 1000 of "
                        "1500 tokens)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    samples = demo_samples(args.data, limit=args.utterances)
    results = {}
    for name in args.models:
        results[name] = bench_model(load_model(name), samples, args)
    if args.json:
        first = results[args.models[0]]  # the earlier single-model keys: the first model's
        write_json(args.json, {**first, "models": results})
        print(f"wrote {args.json}")
    return 0


def load_model(name: str) -> WhisperModel:
    """``configs/model/<name>.yaml`` instantiated as ``run.py`` does."""
    from hydra import compose, initialize_config_dir

    from fastadasp.run.instantiate import instantiate

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        node = compose("config", overrides=[f"model={name}"]).model
    model = instantiate(node)
    if not isinstance(model, WhisperModel):
        raise SystemExit(f"--models {name}: not a Whisper model ({type(model).__name__})")
    return model


def bench_model(model: WhisperModel, samples: list, args: argparse.Namespace) -> dict:
    """One model's table (or operator counts), printed; its numbers returned."""
    features = [model.featurize([s.load_audio(16000)]) for s in samples]
    print(f"{device_name()} | torch {torch.__version__} | {model.name} | {len(samples)} utterances (batch 1, padded "
          f"to 30 s = 1500 encoder tokens) | {args.repeats} repeats + {args.warmup} warm-up, interleaved | "
          f"flops {args.flops}\n")
    if args.op_count:
        rows = op_counts(model, features, args.flops)
        print(f"Operators per reducing layer (a GPU's path, counted on {device_name()})\n")
        print(markdown_table([{k: v for k, v in r.items() if k != "layers"} for r in rows], OP_COUNT_COLUMNS, ".3g"))
        return {"device": device_name(), "torch": torch.__version__, "model": model.name,
                "flops_target": args.flops, "op_count": rows}
    with torch.inference_mode():
        rows = bench_encoder(model, features, args.flops, args.repeats, args.warmup)
    table = [r | {"paired": f"{r['speedup_paired']['min']:.2f}-{r['speedup_paired']['max']:.2f}x",
                  "range": f"{r['min_ms']:.0f}-{r['max_ms']:.0f}",
                  "machinery": "-" if r["method"] is None else f"{r['machinery_median_ms']:.1f} "
                  f"({100 * r['machinery_share_of_full']:.2f}%)"} for r in rows]
    print(markdown_table(table, {"variant": "variant", "median_ms": "median ms", "range": "min-max ms",
                                 "speedup": "speed-up", "paired": "paired speed-ups", "flops_realised": "realised FLOPs",
                                 "ideal_speedup": "ideal", "machinery": "machinery ms (share of full)"}, ".3g"))
    attn = bench_attention((1, model.stack_spec.num_heads, 1500, model.stack_spec.head_dim))
    print(f"\nAttention on {tuple(attn['shape'])}: SDPA {attn['sdpa_ms']:.1f} ms, chunked probe "
          f"{attn['probe_ms']:.1f} ms ({attn['probe_over_sdpa']:.2f}x), fused kernel + log-sum-exp + {attn['grouped_fraction']:.0%} of the keys' "
          f"mass {attn['lse_grouped_ms']:.1f} ms ({attn['lse_grouped_over_sdpa']:.2f}x); max relative difference of "
          f"the two masses {attn['max_rel_diff_lse_vs_probe']:.1e}.")
    print()
    return {"device": device_name(), "torch": torch.__version__, "model": model.name,
            "utterances": [s.id for s in samples], "repeats": args.repeats, "warmup": args.warmup,
            "flops_target": args.flops, "encoder": rows, "machinery_share": rows[1]["machinery_share_of_full"],
            "attention": attn}


if __name__ == "__main__":
    raise SystemExit(main())
