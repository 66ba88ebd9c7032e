"""Build the espeak-ng evaluation sets (thin wrapper over fastadasp.data.synthetic):

  demo_asr                the 48 short utterances (default)
  demo_dense              16 clips of 20-30 s (also: --dense)
  demo_dense_large        63 English clips of 20-28 s, 8 voices x 3 speeds (issue 18)
  demo_dense_large_noisy  the same clips with pink noise at 10 dB SNR (builds demo_dense_large first)
  demo_multilingual       de/es/fr/it/pt, --language and --form (default: every language, both forms)
  demo_lid                the five languages pooled for language identification (--form; default both)
  all                     every set above, each into its default folder under --data-root (make data)

A set goes into its default folder under --data-root (data/<set>, multilingual:
data/demo_multilingual_<language>_<form>) unless --out names one. The builder writes only
into a new or empty folder, or one it built before (it leaves a stamp file there); a folder
holding other files is refused, never cleaned. A set already built is not rendered again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import soundfile as sf

from fastadasp.data.manifest import load_manifest
from fastadasp.data.synthetic import evaluation_sets as sets
from fastadasp.data.synthetic.demo_sets import DENSE_MAX_S, DemoFolderError, build_demo_set, dense_plan
from fastadasp.data.synthetic.speech import VoiceError

SETS = ("demo_asr", "demo_dense", "demo_dense_large", "demo_dense_large_noisy", "demo_multilingual", "demo_lid")


def _jobs(args: argparse.Namespace) -> list[tuple[str, Path, Callable[[Path], Path]]]:
    """(name, folder, build) of every set the arguments ask for, in build order."""
    root, workers, force = Path(args.data_root), args.workers, args.force
    languages = [args.language] if args.language else list(sets.LANGUAGES)
    forms = [args.form] if args.form else list(sets.FORMS)
    chosen = SETS if args.set == "all" else (args.set,)
    jobs: list[tuple[str, Path, Callable[[Path], Path]]] = []
    for name in chosen:
        if name == "demo_asr":
            jobs.append((name, root / "demo_asr", lambda out: build_demo_set(out, force=force, workers=workers)))
        elif name == "demo_dense":
            jobs.append((name, root / "demo_dense", lambda out: build_demo_set(
                out, force=force, workers=workers, plan=dense_plan(), max_seconds=DENSE_MAX_S, set_name="demo_dense")))
        elif name == "demo_dense_large":
            jobs.append((name, root / name, lambda out: sets.build_dense_large(out, force=force, workers=workers)))
        elif name == "demo_dense_large_noisy":
            clean = root / "demo_dense_large"  # built first (at once when it is up to date)
            jobs.append((name, root / name, lambda out, clean=clean: sets.build_dense_large_noisy(
                out, sets.build_dense_large(clean, workers=workers).parent, force=force, workers=workers)))
        elif name == "demo_multilingual":
            for language in languages:
                for form in forms:
                    jobs.append((f"{name} {language} {form}", root / f"demo_multilingual_{language}_{form}",
                                 lambda out, language=language, form=form: sets.build_multilingual(
                                     out, language, form, force=force, workers=workers)))
        elif name == "demo_lid":
            for form in forms:
                jobs.append((f"{name} {form}", root / f"demo_lid_{form}",
                             lambda out, form=form: sets.build_lid(out, form, force=force, workers=workers)))
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=(*SETS, "all"), default=None, help="which set (default: demo_asr)")
    parser.add_argument("--dense", action="store_true", help="same as --set demo_dense")
    parser.add_argument("--out", default=None,
                        help="output folder of a single set: new, empty or built here before "
                             "(default: its folder under --data-root)")
    parser.add_argument("--data-root", default="data", help="where sets go by default (default: %(default)s)")
    parser.add_argument("--language", choices=sets.LANGUAGES, default=None, help="demo_multilingual: one language")
    parser.add_argument("--form", choices=sets.FORMS, default=None, help="demo_multilingual / demo_lid: one form")
    parser.add_argument("--force", action="store_true", help="re-render even if up to date")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="parallel renders (default: %(default)s, the CPU count)")
    args = parser.parse_args(argv)
    if args.dense and args.set not in (None, "demo_dense"):
        parser.error("--dense is --set demo_dense; give one of them")
    args.set = "demo_dense" if args.dense else (args.set or "demo_asr")
    jobs = _jobs(args)
    if args.out is not None:
        if len(jobs) != 1:
            parser.error(f"--out names one folder but --set {args.set} builds {len(jobs)} sets; "
                         "use --data-root (or --language and --form)")
        jobs = [(jobs[0][0], Path(args.out), jobs[0][2])]
    start_all = time.perf_counter()
    for name, folder, build in jobs:
        start = time.perf_counter()
        try:
            manifest = build(folder)
        except (DemoFolderError, sets.SyntheticSetError, VoiceError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        elapsed = time.perf_counter() - start
        samples = load_manifest(manifest)
        seconds = sum(sf.info(str(s.audio_path)).duration for s in samples)
        print(f"{name}: {manifest}: {len(samples)} utterances, {seconds / 60:.2f} min of audio, ready in {elapsed:.2f} s")
    if len(jobs) > 1:
        print(f"{len(jobs)} sets ready in {time.perf_counter() - start_all:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
