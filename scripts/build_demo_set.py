"""Build an espeak-ng ASR demo set (thin wrapper over fastadasp.data.demo_set):
the 48 short utterances, or with --dense the 16 clips of 20-30 s."""

from __future__ import annotations

import argparse
import time

import soundfile as sf

from fastadasp.data.demo_set import DENSE_MAX_S, build_demo_set, dense_plan
from fastadasp.data.manifest import load_manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="data/demo_asr", help="output folder (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="re-render even if up to date")
    parser.add_argument("--workers", type=int, default=2, help="parallel renders (default: %(default)s)")
    parser.add_argument("--dense", action="store_true", help="the dense-speech set (clips of 20-30 s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    extra = {"plan": dense_plan(), "max_seconds": DENSE_MAX_S} if args.dense else {}
    manifest = build_demo_set(args.out, force=args.force, workers=args.workers, **extra)
    elapsed = time.perf_counter() - start
    samples = load_manifest(manifest)
    seconds = sum(sf.info(str(s.audio_path)).duration for s in samples)
    print(f"{manifest}: {len(samples)} utterances, {seconds:.1f} s of audio, ready in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
