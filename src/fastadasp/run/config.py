"""The run's top level as a typed schema, checked before anything loads.

``RunConfig`` is registered with Hydra's ConfigStore as ``run_schema`` and is
the first entry of ``configs/config.yaml``'s defaults, so Hydra itself refuses
``flops=abc`` or ``batch_size=two`` while composing. :func:`validate` adds the
range checks a type cannot express (``flops`` in [0, 1), ``batch_size >= 1``,
``0 <= shard < num_shards``, a seed in [0, 2**63 - 1], ...) and raises
:class:`ConfigError` with one line naming the key, the value and what is allowed.
:func:`rewrite_deprecated_overrides` turns the earlier command-line spellings
(the ``budget`` group, now ``cost_model``) into the current ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from ..errors import ConfigError

__all__ = ["ConfigError", "RunConfig", "RunSettings", "check_overrides", "rewrite_deprecated_overrides", "validate"]



#: the largest seed (torch.manual_seed takes 64 bits; a signed 64-bit value fits every generator)
SEED_MAX = 2**63 - 1


@dataclass
class StatisticsConfig:
    """How every run's uncertainty is computed (metrics.json ``metrics_interval`` and ``collapses``)."""

    #: bootstrap resamples over samples for the metric's 95% interval
    resamples: int = 1000
    #: the bootstrap's seed: the same predictions always give the same interval
    seed: int = 12345
    #: a sample whose error rate (percent) is above this counts as collapsed (besides empty, loop, truncated)
    collapse_threshold: float = 90.0


@dataclass
class RunConfig:
    """Top-level keys of ``configs/config.yaml`` (the groups stay free-form)."""

    model: Any = MISSING
    task: Any = MISSING
    dataset: Any = MISSING
    method: Any = MISSING
    #: how ``flops`` is counted: configs/cost_model/ (analytic | token_layer); builds the run's budget
    cost_model: Any = MISSING
    logger: Any = MISSING
    #: FLOPs-reduction target m in [0, 1)
    flops: float = 0.0
    batch_size: int = 1
    #: evaluate only the first N samples of the dataset (null = all)
    limit: Optional[int] = None
    #: seeds torch and every random method (their configs interpolate ${seed})
    seed: int = 0
    #: continue the run in output_dir (refused if any setting differs)
    resume: bool = False
    #: replace the results in output_dir (only after every check has passed)
    overwrite: bool = False
    #: evaluate slice `shard` of `num_shards` (merge them with `python -m fastadasp.run.merge`)
    shard: int = 0
    num_shards: int = 1
    #: batch samples of similar length together (outputs equal batch 1)
    sort_by_length: bool = False
    #: without a terminal, log progress every N samples
    progress_every: int = 50
    #: bootstrap resamples, seed and collapse threshold of the run's intervals and collapse counts
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    output_dir: str = MISSING
    data_root: str = MISSING


ConfigStore.instance().store(name="run_schema", node=RunConfig)


def folder_name(text: str, max_len: int = 120) -> str:
    """A single path component from Hydra's override string: path separators
    become ``_`` and long names keep a prefix plus a hash (file systems cap a
    name at 255 bytes), so every distinct override set gets its own folder."""
    import hashlib

    name = text.replace("/", "_").replace("\\", "_") or "default"
    if len(name) > max_len:
        name = f"{name[: max_len - 13]}..{hashlib.sha256(name.encode()).hexdigest()[:11]}"
    return name


OmegaConf.register_new_resolver("folder_name", folder_name, replace=True)


@dataclass(frozen=True)
class RunSettings:
    """The validated top-level values the runner uses."""

    flops: float
    batch_size: int
    limit: int | None
    seed: int
    resume: bool
    overwrite: bool
    shard: int
    num_shards: int
    sort_by_length: bool
    progress_every: int
    #: (resamples, seed, collapse threshold) of the run's intervals: cfg.statistics
    statistics: tuple[int, int, float] = (1000, 12345, 90.0)


def _number(cfg: Any, key: str, kind: type, default: Any) -> Any:
    value = cfg.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ConfigError(f"{key} must be {'a number' if kind is float else 'an integer'}, got {value!r}")
    return kind(value)


def _count(cfg: Any, key: str, default: int, name: str | None = None) -> int:
    """An integer setting that must be >= 1 (``name``: the key as the refusal calls it)."""
    value = _number(cfg, key, int, default)
    if value < 1:
        raise ConfigError(f"{name or key} must be >= 1, got {value}")
    return value


def _seed(cfg: Any, key: str, default: int, name: str | None = None, note: str = "") -> int:
    """A seed: an integer in [0, SEED_MAX] (``note``: said after the range in the refusal)."""
    value = _number(cfg, key, int, default)
    if not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{name or key} must be an integer in [0, 2**63 - 1]{note}, got {value}")
    return value


def _flag(cfg: Any, key: str) -> bool:
    value = cfg.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def validate(cfg: Any) -> RunSettings:
    """Range and consistency checks of the top level; raises ConfigError."""
    flops = _number(cfg, "flops", float, 0.0)
    if not 0.0 <= flops < 1.0:
        raise ConfigError(f"flops must be a FLOPs-reduction fraction in [0, 1), got {flops}")
    batch_size = _count(cfg, "batch_size", 1)
    limit = _number(cfg, "limit", int, None)
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0 or null, got {limit}")
    num_shards = _number(cfg, "num_shards", int, 1)
    shard = _number(cfg, "shard", int, 0)
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ConfigError(f"shard must satisfy 0 <= shard < num_shards, got shard={shard} num_shards={num_shards}")
    resume, overwrite = _flag(cfg, "resume"), _flag(cfg, "overwrite")
    if resume and overwrite:
        raise ConfigError("resume=true and overwrite=true contradict each other; choose one")
    every = _count(cfg, "progress_every", 50)
    seed = _seed(cfg, "seed", 0, note=" (torch's generators take 64 bits)")
    return RunSettings(
        flops=flops,
        batch_size=batch_size,
        limit=limit,
        seed=seed,
        resume=resume,
        overwrite=overwrite,
        shard=shard,
        num_shards=num_shards,
        sort_by_length=_flag(cfg, "sort_by_length"),
        progress_every=every,
        statistics=_statistics(cfg.get("statistics") or {}),
    )


def _statistics(node: Any) -> tuple[int, int, float]:
    resamples = _count(node, "resamples", 1000, "statistics.resamples")
    seed = _seed(node, "seed", 12345, "statistics.seed")
    threshold = _number(node, "collapse_threshold", float, 90.0)
    if threshold is None or threshold < 0:
        raise ConfigError(f"statistics.collapse_threshold must be a percent error rate >= 0, got {threshold}")
    return resamples, seed, threshold


def check_overrides(argv: list[str]) -> None:
    """Type-check command-line overrides of the typed top-level keys before
    Hydra composes, so ``flops=abc`` fails with one line (Hydra would refuse it
    too, in five). Sweep lists (``flops=0.1,0.3``) are checked value by value;
    sweep functions and interpolations are left to Hydra."""
    from dataclasses import fields

    # field types are strings under `from __future__ import annotations`: "float", "Optional[int]"
    kinds = {f.name: t for f in fields(RunConfig) for t in (bool, float, int) if t.__name__ in str(f.type)}
    for arg in argv:
        key, sep, raw = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in kinds or "(" in raw or "${" in raw:
            continue
        for value in raw.split(","):
            if kinds[key] is bool:
                ok = value.lower() in ("true", "false")
            elif value.lower() == "null":
                ok = key == "limit"
            else:
                try:
                    kinds[key](value) if kinds[key] is float else int(value)
                    ok = True
                except ValueError:
                    ok = False
            if not ok:
                want = {float: "a number", int: "an integer", bool: "true or false"}[kinds[key]]
                raise ConfigError(f"{key} must be {want}, got {value!r} (from the override {arg!r})")


#: the options of the earlier ``budget`` group -> those of ``cost_model`` (configs/cost_model/); kept here,
#: not imported from the reduction package, so that run.py refuses a bad override before torch loads
RENAMED_BUDGET_OPTIONS = {"flops": "analytic", "paper": "token_layer"}
_OLD_OPTION = re.compile(r"\b(" + "|".join(RENAMED_BUDGET_OPTIONS) + r")\b")  # by word: budget=flops,paper sweeps


def rewrite_deprecated_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """The command line with the earlier ``budget`` group's spellings in today's:
    ``budget=flops`` -> ``cost_model=analytic``, ``budget=paper`` ->
    ``cost_model=token_layer`` (sweep lists too), ``+budget=...``,
    ``budget.<key>=...`` -> ``cost_model.<key>=...``. Returns the new argv and a
    one-line warning per rewritten override. ``budget.model=...`` has no
    faithful translation (the old node's search default differed): refused,
    naming the group to use."""
    out, notes = [], []
    for arg in argv:
        prefix = arg[: len(arg) - len(arg.lstrip("+~"))]
        key, sep, value = arg[len(prefix):].partition("=")
        if key == "budget":
            new = f"{prefix}cost_model{sep}{_OLD_OPTION.sub(lambda m: RENAMED_BUDGET_OPTIONS[m[1]], value)}"
        elif key.startswith("budget."):
            if key == "budget.model":
                raise ConfigError(f"{arg}: the budget model is now the config group cost_model; use "
                                  f"cost_model=analytic (was flops) or cost_model=token_layer (was paper)")
            new = f"{prefix}cost_model.{key[len('budget.'):]}{sep}{value}"
        else:
            out.append(arg)
            continue
        out.append(new)
        notes.append(f"warning: {arg} is deprecated: use {new}")
    return out, notes
