"""Checks before Hydra starts anything: the output folder, and every job of a sweep.

:class:`Preflight` is a Hydra callback (registered in ``configs/config.yaml``
under ``hydra.callbacks``), so it runs in the process that the user started,
before any job, whatever the launcher (basic, ``local``/``slurm`` through
submitit, ``parallel`` through joblib):

- ``on_run_start``: ``hydra.run.dir`` must be a folder this process can create
  and write (Hydra would otherwise fail creating it with a traceback);
- ``on_multirun_start``: the same for ``hydra.sweep.dir``; then every job of
  the sweep is expanded as Hydra's basic sweeper expands it, composed as the
  launcher composes it, and checked with :func:`fastadasp.run.runner.prepare`
  (top-level settings, method and budget settings, the device, the method
  against the model's stack and the budget's feasibility from the model's
  config, the dataset: each distinct dataset config is loaded once) and its
  output folder (results already there without ``resume``/``overwrite``). No
  weights load. Every bad job is reported, one line each, and the sweep stops
  (exit 2) before the first job starts.

Hydra turns an exception raised by a callback into a warning and goes on, so a
refusal here prints its lines and exits with ``SystemExit(2)``. With
``HYDRA_FULL_ERROR=1`` each bad job's traceback is printed too.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

__all__ = ["Preflight", "folder_problem", "expand_sweep", "check_jobs"]

_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _refuse(lines: list[str], errors: list[BaseException] = ()) -> None:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        for exc in errors:
            traceback.print_exception(exc, file=sys.stderr)
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(2)


def folder_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be an output folder (``None`` when it can): it, or a
    folder above it, is a file; it cannot be created; it is not writable. The
    folder is created, as Hydra would create it next."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    above = folder
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        return f"{above} is a file, so no folder can be created under it"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return f"{folder} cannot be {'written' if folder.is_dir() else 'created'} ({exc.strerror or exc})"
    return None


def _resolved(config: DictConfig, key: str) -> str:
    """``config``'s ``key`` resolved with ``config`` as the Hydra config (``${hydra:...}``)."""
    from hydra.core.hydra_config import HydraConfig

    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(config)
    try:
        return str(OmegaConf.select(config, key))
    finally:
        HydraConfig.instance().cfg = saved


def _check_folder(config: DictConfig, key: str) -> None:
    from omegaconf.errors import OmegaConfBaseException

    try:
        path = _resolved(config, key)
    except OmegaConfBaseException:  # an interpolation Hydra fails on too, with its own message
        return
    problem = folder_problem(path)
    if problem:
        _refuse([f"error: {key}={path} cannot hold the run's output: {problem}; choose another {key}"])


def expand_sweep(config: DictConfig) -> list[list[str]] | None:
    """The override list of every job, in Hydra's job order, as the basic sweeper
    expands them (``hydra.sweeper.params`` then the command line's overrides,
    cartesian product); ``None`` for another sweeper (its jobs are not known up front)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if OmegaConf.select(config, "hydra.sweeper._target_") != _BASIC_SWEEPER:
        return None
    params = OmegaConf.to_container(config.hydra.sweeper.params, resolve=False) if config.hydra.sweeper.params else {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return [list(job) for batch in BasicSweeper.split_arguments(parser.parse_overrides(arguments), None)
            for job in batch]


def _one_line(exc: BaseException) -> str:
    from .runner import EXPECTED_ERRORS

    text = " ".join(str(exc).split())
    return text if isinstance(exc, EXPECTED_ERRORS) and text else f"{type(exc).__name__}: {text}"


def _job_output_dir(job: DictConfig, num: int) -> str:
    from omegaconf import open_dict, read_write

    with read_write(job.hydra.job), open_dict(job.hydra.job):
        job.hydra.job.num, job.hydra.job.id = num, num  # what the launcher sets
    return os.path.join(_resolved(job, "hydra.sweep.dir"), _resolved(job, "hydra.sweep.subdir"))


def check_jobs(config: DictConfig, jobs: list[list[str]]) -> list[tuple[int, list[str], BaseException]]:
    """``(job number, overrides, error)`` of every job that would stop before
    decoding; each job composed as the launcher composes it. No weights load; a
    dataset is loaded once per distinct dataset config."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from omegaconf import open_dict, read_write

    from .config import ConfigError
    from .folder import RunFolder
    from .runner import EXPECTED_ERRORS, prepare

    loader = GlobalHydra.instance().config_loader()
    datasets: dict = {}
    bad = []
    saved = HydraConfig.instance().cfg
    try:
        for num, overrides in enumerate(jobs):
            try:
                job = loader.load_sweep_config(config, list(overrides))
                out = _job_output_dir(job, num)
                HydraConfig.instance().set_config(job)
                task_cfg = copy.deepcopy(job)  # what the job's task function gets (run_job)
                with read_write(task_cfg), open_dict(task_cfg):
                    del task_cfg["hydra"]
                plan = prepare(task_cfg, job.hydra.runtime.choices.get("dataset"), datasets)
                if not (plan.settings.resume or plan.settings.overwrite) and RunFolder(out).holds_results():
                    raise ConfigError(f"{out} already holds results; add resume=true to continue them or "
                                      f"overwrite=true to replace them, or choose another hydra.sweep.dir")
            except (*EXPECTED_ERRORS, HydraException, OmegaConfBaseException) as exc:
                bad.append((num, overrides, exc))
            except Exception as exc:  # noqa: BLE001  the job runs the same code first: it would stop here too
                exc.add_note("(an unexpected error: the job itself would stop with this traceback)")
                bad.append((num, overrides, exc))
    finally:
        HydraConfig.instance().cfg = saved
    return bad


class Preflight(Callback):
    """The Hydra callback of this module (see its docstring)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_folder(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import logging

        _check_folder(config, "hydra.sweep.dir")
        jobs = expand_sweep(config)
        log = logging.getLogger("fastadasp.run.preflight")
        if jobs is None:
            log.info("sweeper %s: jobs are not known before they start; each job checks itself",
                     OmegaConf.select(config, "hydra.sweeper._target_"))
            return
        start = time.perf_counter()
        bad = check_jobs(config, jobs)
        if not bad:
            log.info("checked the %d jobs of this sweep in %.1f s", len(jobs), time.perf_counter() - start)
            return
        lines = [f"error: job #{num} ({' '.join(overrides) or 'no overrides'}): {_one_line(exc)}"
                 for num, overrides, exc in bad]
        lines.append(f"error: {len(bad)} of {len(jobs)} jobs of this sweep would fail; no job was started "
                     f"(fix or drop them and run the sweep again)")
        _refuse(lines, [exc for _, _, exc in bad])
