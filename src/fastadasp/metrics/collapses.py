"""Collapsed outputs, counted per run instead of averaged away.

A few outputs that collapse dominate a corpus metric, so each run records which samples
collapsed and how. A sample can be of several kinds; it counts once in ``count``.

- ``empty``: the output has no letter or digit (nothing, or only punctuation / spaces).
- ``max_new_tokens``: generation stopped at the task's ``max_new_tokens`` (truncated output;
  the row's ``hit_max_new_tokens``). Short-answer tasks with a few tokens hit it with chatty
  answers too: read it with the task's ``max_new_tokens`` in mind.
- ``repetition_loop``: the output ends in a repeated n-gram loop (the row's ``repetition_loop``,
  set by the model adapter).
- ``above_threshold``: for error-rate metrics (WER, CER), the sample's own rate is above
  ``threshold`` percent (default 90; a sample with errors and no reference words counts).
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from .samplewise import SampleStats

__all__ = ["DEFAULT_THRESHOLD", "KINDS", "collapse_flags", "collapse_summary", "row_flags"]

#: percent: a sample whose own error rate is above this collapsed (configurable per call)
DEFAULT_THRESHOLD = 90.0
KINDS = ("empty", "max_new_tokens", "repetition_loop", "above_threshold")
_WORD = re.compile(r"\w")


def row_flags(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The kinds read off prediction rows (empty, max_new_tokens, repetition_loop), one bool per row."""
    return {
        "empty": np.array([not _WORD.search(str(r.get("prediction") or "")) for r in rows], dtype=bool),
        "max_new_tokens": np.array([bool(r.get("hit_max_new_tokens")) for r in rows], dtype=bool),
        "repetition_loop": np.array([bool(r.get("repetition_loop")) for r in rows], dtype=bool),
    }


def _has_rate(stats: SampleStats | None) -> bool:
    return stats is not None and stats.combine == "ratio" and not stats.higher_is_better


def collapse_flags(flags: Mapping[str, np.ndarray], stats: SampleStats | None,
                   threshold: float | None = None) -> dict[str, np.ndarray]:
    """Every kind per sample: the rows' ``flags`` plus ``above_threshold`` when ``stats`` is an
    error rate (in the same sample order)."""
    kinds = {k: np.asarray(v, dtype=bool) for k, v in flags.items()}
    if _has_rate(stats):
        rate = stats.per_sample()
        kinds["above_threshold"] = np.nan_to_num(rate, nan=0.0, posinf=np.inf) > (
            DEFAULT_THRESHOLD if threshold is None else threshold)
    return kinds


def collapse_summary(ids: Sequence[str], kinds: Mapping[str, np.ndarray], stats: SampleStats | None = None,
                     threshold: float | None = None) -> dict[str, Any]:
    """The ``collapses`` block of ``metrics.json``: count, ids, count and ids per kind, threshold."""
    ids = [str(i) for i in ids]
    any_kind = np.any(np.column_stack([np.asarray(v, bool) for v in kinds.values()]), axis=1) if kinds \
        else np.zeros(len(ids), bool)
    rate = _has_rate(stats)
    return {
        "count": int(any_kind.sum()),
        "ids": [i for i, hit in zip(ids, any_kind) if hit],
        "by_kind": {k: int(np.sum(v)) for k, v in kinds.items()},
        "ids_by_kind": {k: [i for i, hit in zip(ids, v) if hit] for k, v in kinds.items()},
        "threshold": (DEFAULT_THRESHOLD if threshold is None else float(threshold)) if rate else None,
        "threshold_metric": stats.name if rate else None,
    }
