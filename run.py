"""Hydra entry point: `python run.py method=fastadasp_dense flops=0.3` (see configs/).

Expected errors (a bad config value, method setting, manifest, corpus or audio
file, an infeasible budget, a device this torch cannot use, an output folder
that holds results or cannot be written, a run in which no sample could be
evaluated: ``fastadasp.run.runner.EXPECTED_ERRORS``) print one line naming the
cause to stderr (and to the run's log file) and exit with status 2.
`HYDRA_FULL_ERROR=1` shows the full traceback instead.

Before a multirun starts, every job of the sweep is checked without loading a
model (``fastadasp.run.preflight``, a Hydra callback): all bad jobs are reported,
one line each, and no job starts (exit 2). A job that still fails while the
sweep runs is logged and recorded, the other jobs still run, and the sweep
exits non-zero at the end.

The earlier ``budget`` group is now ``cost_model`` (``analytic``, was ``flops``;
``token_layer``, was ``paper``): ``budget=...`` and ``budget.<key>=...`` still
work, rewritten with a one-line warning on stderr naming today's spelling.
"""

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fastadasp.run.config import (  # also registers the typed top-level schema
    ConfigError,
    check_overrides,
    rewrite_deprecated_overrides,
)


def _to_run_log(message: str, exc_info=None) -> None:
    """``message`` (and a traceback) in Hydra's run.log only: the console already
    shows them (Hydra and Python print tracebacks to stderr, never to the log)."""
    record = logging.LogRecord("fastadasp", logging.ERROR, __file__, 0, message, None, exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            handler.flush()


def _fail(message: str) -> None:
    """One line on stderr, and the same line in Hydra's run.log when there is one."""
    _to_run_log(message)
    print(message, file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def run(cfg: DictConfig) -> float | None:
    from fastadasp.run.runner import EXPECTED_ERRORS, main

    try:
        metrics = main(cfg)
    except EXPECTED_ERRORS as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # Hydra records the failed job, runs the rest of the sweep, then exits non-zero
            logging.getLogger("fastadasp").error("error: %s", exc)
            raise
        _fail(f"error: {exc}")
    except BaseException as exc:  # a traceback or an interruption (Ctrl-C): run.log gets it too
        if not (isinstance(exc, SystemExit) and exc.code in (0, None)):
            _to_run_log(f"run stopped: {type(exc).__name__}: {exc}", sys.exc_info())
        raise
    value = metrics["metrics"].get(metrics.get("primary_metric"))
    return value if isinstance(value, (int, float)) else None


if __name__ == "__main__":
    try:
        # earlier spellings (budget=flops|paper, budget.search=...) become today's before Hydra reads argv
        sys.argv[1:], renamed = rewrite_deprecated_overrides(sys.argv[1:])
        check_overrides(sys.argv[1:])
    except ConfigError as exc:
        _fail(f"error: {exc}")
    for line in renamed:
        print(line, file=sys.stderr)
    run()
