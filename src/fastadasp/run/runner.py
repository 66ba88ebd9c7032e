"""Evaluate one (model, task, dataset, method, budget) combination.

The runner knows no method, model, task or corpus by name: Hydra instantiates
them from ``configs/`` and the runner calls :meth:`SpeechModel.generate`.

What it guarantees (a 7B evaluation costs GPU hours):

- Every check that can fail runs before the model loads (:func:`prepare`):
  typed top level (:mod:`fastadasp.run.config`), the keys of every config node
  against its target's signature, the method and budget settings, the device,
  the method against the model's reduced stack (``ReductionMethod.validate``)
  and budget feasibility, both from the model's config, the dataset against
  the task's needs, the prompt for the model family, and the output folder
  (:mod:`fastadasp.run.folder`). An adapter that cannot read its stack's
  shapes without loading gets the method check right after loading, before
  anything in the run folder changes. A sweep runs :func:`prepare` for every
  job before the first starts (:mod:`fastadasp.run.preflight`).
- Predictions are appended as they finish; ``resume=true`` continues a run
  only if its identity (everything that can change a prediction) is equal,
  and never counts rows for samples outside the current sample set.
- A sample whose audio is missing, unreadable, empty or not finite is a
  recorded failure with its reason; any other error stops the run.
- ``metrics.json`` is self-describing (resolved config, dataset identity,
  versions, git commit, device, timings) and written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import ConfigError, RunSettings, validate
from ..data.manifest import Sample, read_audios
from .instantiate import instantiate
from ..models.base import SpeechModel
from .provenance import environment, resolved_config
from ..reduction import Budget, ReductionMethod
from ..reduction.budget import TokenLayout
from ..reduction.flops import StackSpec
from .folder import RunFolder, dataset_fingerprint
from ..tasks.definition import Task, sample_fields

__all__ = ["Task", "evaluate", "main", "prepare", "Plan", "summarize", "ModelCache", "MODEL_CACHE", "EXPECTED_ERRORS",
           "NothingEvaluatedError"]

logger = logging.getLogger("fastadasp.run.runner")

#: keys of a prediction row that are per-sample costs, not averaged as ``mean_<key>``
_ROW_NON_COSTS = {"flops_realized", "index"}


def _batches(items: Sequence[Sample], size: int) -> list[Sequence[Sample]]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Progress:
    """tqdm on a terminal (ETA, samples/s, failures, audio tokens kept);
    otherwise a log line every ``every`` samples, so ``run.log`` tells the story."""

    def __init__(self, total: int, done: int, every: int):
        from tqdm import tqdm

        self.total, self.done, self.every = total, done, every
        self.failed, self.kept, self.start = 0, [], time.perf_counter()
        self.bar = tqdm(total=total, initial=done, unit="sample", dynamic_ncols=True,
                        disable=not sys.stderr.isatty())
        self._next_log = done + every

    def update(self, rows: Sequence[dict], failed: int) -> None:
        self.failed += failed
        for r in rows:
            t = r.get("tokens_per_layer") or []
            if t and t[0]:
                self.kept.append(t[-1] / t[0])
        n = len(rows) + failed
        self.done += n
        kept = f"{100 * statistics.fmean(self.kept):.0f}%" if self.kept else "-"
        if not self.bar.disable:
            self.bar.set_postfix(failed=self.failed, kept=kept, refresh=False)
            self.bar.update(n)
        elif self.done >= self._next_log or self.done == self.total:
            elapsed = time.perf_counter() - self.start
            rate = (self.done - self.bar.n) / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?"
            logger.info("%d/%d samples, %.2f samples/s, ETA %s, %d failed, audio tokens kept %s",
                        self.done, self.total, rate, eta_s, self.failed, kept)
            self._next_log = self.done + self.every

    def close(self) -> None:
        self.bar.close()


class NothingEvaluatedError(RuntimeError):
    """Every sample failed (its audio missing or unreadable): there is no result to
    write. Each failure was logged as it happened; ``metrics.json`` is not written,
    so a folder never holds a result without a number (and results that
    ``overwrite=true`` set aside are put back, :class:`~fastadasp.run.folder.RunFolder`)."""


def _row(sample: Sample, index: int, task: Task, gen) -> dict:
    fields = sample_fields(sample)
    return {
        "id": sample.id,
        "index": index,
        "prediction": gen.text,
        "answer": task.answer(gen.text, sample),
        "reference": fields.get(task.reference),
        # what the parser looked at (labels, choices), so a run can be re-scored without the dataset
        "fields": task.row_fields(sample),
        "flops_realized": gen.flops_realized,
        "tokens_per_layer": gen.tokens_per_layer,
        "hit_max_new_tokens": gen.hit_max_new_tokens,
        "repetition_loop": gen.repetition_loop,
        **gen.extra,
    }


def _sampling_statistics(rows: Sequence[dict], task: Task, primary: str | None, resamples: int, seed: int,
                         collapse_threshold: float | None) -> dict[str, Any]:
    """``metrics_interval``, ``collapses`` and ``<metric>_without_collapses`` (fastadasp.metrics.uncertainty)."""
    from ..metrics.collapses import row_flags
    from ..metrics.samplewise import stats_from_rows, unsupported_reason
    from ..metrics.uncertainty import run_statistics

    problem = unsupported_reason(task.metric, primary) if primary else "the task names no headline metric"
    stats = None if problem else stats_from_rows(rows, task.metric, primary, task.extra_references)
    return run_statistics(stats, row_flags(rows), [str(r["id"]) for r in rows], resamples, seed,
                          collapse_threshold, unavailable=problem)


def _statistics_kwargs(statistics: tuple[int, int, float] | None) -> dict[str, Any]:
    if statistics is None:
        return {}
    resamples, seed, threshold = statistics
    return {"resamples": resamples, "seed": seed, "collapse_threshold": threshold}


def summarize(rows: Sequence[dict], failures: Sequence[dict], task: Task, *, resamples: int | None = None,
              seed: int | None = None, collapse_threshold: float | None = None) -> dict[str, Any]:
    """The per-run numbers of ``metrics.json`` from prediction rows (shared by
    the runner, ``fastadasp.run.merge`` and ``fastadasp.run.score``): the metric, its 95%
    bootstrap interval over samples (``resamples``, ``seed``: defaults of
    fastadasp.metrics.uncertainty) and the collapsed samples (``collapse_threshold``: percent
    error rate, default fastadasp.metrics.collapses.DEFAULT_THRESHOLD)."""
    from ..metrics.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED

    if not rows:
        shown = 3
        reasons = "; ".join(f"{f['id']}: {f['error']}" for f in failures[:shown])
        more = f"; and {len(failures) - shown} more" if len(failures) > shown else ""
        raise NothingEvaluatedError(
            f"no sample could be evaluated: all {len(failures)} failed ({reasons}{more}); nothing was scored and "
            f"no metrics.json was written; each failure is logged as 'skipped <id>: <reason>': fix the audio "
            f"(paths, dataset.root) and run again")
    rows = sorted(rows, key=lambda r: r.get("index", 0))
    scores = task.score_rows(rows)
    primary, _ = task.headline(scores)
    realised = [r["flops_realized"] for r in rows]
    truncated = [r for r in rows if r.get("truncated_s", 0) > 0]
    costs = {k for r in rows for k, v in r.items() if isinstance(v, float) and not isinstance(v, bool)}
    return {
        "flops_realized": statistics.fmean(realised),
        "flops_realized_min": min(realised),
        "flops_realized_max": max(realised),
        "num_samples": len(rows),
        "num_failed": len(failures),
        "failures": list(failures),
        "repetition_loops": sum(bool(r.get("repetition_loop")) for r in rows),
        "hit_max_new_tokens": sum(bool(r.get("hit_max_new_tokens")) for r in rows),
        "num_truncated": len(truncated),
        "truncated_s_total": sum(r["truncated_s"] for r in truncated),
        "metrics": scores,
        "primary_metric": primary,
        "higher_is_better": task.higher_is_better,
        **_sampling_statistics(rows, task, primary, DEFAULT_RESAMPLES if resamples is None else resamples,
                               DEFAULT_SEED if seed is None else seed, collapse_threshold),
        # per-sample costs the adapter reported (timings, decode FLOPs, KV-cache reduction)
        **{f"mean_{k}": statistics.fmean(r[k] for r in rows if isinstance(r.get(k), float))
           for k in sorted(costs - _ROW_NON_COSTS)},
    }


def _sorted_by_length(samples: Sequence[Sample]) -> list[Sample]:
    from ..data.duration import audio_duration

    return sorted(samples, key=lambda s: audio_duration(s.audio_path))


def evaluate(
    model: SpeechModel,
    task: Task,
    samples: Sequence[Sample],
    method: ReductionMethod,
    budget: Budget,
    out_dir: str | Path,
    batch_size: int = 1,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    *,
    overwrite: bool = False,
    identity: dict | None = None,
    sort_by_length: bool = False,
    progress_every: int = 50,
    run_info: dict | None = None,
    statistics: tuple[int, int, float] | None = None,
) -> dict[str, Any]:
    """Run the samples, write ``predictions.jsonl`` and ``metrics.json``.

    ``identity`` is what ``resume`` must match (default: method, budget, model
    name, task name and the sample listing's fingerprint). ``statistics``:
    (bootstrap resamples, bootstrap seed, collapse threshold), default the
    metrics modules' defaults."""
    say = log or logger.info
    if identity is None:
        identity = {"method": method.describe(), "budget": budget.describe(), "model": model.name, "task": task.name,
                    "dataset": {"fingerprint": dataset_fingerprint(samples)}}
    index_of = {s.id: i for i, s in enumerate(samples)}
    # locked (check() takes the lock first) until this block ends; a run that stops before its
    # first row puts back the results overwrite=true set aside (run_folder.RunFolder.close)
    with RunFolder(out_dir) as folder:
        kept = folder.check(identity, resume=resume, overwrite=overwrite)
        done = {r["id"]: r for r in kept if r["id"] in index_of}
        if len(done) < len(kept):
            logger.warning("%s: ignored %d finished rows whose ids are not in this run's samples",
                           folder.predictions, len(kept) - len(done))
        earlier_s, earlier_timed = folder.earlier_timing() if done else (0.0, 0)
        folder.start(identity, list(done.values()))
        failures: list[dict] = []
        rows: list[dict] = list(done.values())
        todo = [s for s in samples if s.id not in done]
        if sort_by_length:
            todo = _sorted_by_length(todo)
        progress = _Progress(len(samples), len(done), progress_every)
        start = time.perf_counter()
        warned_truncation = False
        try:
            with folder.predictions.open("a", encoding="utf-8") as fh:
                for batch in _batches(todo, batch_size):
                    ready, audios, batch_failures = read_audios(batch)
                    for failure in batch_failures:
                        logger.warning("skipped %s: %s", failure["id"], failure["error"])
                    failures.extend(batch_failures)
                    new_rows = []
                    if ready:
                        prompts = [task.prompt(model.family, s, model.uses_default_prompt) for s in ready]
                        prompt = prompts[0] if len(set(prompts)) == 1 else prompts
                        gens = model.generate(audios, prompt, method, budget, task.max_new_tokens,
                                              [s.id for s in ready])
                        for sample, gen in zip(ready, gens):
                            row = _row(sample, index_of[sample.id], task, gen)
                            if row.get("truncated_s", 0) > 0 and not warned_truncation:
                                logger.warning(
                                    "%s: %.1f s of audio beyond what %s can take were cut (truncated_s in the row; "
                                    "counted in metrics.json)", sample.id, row["truncated_s"], model.name)
                                warned_truncation = True
                            folder.append(fh, row)
                            new_rows.append(row)
                    rows.extend(new_rows)
                    progress.update(new_rows, len(batch_failures))
        finally:
            progress.close()
        # a resumed run adds this session's time to the earlier sessions' (re-summarising a finished run keeps it)
        wall_s = earlier_s + time.perf_counter() - start
        timed = earlier_timed + len(rows) - len(done)
        metrics = {
            "model": model.name,
            "task": task.name,
            "method": method.name,
            "method_settings": method.describe(),
            "budget_model": budget.cost_model,  # a stable key: analytic | token_layer (earlier runs: flops | paper)
            "flops_target": budget.target,
            **summarize(rows, failures, task, **_statistics_kwargs(statistics)),
            "wall_s": wall_s,
            "timed_samples": timed,
            "samples_per_s": timed / wall_s if wall_s > 0 and timed else None,
            **(run_info or {}),
        }
        folder.finish(metrics)  # metrics.json; only then are results that overwrite=true set aside removed
    primary = metrics["primary_metric"]
    say(
        f"[{task.name}] {model.name} | {method.name} flops target {budget.target:.2f} "
        f"realised {metrics['flops_realized']:.3f} | {primary}={metrics['metrics'].get(primary)} "
        f"| {len(rows)} samples, {len(failures)} failed, {metrics['repetition_loops']} loops | {folder.path}"
    )
    return metrics


# -- Hydra glue ---------------------------------------------------------------------------


_instantiate = instantiate


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


@dataclass
class ModelCache:
    """Keeps the last loaded model, keyed by its resolved config: a multirun
    sweep over budgets or methods (one process, Hydra's basic launcher) loads a
    7B model once. Reductions are installed per ``generate`` call and removed
    on exit, so a reused model is the unmodified model."""

    loads: int = 0
    _key: str | None = None
    _model: Any = field(default=None, repr=False)

    def get(self, node: Any) -> SpeechModel:
        key = json.dumps(_plain(node), sort_keys=True, default=str)
        if key != self._key:
            self._model, self._key = None, None  # free the old model before loading the next
            self._model = _instantiate(node)
            self._key = key
            self.loads += 1
        else:
            logger.info("reusing the loaded model (same model config as the previous job)")
        return self._model

    def clear(self) -> None:
        self._model, self._key = None, None


MODEL_CACHE = ModelCache()


def _model_class(node: Any) -> type:
    from hydra.utils import get_class

    return get_class(node["_target_"])


def _peek_spec(model_node: Any) -> StackSpec | None:
    """The reduced stack's shapes from the model's config, without weights (``None``
    when the adapter cannot tell before loading)."""
    params = {k: v for k, v in _plain(model_node).items() if not k.startswith("_")}
    return _model_class(model_node).peek_stack_spec(**params)


def _check_method(method: ReductionMethod, budget: Budget, spec: StackSpec) -> None:
    """Method settings against the reduced stack (any FLOPs target: a layer outside
    the stack or a KV-cache method on an encoder is a mistake at flops=0 too), then
    budget feasibility."""
    method.validate(spec)
    if budget.reduces:
        # every position audio: the most favourable layout, so an error here holds for every sample
        budget.base_ratio(method, spec, TokenLayout(fixed=0, spans=(1500,)))


def _check_device(model_node: Any) -> None:
    """``model.device`` names a device this torch can use (a CPU build has no CUDA)."""
    device = model_node.get("device") if hasattr(model_node, "get") else None
    if device is None or model_node.get("device_map"):  # a device map places the weights itself
        return
    import torch

    try:
        kind = torch.device(str(device))
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"model.device={device!r} is not a torch device; use cpu, cuda, cuda:<index> or mps") from exc
    if kind.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            raise ConfigError(f"model.device={device}: torch {torch.__version__} was built without CUDA; "
                              f"use model.device=cpu (or install a CUDA build of torch)")
        if not torch.cuda.is_available():
            raise ConfigError(f"model.device={device}: no CUDA device is visible to this process; use model.device=cpu "
                              f"or run where a GPU is (CUDA_VISIBLE_DEVICES, the job's GPU request)")
        if kind.index is not None and kind.index >= torch.cuda.device_count():
            raise ConfigError(f"model.device={device}: only {torch.cuda.device_count()} CUDA device(s) are visible; "
                              f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif kind.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"model.device={device}: MPS is not available in this torch or on this machine; "
                          f"use model.device=cpu")


def _dataset(cfg: Any, choice: str | None = None, cache: dict | None = None) -> tuple[list[Sample], dict]:
    """Load the dataset; its identity (name, source; fingerprint added later) for the run key.
    ``choice``: the dataset's config name (the Hydra choice); ``cache``: datasets already
    loaded by the same resolved config (a sweep's pre-check loads each once)."""
    import copy

    from omegaconf.errors import MissingMandatoryValue

    from .datasets import load_dataset

    key = None
    try:
        if cache is not None:
            key = json.dumps([_plain(cfg.dataset), choice], sort_keys=True, default=str)
            if key in cache:
                samples, info = cache[key]
                return list(samples), copy.deepcopy(info)
        samples, info = load_dataset(cfg.dataset, default_name=choice)
    except MissingMandatoryValue as exc:
        name = f"dataset.{exc.full_key}"
        raise ConfigError(f"{name} is required for dataset {cfg.dataset.get('corpus') or choice!r}: "
                          f"add {name}=... (see the comment in its configs/dataset/ file)") from exc
    if not samples:
        raise ConfigError(f"dataset {info['name']!r} has no samples (limit={cfg.get('limit')})")
    if cache is not None:
        cache[key] = (samples, copy.deepcopy(info))
    return samples, info


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _run_name(cfg: Any, method: ReductionMethod, family: str) -> str:
    return f"{family}/{cfg.task.name}/{method.name}/flops{cfg.flops:g}"


@dataclass
class Plan:
    """A run built and checked before any weights load (:func:`prepare`)."""

    settings: RunSettings
    task: Task
    method: ReductionMethod
    budget: Budget
    samples: list[Sample]
    dataset_info: dict
    identity: dict
    #: the method was checked against the reduced stack's shapes (else: once the model has loaded)
    stack_checked: bool


def prepare(cfg: Any, dataset_choice: str | None = None, datasets: dict | None = None) -> Plan:
    """Every check that needs no model weights, cheapest first: the typed top level,
    the keys of the model and dataset nodes, the task, method and budget settings,
    the device, the method against the model's stack (from its config) and the
    budget's feasibility, then the dataset (loaded; against the task's needs),
    the shard and the prompt. Raises one of :data:`EXPECTED_ERRORS` naming the key.
    A sweep checks every job with it before the first starts (:mod:`fastadasp.sweep_check`)."""
    from .. import __version__
    from .datasets import META_KEYS
    from .instantiate import build, check_tree

    settings: RunSettings = validate(cfg)
    _seed_everything(settings.seed)
    check_tree(cfg.model, "model")
    check_tree(cfg.dataset, "dataset", ignore=META_KEYS)
    check_tree(cfg.task, "task")
    task = Task.from_config(cfg.task, _instantiate)
    method = build(cfg.method, "method")
    budget = build(cfg.cost_model, "cost_model")
    _check_device(cfg.model)
    spec = _peek_spec(cfg.model)
    if spec is not None:
        _check_method(method, budget, spec)
    samples, dataset_info = _dataset(cfg, dataset_choice, datasets)
    task.check_dataset(samples, dataset_info.get("name") or "?")
    # the listing the run draws from (after `limit`, before sharding: every shard names the same dataset)
    dataset_info["fingerprint"] = dataset_fingerprint(samples)
    if settings.num_shards > 1:
        samples = samples[settings.shard :: settings.num_shards]
        if not samples:
            raise ConfigError(f"shard {settings.shard} of {settings.num_shards} is empty: the dataset has fewer samples")
    family = cfg.model.get("family") or _model_class(cfg.model).family
    uses_default = getattr(_model_class(cfg.model), "uses_default_prompt", False)
    for s in samples[:1]:  # a missing prompt or prompt field, or one the model's settings contradict, fails here
        prompt = task.prompt(family, s, uses_default)
        _model_class(cfg.model).check_prompt(prompt, **{k: v for k, v in _plain(cfg.model).items()
                                                        if not k.startswith("_")})
    throughput = getattr(_model_class(cfg.model), "throughput_settings", frozenset())
    identity = {
        "model": {k: v for k, v in _plain(cfg.model).items() if k not in throughput},
        "task": _plain(cfg.task),
        "method": method.describe(),
        "budget": _plain(cfg.cost_model),  # the budget: the cost model's node, with its flops
        "dataset": dataset_info,
        "subset": {"limit": settings.limit, "shard": settings.shard, "num_shards": settings.num_shards,
                   "num_samples": len(samples)},
        "seed": settings.seed,
        "fastadasp_version": __version__,
    }
    return Plan(settings, task, method, budget, samples, dataset_info, identity, stack_checked=spec is not None)


def _hydra_choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None


def _hydra_choices() -> dict[str, str | None]:
    """The config chosen in each group (model, task, dataset, method, cost model, ...): what names the
    run's tables (fastadasp.analysis.names); empty outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {group: choice for group, choice in HydraConfig.get().runtime.choices.items() if not group.startswith("hydra")}


def main(cfg, model_cache: ModelCache | None = None) -> dict[str, Any]:
    """Entry point behind ``run.py``: check everything, load, evaluate, log."""
    plan = prepare(cfg, _hydra_choice("dataset"))
    settings, task, method, budget = plan.settings, plan.task, plan.method, plan.budget
    samples, dataset_info, identity = plan.samples, plan.dataset_info, plan.identity
    # the output folder is locked, then checked, here (before the model loads); the lock is held until the
    # run in it ends (evaluate()'s block, or this function's end), and evaluate() re-checks under it
    run_folder = RunFolder(cfg.output_dir)
    run_folder.check(identity, resume=settings.resume, overwrite=settings.overwrite)
    model = (model_cache or MODEL_CACHE).get(cfg.model)
    if not plan.stack_checked:  # the adapter could not read the stack's shapes without loading: check now,
        _check_method(method, budget, model.stack_spec)  # before anything in the run folder changes
    run_info = {
        "model_family": model.family,
        "dataset": dataset_info,
        "seed": settings.seed,
        "limit": settings.limit,
        "shard": {"index": settings.shard, "count": settings.num_shards},
        "batch_size": settings.batch_size,
        "config": resolved_config(cfg),
        "choices": _hydra_choices(),
        **environment(model),
    }
    metrics = evaluate(
        model, task, samples, method, budget, cfg.output_dir, settings.batch_size, settings.resume,
        overwrite=settings.overwrite, identity=identity, sort_by_length=settings.sort_by_length,
        progress_every=settings.progress_every, run_info=run_info, statistics=settings.statistics,
    )
    if cfg.logger.get("wandb"):
        from .wandb_logger import log_run

        log_run(cfg, metrics, Path(cfg.output_dir), name=_run_name(cfg, method, model.family))
    return metrics


def _expected_errors() -> tuple[type[BaseException], ...]:
    from omegaconf.errors import MissingMandatoryValue

    from ..data.audio import AudioError
    from ..data.corpora._common import CorpusError
    from ..data.manifest import ManifestError
    from ..reduction import BudgetError
    from ..reduction.methods import MethodSettingsError
    from .folder import RunFolderError
    from ..tasks.definition import TaskDataError

    # the errors of bad input (settings, files, corpora, audio) and of a run with nothing to score: one line each
    return (ConfigError, ManifestError, CorpusError, AudioError, BudgetError, MethodSettingsError, RunFolderError,
            TaskDataError, NothingEvaluatedError, MissingMandatoryValue, FileNotFoundError)


EXPECTED_ERRORS = _expected_errors()
