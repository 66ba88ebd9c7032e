"""Build the espeak-ng ASR demo set (thin wrapper over fastadasp.data.demo_set)."""

from __future__ import annotations

import argparse
import time

import soundfile as sf

from fastadasp.data.demo_set import build_demo_set
from fastadasp.data.manifest import load_manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="data/demo_asr", help="output folder (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="re-render even if up to date")
    parser.add_argument("--workers", type=int, default=2, help="parallel renders (default: %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    manifest = build_demo_set(args.out, force=args.force, workers=args.workers)
    elapsed = time.perf_counter() - start
    samples = load_manifest(manifest)
    seconds = sum(sf.info(str(s.audio_path)).duration for s in samples)
    print(f"{manifest}: {len(samples)} utterances, {seconds:.1f} s of audio, ready in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
