"""Intervals, paired differences and collapse counts of table cells, from the runs' per-sample
records (:mod:`.samples`; ``predictions.jsonl``, so runs made before metrics.json recorded
intervals get them too).

A cell is one run or several runs that differ only in their seed. Its interval is the 95%
bootstrap interval of its value (of the seeds' mean: every seed resampled with the same
resamples, so the spread over seeds stays apart, shown as ``± std``). Two cells are compared
on the samples they share, B - A over the same resamples (:mod:`fastadasp.metrics.uncertainty`).
A run without ``predictions.jsonl`` shows what its metrics.json recorded (``metrics_interval``,
``collapses``) and takes part in no paired comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..metrics.uncertainty import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    PairedDifference,
    bootstrap_interval,
    paired_difference,
)
from .samples import RunSamples, SamplesUnavailable, default_cache_dir, load_run_samples

__all__ = ["CellStatistics", "IntervalSettings", "TableStatistics"]


@dataclass(frozen=True)
class IntervalSettings:
    """How tables compute intervals: resamples and seed of the bootstrap, the collapse threshold
    (percent error rate; None: fastadasp.metrics.collapses.DEFAULT_THRESHOLD), the per-sample
    cache folder (None: no cache)."""

    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    collapse_threshold: float | None = None
    cache_dir: Path | None = field(default_factory=default_cache_dir)


@dataclass(frozen=True)
class CellStatistics:
    interval: tuple[float, float] | None
    collapses: int | None
    #: why there is no interval (None when there is one)
    reason: str | None = None


def _key(runs: pd.DataFrame) -> tuple[str, ...]:
    return tuple(sorted(runs["run_dir"]))


class TableStatistics:
    """The per-sample records of the runs of one table build, each loaded once, and the
    statistics of each cell and pair of cells, each computed once (cells repeat across layouts)."""

    def __init__(self, settings: IntervalSettings | None = None):
        self.settings = settings or IntervalSettings()
        self._records: dict[str, RunSamples | None] = {}
        self.unavailable: dict[str, str] = {}
        self._cells: dict[tuple, CellStatistics] = {}
        self._pairs: dict[tuple, tuple[PairedDifference | None, str | None]] = {}

    def record(self, run: Mapping[str, Any]) -> RunSamples | None:
        run_dir = str(run["run_dir"])
        if run_dir not in self._records:
            try:
                self._records[run_dir] = load_run_samples(run_dir, str(run["primary_metric"]),
                                                          expected=float(run["value"]),
                                                          cache_dir=self.settings.cache_dir)
            except SamplesUnavailable as exc:
                self._records[run_dir] = None
                self.unavailable[run_dir] = str(exc)
        return self._records[run_dir]

    def _records_of(self, runs: pd.DataFrame) -> list[RunSamples] | None:
        records = [self.record(r) for _, r in runs.iterrows()]
        return None if any(r is None for r in records) else records

    def cell(self, runs: pd.DataFrame) -> CellStatistics:
        key = _key(runs)
        if key not in self._cells:
            self._cells[key] = self._cell(runs)
        return self._cells[key]

    def _recorded_collapses(self, runs: pd.DataFrame) -> int | None:
        counts = [c.get("count") if isinstance(c, Mapping) else None for c in runs["collapses"]]
        return None if any(c is None for c in counts) else int(sum(counts))

    def _cell(self, runs: pd.DataFrame) -> CellStatistics:
        records = self._records_of(runs)
        if records is None:
            recorded = [m.get(p) if isinstance(m, Mapping) else None
                        for m, p in zip(runs["metrics_interval"], runs["primary_metric"])]
            interval = tuple(recorded[0]) if len(runs) == 1 and recorded[0] is not None else None
            reason = None if interval else "no per-sample record: " + "; ".join(
                self.unavailable.get(d, "") for d in runs["run_dir"] if d in self.unavailable)
            return CellStatistics(interval, self._recorded_collapses(runs), reason)
        collapses = sum(r.collapses(self.settings.collapse_threshold)["count"] for r in records)
        ids = records[0].ids
        if any(set(r.ids) != set(ids) for r in records[1:]):
            return CellStatistics(None, collapses, "the seeds' runs are on different samples")
        stats = [r.subset(ids).stats for r in records]
        low, high = bootstrap_interval(stats, self.settings.resamples, self.settings.seed)
        return CellStatistics((low, high), collapses)

    def paired(self, a_runs: pd.DataFrame, b_runs: pd.DataFrame) -> tuple[PairedDifference | None, str | None]:
        """B - A on the samples both cells share, or None and why not."""
        key = (_key(a_runs), _key(b_runs))
        if key not in self._pairs:
            self._pairs[key] = self._paired(a_runs, b_runs)
        return self._pairs[key]

    def _paired(self, a_runs: pd.DataFrame, b_runs: pd.DataFrame) -> tuple[PairedDifference | None, str | None]:
        a, b = self._records_of(a_runs), self._records_of(b_runs)
        if a is None or b is None:
            return None, "no per-sample record"
        shared = set(a[0].ids)
        for record in a[1:] + b:
            shared &= set(record.ids)
        ids = tuple(i for i in a[0].ids if i in shared)
        if not ids:
            return None, "no shared samples"
        aligned_a, aligned_b = [r.subset(ids) for r in a], [r.subset(ids) for r in b]
        digests = {r.reference_digests for r in aligned_a + aligned_b}
        if len(digests) > 1:
            return None, "different references for the same ids"
        try:
            return paired_difference([r.stats for r in aligned_a], [r.stats for r in aligned_b],
                                     self.settings.resamples, self.settings.seed), None
        except ValueError as exc:  # different metric settings (normaliser, tokenizer): not comparable
            return None, str(exc)
