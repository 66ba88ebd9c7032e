"""Write a miniature copy of every supported corpus, in its real layout, into one folder.

    python scripts/build_fixtures.py data/fixtures            # all corpora
    python scripts/build_fixtures.py data/fixtures meld clotho

Prints the run.py overrides that point at each one. `hf` needs the `datasets` package
and is skipped (with a note) without it. Thin wrapper over fastadasp.testing.fixtures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fastadasp.testing import fixtures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"corpora to build (default: all of {', '.join(fixtures.BUILDERS)})")
    parser.add_argument("--long-wav", action="store_true", help="also write long_75s.wav (75 s of speech)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(fixtures.BUILDERS))
    if unknown:
        parser.error(f"unknown corpus {', '.join(unknown)}; choose from {', '.join(fixtures.BUILDERS)}")
    for name in args.names or list(fixtures.BUILDERS):
        start = time.perf_counter()
        try:
            fixture = fixtures.BUILDERS[name](args.out)
        except ModuleNotFoundError as exc:
            print(f"{name}: skipped ({exc.name} is not installed)")
            continue
        print(f"{name}: {fixture.root} ({len(fixture.expected) or '-'} samples, "
              f"{time.perf_counter() - start:.2f} s)\n"
              f"    python run.py task={fixture.task} {' '.join(fixture.overrides())}")
    if args.long_wav:
        path, text = fixtures.build_long_wav(args.out / "long_75s.wav")
        print(f"long wav: {path} ({len(text.split())} words)")


if __name__ == "__main__":
    main()
