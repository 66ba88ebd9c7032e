"""A run folder's per-sample record, for intervals, paired comparisons and collapse counts.

From ``settings.json`` (the task's metric, rebuilt from its config node) and
``predictions.jsonl`` (one row per sample: the answer the run scored, its flags), never from a
model. The record is cached on disk keyed by the folder's content (the predictions' bytes, the
task's scoring settings, the metric asked for and this module's version), so ``make tables``
recomputes nothing for a folder that did not change; a cache entry is never trusted for a
folder whose content differs.

Cache folder: ``$FASTADASP_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastadasp``, else
``~/.cache/fastadasp`` (subfolder ``samplewise``); ``cache_dir=None`` disables it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..metrics.collapses import collapse_flags, collapse_summary, row_flags
from ..metrics.samplewise import SampleStats, stats_from_rows, unsupported_reason

__all__ = ["CACHE_VERSION", "RunSamples", "SamplesUnavailable", "default_cache_dir", "load_run_samples",
           "read_rows", "scoring_settings"]

#: bump when what is cached changes meaning
CACHE_VERSION = 1
#: the task settings that decide a score (prompts and generation limits do not)
SCORING_KEYS = ("name", "reference", "parser", "metric", "primary_metric", "higher_is_better", "extra_references")


class SamplesUnavailable(ValueError):
    """A run folder has no usable per-sample record (no predictions, a metric without a
    per-sample form, rows that do not give the recorded metric); the message says which."""


@dataclass(frozen=True)
class RunSamples:
    """One run's per-sample record: the metric's statistics, the collapse flags read off the
    rows (empty, max_new_tokens, repetition_loop) and a digest of each sample's reference."""

    run_dir: str
    stats: SampleStats
    flags: Mapping[str, np.ndarray]
    reference_digests: tuple[str, ...]
    task: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> tuple[str, ...]:
        return self.stats.ids

    def collapses(self, threshold: float | None = None) -> dict[str, Any]:
        """The ``collapses`` block of metrics.json for this run (:mod:`fastadasp.metrics.collapses`)."""
        return collapse_summary(self.ids, collapse_flags(self.flags, self.stats, threshold), self.stats, threshold)

    def subset(self, ids: tuple[str, ...]) -> RunSamples:
        """The record for ``ids`` (in that order)."""
        index = {k: i for i, k in enumerate(self.ids)}
        rows = np.array([index[k] for k in ids], dtype=int)
        return RunSamples(self.run_dir, self.stats.subset(ids), {k: v[rows] for k, v in self.flags.items()},
                          tuple(self.reference_digests[i] for i in rows), self.task)


def default_cache_dir() -> Path:
    if os.environ.get("FASTADASP_CACHE_DIR"):
        return Path(os.environ["FASTADASP_CACHE_DIR"])
    base = Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "fastadasp"


def scoring_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run's task config that decides its scores (:data:`SCORING_KEYS`)."""
    task = settings.get("task") or {}
    return {k: task.get(k) for k in SCORING_KEYS if k in task}


def read_rows(run_dir: Path) -> list[dict]:
    """The prediction rows, one per id (the first: as the runner counts them), in dataset order."""
    path = run_dir / "predictions.jsonl"
    rows: dict[str, dict] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SamplesUnavailable(f"{path}:{lineno}: not a JSON row ({exc.msg})") from exc
        rows.setdefault(str(row.get("id")), row)
    return sorted(rows.values(), key=lambda r: r.get("index", 0))


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _build(run_dir: Path, settings: Mapping[str, Any], metric_name: str) -> dict[str, Any]:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    task = settings.get("task") or {}
    if not isinstance(task.get("metric"), Mapping):
        raise SamplesUnavailable(f"{run_dir}/settings.json records no task metric to rebuild")
    try:
        metric = instantiate(dict(task["metric"]))
    except InstantiationException as exc:  # e.g. a BLEU tokenizer that cannot load here
        raise SamplesUnavailable(f"{run_dir}: its metric cannot be rebuilt here ({' '.join(str(exc).split())})") from exc
    reason = unsupported_reason(metric, metric_name)
    if reason is not None:
        raise SamplesUnavailable(f"{run_dir}: {reason}")
    rows = read_rows(run_dir)
    if not rows:
        raise SamplesUnavailable(f"{run_dir}/predictions.jsonl has no rows")
    stats = stats_from_rows(rows, metric, metric_name, task.get("extra_references") or {})
    flags = row_flags(rows)
    return {"stats": stats.to_dict(), "flags": {k: v.tolist() for k, v in flags.items()},
            "reference_digests": [_digest(r.get("reference")) for r in rows]}


_MEMORY: dict[str, RunSamples] = {}
_UNWRITABLE: set[str] = set()
log = logging.getLogger(__name__)


def load_run_samples(run_dir: str | Path, metric_name: str, *, expected: float | None = None,
                     cache_dir: str | Path | None = None) -> RunSamples:
    """The per-sample record of metric ``metric_name`` of a run folder (module docstring).
    ``expected``: the value metrics.json recorded; a record that does not reproduce it (to 1e-6)
    is refused. Raises :class:`SamplesUnavailable` (one line) when there is none."""
    folder = Path(run_dir)
    predictions, settings_path = folder / "predictions.jsonl", folder / "settings.json"
    for needed in (settings_path, predictions):
        if not needed.is_file():
            raise SamplesUnavailable(f"{folder}: no {needed.name} (per-sample statistics need it)")
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    scoring = scoring_settings(settings)
    hasher = hashlib.sha256(predictions.read_bytes())
    hasher.update(json.dumps([CACHE_VERSION, metric_name, scoring], sort_keys=True, default=str).encode())
    key = hasher.hexdigest()
    if key in _MEMORY:
        record = _MEMORY[key]
    else:
        cached = None if cache_dir is None else Path(cache_dir) / "samplewise" / f"{key}.json"
        if cached is not None and cached.is_file():
            data = json.loads(cached.read_text(encoding="utf-8"))
        else:
            data = _build(folder, settings, metric_name)
            if cached is not None:
                _write_cache(cached, data)
        record = RunSamples(str(folder), SampleStats.from_dict(data["stats"]),
                            {k: np.asarray(v, dtype=bool) for k, v in data["flags"].items()},
                            tuple(data["reference_digests"]), scoring)
        _MEMORY[key] = record
    if record.run_dir != str(folder):  # the same content in another folder
        record = RunSamples(str(folder), record.stats, record.flags, record.reference_digests, record.task)
    if expected is not None:
        value = record.stats.value()
        if not np.isclose(value, expected, rtol=1e-6, atol=1e-9):
            raise SamplesUnavailable(f"{folder}: its predictions give {metric_name} {value:.6g} but metrics.json "
                                     f"says {expected:.6g}; re-score it (python -m fastadasp.run.score)")
    return record


def _write_cache(path: Path, data: dict) -> None:
    """Atomic write; a cache that cannot be written (read-only home) is only slower: said once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        if not _UNWRITABLE:
            log.warning("per-sample cache %s cannot be written (%s): records are recomputed each time; "
                        "set FASTADASP_CACHE_DIR to a writable folder", path.parent, exc.strerror or exc)
        _UNWRITABLE.add(str(path.parent))
