"""`make tables`: every metrics.json under results/ (and any run or multirun folder given)
-> results/tables/*.md, *.tex, index.md and results/plots/*.png; optionally to W&B.

    python scripts/make_tables.py [RUN_OR_MULTIRUN_DIR ...] [--results results] [--out results] [--wandb] [--strict]
        [--resamples 1000] [--seed 12345] [--collapse-threshold 90] [--no-intervals] [--cache-dir DIR]

Files are named by the config names a run was composed from (model, task, dataset, cost
model: methods_whisper_tiny_en_asr_demo_dense_analytic.md); tables/index.md lists them
with their captions, which keep the model's source description.

Each cell carries its 95% bootstrap interval over samples, marks where a paired bootstrap
(same samples, same resamples) tells it apart from the full-token baseline (†) or from the
column's best cell (‡), and its count of collapsed samples (c=k), all computed from the runs'
predictions.jsonl (fastadasp.analysis.intervals; each table's legend says how to read them).
Per-sample records are cached by content under --cache-dir (default $FASTADASP_CACHE_DIR or
~/.cache/fastadasp), so a second build recomputes nothing that did not change.

An input file that cannot be read (a truncated metrics.json, a benchmark or
transfer-entropy file without the fields it needs) does not stop the build: every
table that does not need it is written, and each left-out file or table is named
in one line at the end (and in tables/index.md). The exit status is 0 unless
--strict is given, which makes anything left out an error (status 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastadasp.analysis import (
    IntervalSettings,
    RunFileError,
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
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when any input file or table was left out (the tables are still written)")
    parser.add_argument("--wandb", action="store_true", help="log tables and plots to W&B (WANDB_MODE, default offline)")
    parser.add_argument("--wandb-project", default="fastadasp")
    defaults = IntervalSettings()
    parser.add_argument("--resamples", type=int, default=defaults.resamples, help="bootstrap resamples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="bootstrap seed (default %(default)s)")
    parser.add_argument("--collapse-threshold", type=float, default=None,
                        help="percent error rate above which a sample counts as collapsed (default 90)")
    parser.add_argument("--no-intervals", action="store_true", help="cells without intervals, marks or collapse counts")
    parser.add_argument("--cache-dir", type=Path, default=defaults.cache_dir,
                        help="per-sample record cache (default %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the per-sample cache")
    args = parser.parse_args(argv)

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        parser.error(f"no such file or folder: {', '.join(missing)}")
    sources = ([args.results] if args.results.exists() else []) + list(args.paths)
    if not sources:
        parser.error(f"nothing to read: {args.results} does not exist and no folder was given")
    unreadable: list[RunFileError] = []
    runs = collect_runs(sources, skipped=unreadable)
    partial = runs["shard"].notna().sum()
    if partial:
        print(f"left out {partial} single-shard runs (partial evaluations): merge them with "
              "`python -m fastadasp.run.merge SHARD_DIR ... --out DIR` first", file=sys.stderr)
    benchmarks = collect_benchmarks(sources, skipped=unreadable)
    te_files = collect_transfer_entropy(sources, skipped=unreadable)
    refused_tables: list[str] = []
    intervals = False if args.no_intervals else IntervalSettings(
        args.resamples, args.seed, args.collapse_threshold, None if args.no_cache else args.cache_dir)
    tables = build_tables(runs, benchmarks, te_files, include_paper=not args.no_paper, skipped=refused_tables,
                          intervals=intervals)
    left_out = [f"skipped {exc}" for exc in unreadable] + [f"table not built: {why}" for why in refused_tables]
    written = write_tables(tables, args.out, skipped=left_out)
    plots = plot_all(tables, te_files, args.out / "plots")
    print(f"{len(runs)} runs, {len(benchmarks)} benchmark rows, {len(te_files)} TE files -> "
          f"{len(tables)} tables in {args.out / 'tables'} ({len(written)} files), {len(plots)} plots in {args.out / 'plots'}")
    if args.wandb:
        folder = log_wandb(tables, plots, args.out, project=args.wandb_project)
        print(f"W&B run: {folder}")
    if left_out:
        print(f"left out {len(unreadable)} unreadable file(s) and {len(refused_tables)} table(s); every other "
              f"table was written{'' if args.strict else ' (--strict makes this an error)'}:", file=sys.stderr)
        for line in left_out:
            print(f"  {line}", file=sys.stderr)
        return 1 if args.strict else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
