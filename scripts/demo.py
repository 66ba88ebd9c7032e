"""Demo (`make demo`): full tokens vs FastAdaSP on the espeak-ng demo set, Whisper tiny.en.

Everything but the list of runs comes from the Hydra configs in ``configs/``:
the ASR task (prompts, metric, decode limit), each method and its budget are
composed with ``hydra.compose`` and instantiated exactly as ``run.py`` would,
so the task stays data. The model is loaded once and shared by all runs.
Each run writes ``predictions.jsonl``/``metrics.json`` to
``outputs/demo/<label>/``; the summary table goes to stdout and to
``outputs/demo/summary.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fastadasp.data.synthetic.demo_sets import demo_samples
from fastadasp.models.whisper import WhisperModel
from fastadasp.run.runner import Task, evaluate

REPO = Path(__file__).resolve().parents[1]

#: (label, Hydra overrides); the first one is the full-token reference
RUNS: list[tuple[str, list[str]]] = [
    ("full", ["method=none", "flops=0.0"]),
    ("fastadasp_dense_constant_0.2", ["method=fastadasp_dense", "method.schedule=constant", "flops=0.2"]),
    ("fastadasp_dense_constant_0.3", ["method=fastadasp_dense", "method.schedule=constant", "flops=0.3"]),
    ("fastadasp_dense_constant_0.5", ["method=fastadasp_dense", "method.schedule=constant", "flops=0.5"]),
    ("fastadasp_dense_decay_0.5", ["method=fastadasp_dense", "method.schedule=decay", "flops=0.5"]),
    ("random_evict_layer1_0.5", ["method=random_evict", "method.layer=1", "flops=0.5"]),
]


def _schedule(method) -> str:
    if method.name == "none":
        return "-"
    if method.schedule == "single":
        return f"single (layer {method.start_layer})"
    return method.schedule


def _table(rows: list[dict]) -> str:
    head = (
        "| method | schedule | FLOPs target | realised FLOPs (mean) | WER % | Δ WER vs full | "
        "repetition loops | encoder ms/sample |"
    )
    lines = [head, "|" + "---|" * 8]
    full_wer = rows[0]["wer"]
    for r in rows:
        delta = "-" if r is rows[0] else f"{r['wer'] - full_wer:+.2f}"
        lines.append(
            f"| {r['method']} | {r['schedule']} | {r['target']:.2f} | {r['realised']:.3f} | {r['wer']:.2f} | "
            f"{delta} | {r['loops']}/{r['n']} | {r['encoder_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data" / "demo_asr"), help="demo set folder (default: %(default)s)")
    parser.add_argument("--out", default=str(REPO / "outputs" / "demo"), help="output folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N utterances (default: all 48)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=1, help="utterances per forward (default: %(default)s)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    out_root = Path(args.out)
    start = time.perf_counter()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        configs = [(label, compose("config", overrides=overrides)) for label, overrides in RUNS]
    base = configs[0][1]
    task = Task(
        name=base.task.name,
        prompts=OmegaConf.to_container(base.task.prompts),
        metric=instantiate(base.task.metric),
        max_new_tokens=base.task.max_new_tokens,
    )
    model = instantiate(base.model)  # loaded once, shared by all runs
    if not isinstance(model, WhisperModel):
        raise TypeError(f"the demo expects a WhisperModel, the config gave {type(model).__name__}")
    samples = demo_samples(args.data, limit=args.limit)
    print(f"model: {model.name} | {len(samples)} utterances | torch threads {torch.get_num_threads()}")
    model.encode(model.featurize([samples[0].load_audio(16000)]))  # warm-up, so run 1's encoder time is not a cold start

    rows = []
    for label, cfg in configs:
        method, budget = instantiate(cfg.method), instantiate(cfg.cost_model)
        metrics = evaluate(model, task, samples, method, budget, out_root / label, batch_size=args.batch_size)
        rows.append(
            {
                "label": label,
                "method": method.name,
                "schedule": _schedule(method),
                "target": budget.target,
                "realised": metrics["flops_realized"],
                "wer": metrics["metrics"]["wer"],
                "loops": metrics["repetition_loops"],
                "n": metrics["num_samples"],
                "encoder_ms": 1000.0 * metrics["mean_encoder_s"],
            }
        )

    table = _table(rows)
    note = (
        f"WER: corpus WER (%) after the Whisper English normaliser (`normalizer=whisper_en`). "
        f"Data: {len(samples)} of the 48 synthetic espeak-ng utterances of the demo set "
        f"({len({s.extra.get('voice') for s in samples})} voices x {len({s.extra.get('speed') for s in samples})} "
        f"speeds), not a benchmark set. Model: {model.name}, greedy decoding, "
        f"max {task.max_new_tokens} new tokens, batch {args.batch_size}, {torch.get_num_threads()} torch thread(s). "
        f"Encoder ms/sample: wall time of the (reduced) encoder forward on this machine's CPU; "
        f"realised FLOPs: mean analytic FLOPs reduction of the encoder layer stack."
    )
    print()
    print(table)
    print()
    print(note)
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "summary.md").write_text(f"# FastAdaSP demo: Whisper tiny.en\n\n{table}\n\n{note}\n")
    print(f"\nwrote {out_root / 'summary.md'} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
