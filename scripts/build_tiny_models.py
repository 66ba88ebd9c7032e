"""Build the tiny random speech LMs used by tests and offline defaults
(thin wrapper over fastadasp.testing.tiny_models). Their outputs are never results."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fastadasp.testing.tiny_models import TINY_FAMILIES, build_tiny, default_tiny_root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"models to build (default: all of {', '.join(sorted(TINY_FAMILIES))})")
    parser.add_argument("--out", type=Path, default=None,
                        help="parent folder; each model goes to OUT/<name> (default: $FASTADASP_CACHE/tiny, "
                             "i.e. ~/.cache/fastadasp/tiny)")
    parser.add_argument("--seed", type=int, default=0, help="random-init seed (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the folder is complete")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(TINY_FAMILIES))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(sorted(TINY_FAMILIES))}")
    root = args.out if args.out is not None else default_tiny_root()
    for name in args.names or sorted(TINY_FAMILIES):
        start = time.perf_counter()
        folder = build_tiny(name, root / name, seed=args.seed, force=args.force)
        print(f"{name}: {folder} ready in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
