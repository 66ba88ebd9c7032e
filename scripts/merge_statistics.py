"""What each merge method does to a Whisper encoder's tokens on the demo sets.

    python scripts/merge_statistics.py [--model whisper_tiny_en] [--dataset demo_dense] [--flops 0.5] [--limit 8]
    python scripts/merge_statistics.py --model whisper_base --layer 2 --dataset demo_dense_large --limit 16

The rows compare tiny.en (4 encoder layers) with base (6 layers) at the same FLOPs
target: ``kept per layer`` is each reducing layer's output over its input tokens
(how hard every layer cuts), the group statistics say how long the merged chains
grow. Bounded rows (``max_group_size``) cap the chains.

For every method it composes the per-layer reductions of the engine into one map
from the 1,500 input positions to the final tokens and reports how many input
tokens a final token stands for (mean over speech-bearing tokens, maximum), how
many final tokens mix speech with padding silence, and which share of the
removed tokens were padding (positions after the end of the audio). This is the
evidence behind the method ordering discussed in results/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch
from hydra import compose, initialize_config_dir
from tabulate import tabulate

from fastadasp.run.config import ConfigError  # noqa: F401  (registers the schema for compose)
from fastadasp.run.datasets import load_dataset
from fastadasp.engine import Budget
from fastadasp.run.instantiate import instantiate
from fastadasp.models.whisper import WhisperModel

METHODS = {
    "FastAdaSP dense constant": ("fastadasp_dense", []),
    "FastAdaSP dense constant, plain mean": ("fastadasp_dense", ["method.weighted=false"]),
    "FastAdaSP dense constant, max group 4": ("fastadasp_dense", ["method.max_group_size=4"]),
    "FastAdaSP dense decay": ("fastadasp_dense", ["method.schedule=decay"]),
    "A-ToMe (capped)": ("atome", []),
    "FastAdaSP sparse (layer {layer})": ("fastadasp_sparse", ["method.layer={layer}"]),
}
FRAMES_PER_S = 50  # Whisper encoder positions per second of audio


def compose_cfg(*overrides: str):
    from pathlib import Path

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def capture_states(reducer):
    """Keep a reference to each forward's ReductionState (the engine's own record)."""
    states, original = [], reducer.forward_state

    @contextlib.contextmanager
    def spy(*args, **kwargs):
        with original(*args, **kwargs) as state:
            states.append(state)
            yield state

    reducer.forward_state = spy
    return states


def composition(state, speech: torch.Tensor) -> dict:
    """Input tokens and speech tokens per final token, through every layer's reduction."""
    count = torch.ones_like(speech, dtype=torch.float64)
    voiced = speech.to(torch.float64)
    kept = []
    for layer in sorted(state.reductions):
        red = state.reductions[layer]
        slots = red.num_out + 1  # the last slot collects dropped tokens
        kept.append(f"L{layer} {red.num_out / count.shape[1]:.2f}")
        count = torch.zeros(count.shape[0], slots, dtype=torch.float64).scatter_add_(1, red.dest, count)[:, :-1]
        voiced = torch.zeros(voiced.shape[0], slots, dtype=torch.float64).scatter_add_(1, red.dest, voiced)[:, :-1]
    live = count > 0
    has_speech = live & (voiced > 0)
    mixed = has_speech & (voiced < count)
    removed = speech.shape[1] - live.sum(1)
    removed_speech = speech.sum(1) - has_speech.sum(1)
    pure_speech = live & (voiced == count)
    return {
        "kept per layer": " ".join(kept),
        "tokens per speech token": float((count[has_speech]).mean()),
        "largest group": int(count.max()),
        "largest speech group": int(count[pure_speech].max()),
        "speech tokens in groups > 8 %": float(100 * voiced[pure_speech & (count > 8)].sum() / speech.sum()),
        "final tokens mixing speech and padding": int(mixed.sum()),
        "removed tokens that were padding %": float(100 * (1 - removed_speech.sum() / removed.sum().clamp_min(1))),
        "speech share of kept tokens %": float(100 * has_speech.sum() / live.sum()),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="whisper_tiny_en", help="a configs/model/ name (a Whisper model)")
    parser.add_argument("--layer", type=int, default=1, help="the sparse method's layer (its TE selection)")
    parser.add_argument("--dataset", default="demo_dense")
    parser.add_argument("--flops", type=float, default=0.5)
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = compose_cfg(f"model={args.model}", f"dataset={args.dataset}", f"limit={args.limit}", "data_root=data")
    samples, _ = load_dataset(cfg.dataset)
    audios = [s.load_audio(16000) for s in samples]
    durations = [len(a) / 16000 for a in audios]
    speech = torch.zeros(len(audios), 1500, dtype=torch.bool)
    for i, d in enumerate(durations):
        speech[i, : min(1500, int(d * FRAMES_PER_S))] = True
    model = instantiate(cfg.model)
    if not isinstance(model, WhisperModel):
        raise SystemExit(f"--model {args.model}: merge statistics read a Whisper encoder's 1,500 positions")
    rows = []
    for label, (name, extra) in METHODS.items():
        label = label.format(layer=args.layer)
        method = instantiate(compose_cfg(f"method={name}", *(e.format(layer=args.layer) for e in extra)).method)
        with model.reducer(method, Budget(args.flops)) as reducer:
            states = capture_states(reducer)
            _, _, realised, _ = model.encode(model.featurize(audios), reducer, [s.id for s in samples])
        rows.append({"model": args.model, "method": label, "flops realised": sum(realised) / len(realised), **composition(states[0], speech)})
    print(f"{model.name}, {args.dataset}: {len(samples)} clips of {min(durations):.1f}-{max(durations):.1f} s, flops={args.flops}")
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3g"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": model.name, "dataset": args.dataset, "flops": args.flops, "limit": args.limit, "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
