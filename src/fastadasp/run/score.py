"""Re-score a finished run from its predictions, without a model.

    python -m fastadasp.run.score RUN_DIR [metric.normalizer=paper ...] [--out FILE]
        [--resamples N] [--seed S] [--collapse-threshold PERCENT]

Rebuilds the task from the run's ``settings.json`` (dotlist overrides apply
to the task config, e.g. another normaliser or BLEU tokenizer), parses the
raw predictions again and prints the metric as JSON, with its 95% bootstrap
interval over samples and the collapsed samples (as ``metrics.json`` has them);
``--out`` also writes it.
``metrics.json`` is never modified. Each id counts once, even in a folder that
two processes once wrote into (warned); a folder a run is still writing is
scored as far as it goes (warned).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..metrics.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED
from .rescoring import load_run, reparse, task_from_settings
from .folder import RunFolderError, lock_holder, unique_rows, write_json_atomic

__all__ = ["main"]

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m fastadasp.run.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="task config overrides, e.g. metric.normalizer=paper")
    parser.add_argument("--out", type=Path, help="also write the scores here (JSON)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed (default %(default)s)")
    parser.add_argument("--collapse-threshold", type=float, default=None,
                        help="percent error rate above which a sample collapsed (default 90)")
    args = parser.parse_args(argv)
    holder = lock_holder(args.run_dir)
    if holder:
        log.warning("%s is still being written (%s): scoring the rows written so far", args.run_dir, holder)
    settings, rows, _ = load_run(args.run_dir)
    rows = unique_rows(rows, args.run_dir / "predictions.jsonl")
    if not rows:
        raise RunFolderError(f"{args.run_dir} has no predictions to score")
    task = task_from_settings(settings, args.overrides)
    from .runner import summarize

    summary = summarize(reparse(task, rows), [], task, resamples=args.resamples, seed=args.seed,
                        collapse_threshold=args.collapse_threshold)
    result = {"run_dir": str(args.run_dir), "task": task.name, "overrides": args.overrides,
              "num_samples": len(rows), "metrics": summary["metrics"],
              **{k: v for k, v in summary.items()
                 if k in ("metrics_interval", "collapses") or k.endswith("_without_collapses")}}
    if args.out:
        write_json_atomic(args.out, result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        print(json.dumps(main(), indent=1, default=str))
    except (RunFolderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
