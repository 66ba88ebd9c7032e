"""Hydra entry point: `python run.py method=fastadasp_dense flops=0.3` (see configs/).

Expected errors (a bad config value, manifest or corpus, an infeasible budget,
an output folder that holds results) print one line naming the cause to
stderr (and to the run's log file) and exit with status 2; in a multirun the failed job is logged and recorded, the
other jobs still run, and the sweep exits non-zero at the end.
`HYDRA_FULL_ERROR=1` shows the full traceback instead.
"""

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fastadasp.config import ConfigError, check_overrides  # also registers the typed top-level schema


def _fail(message: str) -> None:
    """One line on stderr, and the same line in Hydra's run.log when there is one."""
    record = logging.LogRecord("fastadasp", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.emit(record)
    print(message, file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def run(cfg: DictConfig) -> float | None:
    from fastadasp.runner import EXPECTED_ERRORS, main

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
    value = metrics["metrics"].get(metrics.get("primary_metric"))
    return value if isinstance(value, (int, float)) else None


if __name__ == "__main__":
    try:
        check_overrides(sys.argv[1:])
    except ConfigError as exc:
        _fail(f"error: {exc}")
    run()
