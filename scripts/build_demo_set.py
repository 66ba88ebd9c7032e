"""Build an espeak-ng ASR demo set (thin wrapper over fastadasp.data.synthetic.demo_sets):
the 48 short utterances, or with --dense the 16 clips of 20-30 s.

The builder writes only into a new or empty folder, or one it built before (it
leaves a stamp file there); a folder holding other files is refused, never cleaned.
"""

from __future__ import annotations

import argparse
import sys
import time

import soundfile as sf

from fastadasp.data.synthetic.demo_sets import DENSE_MAX_S, DemoFolderError, build_demo_set, dense_plan
from fastadasp.data.manifest import load_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None,
                        help="output folder: new, empty or built here before (default: data/demo_asr, "
                             "with --dense data/demo_dense)")
    parser.add_argument("--force", action="store_true", help="re-render even if up to date")
    parser.add_argument("--workers", type=int, default=2, help="parallel renders (default: %(default)s)")
    parser.add_argument("--dense", action="store_true", help="the dense-speech set (clips of 20-30 s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    extra = {"plan": dense_plan(), "max_seconds": DENSE_MAX_S, "set_name": "demo_dense"} if args.dense else {}
    out = args.out or ("data/demo_dense" if args.dense else "data/demo_asr")
    try:
        manifest = build_demo_set(out, force=args.force, workers=args.workers, **extra)
    except DemoFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    samples = load_manifest(manifest)
    seconds = sum(sf.info(str(s.audio_path)).duration for s in samples)
    print(f"{manifest}: {len(samples)} utterances, {seconds:.1f} s of audio, ready in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
