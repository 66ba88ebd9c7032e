"""Export any dataset config to our JSONL manifest (id, audio, text, canonical fields).

    python scripts/export_manifest.py librispeech dataset.root=/data/LibriSpeech --out data/ls_test_clean.jsonl
    python scripts/export_manifest.py meld dataset.root=/data/MELD.Raw --limit 100 --out data/meld100.jsonl

The manifest is what `dataset=manifest dataset.path=...` reads back (and what a task
that needs a fixed, shareable sample list should be given). Audio held only inside a
Hugging Face table is written next to the manifest, under <out stem>_audio/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fastadasp.run.datasets import load_dataset
from omegaconf import OmegaConf

from fastadasp.data.manifest import write_manifest

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "dataset"


def load_samples(name: str, overrides: list[str], limit: int | None, data_root: str) -> list:
    """Instantiate configs/dataset/<name>.yaml with `dataset.key=value` overrides."""
    path = CONFIGS / f"{name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in CONFIGS.glob("*.yaml"))
        raise SystemExit(f"no dataset config {path}; choose from {', '.join(choices)}")
    cfg = OmegaConf.create({"limit": limit, "data_root": data_root, "dataset": OmegaConf.load(path)})
    dotlist = [o if o.startswith("dataset.") else f"dataset.{o}" for o in overrides]
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dotlist))
    return load_dataset(cfg.dataset)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a configs/dataset/<name>.yaml name, e.g. librispeech")
    parser.add_argument("overrides", nargs="*", help="dataset.key=value (e.g. dataset.root=/data/LibriSpeech)")
    parser.add_argument("--out", type=Path, required=True, help="manifest to write (.jsonl)")
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--data-root", default="data", help="value of ${data_root} (default: %(default)s)")
    args = parser.parse_args(argv)
    samples = load_samples(args.dataset, args.overrides, args.limit, args.data_root)
    audio_dir = args.out.with_name(f"{args.out.stem}_audio")
    exported = []
    for sample in samples:
        materialize = getattr(sample, "materialize", None)
        if materialize is not None:  # audio only inside a table: give it a file
            from fastadasp.data.manifest import Sample

            sample = Sample(sample.id, materialize(audio_dir), sample.text, dict(sample.extra))
        exported.append(sample)
    write_manifest(args.out, exported)
    print(f"{args.out}: {len(exported)} samples from dataset={args.dataset}")


if __name__ == "__main__":
    main()
