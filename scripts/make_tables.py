"""`make tables`: every metrics.json under results/ (and any run or multirun folder given)
-> results/tables/*.md, *.tex, index.md and results/plots/*.png; optionally to W&B.

    python scripts/make_tables.py [RUN_OR_MULTIRUN_DIR ...] [--results results] [--out results] [--wandb]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastadasp.analysis import (
    build_tables,
    collect_benchmarks,
    collect_runs,
    collect_transfer_entropy,
    log_wandb,
    plot_all,
    write_tables,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", type=Path, help="extra run or multirun folders (searched recursively)")
    parser.add_argument("--results", type=Path, default=Path("results"), help="curated results folder (default results)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="writes <out>/tables and <out>/plots")
    parser.add_argument("--no-paper", action="store_true", help="leave out the paper's tables on their own")
    parser.add_argument("--wandb", action="store_true", help="log tables and plots to W&B (WANDB_MODE, default offline)")
    parser.add_argument("--wandb-project", default="fastadasp")
    args = parser.parse_args(argv)

    sources = ([args.results] if args.results.exists() else []) + list(args.paths)
    if not sources:
        parser.error(f"nothing to read: {args.results} does not exist and no folder was given")
    runs = collect_runs(sources)
    partial = runs["shard"].notna().sum()
    if partial:
        print(f"left out {partial} single-shard runs (partial evaluations): merge them with "
              "`python -m fastadasp.merge SHARD_DIR ... --out DIR` first", file=sys.stderr)
    benchmarks = collect_benchmarks(sources)
    te_files = collect_transfer_entropy(sources)
    tables = build_tables(runs, benchmarks, te_files, include_paper=not args.no_paper)
    written = write_tables(tables, args.out)
    plots = plot_all(tables, te_files, args.out / "plots")
    print(f"{len(runs)} runs, {len(benchmarks)} benchmark rows, {len(te_files)} TE files -> "
          f"{len(tables)} tables in {args.out / 'tables'} ({len(written)} files), {len(plots)} plots in {args.out / 'plots'}")
    if args.wandb:
        folder = log_wandb(tables, plots, args.out, project=args.wandb_project)
        print(f"W&B run: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
