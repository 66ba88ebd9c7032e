"""Re-score a finished run from its predictions, without a model.

    python -m fastadasp.run.score RUN_DIR [metric.normalizer=paper ...] [--out FILE]

Rebuilds the task from the run's ``settings.json`` (dotlist overrides apply
to the task config, e.g. another normaliser or BLEU tokenizer), parses the
raw predictions again and prints the metric as JSON; ``--out`` also writes it.
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

from .rescoring import load_run, rescore, task_from_settings
from .folder import RunFolderError, lock_holder, unique_rows, write_json_atomic

__all__ = ["main"]

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m fastadasp.run.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="task config overrides, e.g. metric.normalizer=paper")
    parser.add_argument("--out", type=Path, help="also write the scores here (JSON)")
    args = parser.parse_args(argv)
    holder = lock_holder(args.run_dir)
    if holder:
        log.warning("%s is still being written (%s): scoring the rows written so far", args.run_dir, holder)
    settings, rows, _ = load_run(args.run_dir)
    rows = unique_rows(rows, args.run_dir / "predictions.jsonl")
    if not rows:
        raise RunFolderError(f"{args.run_dir} has no predictions to score")
    task = task_from_settings(settings, args.overrides)
    result = {"run_dir": str(args.run_dir), "task": task.name, "overrides": args.overrides,
              "num_samples": len(rows), "metrics": rescore(task, rows)}
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
