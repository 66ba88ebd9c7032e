"""Collapsed outputs are counted per run, by kind, with their ids (empty, max new tokens,
repetition loop, WER above a threshold), metrics.json records them with the metric's interval
and the WER without them, and the existing loop and max-token counts stay."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fake_runs import REFERENCES, asr_task, with_errors

from fastadasp.metrics.collapses import collapse_flags, collapse_summary, row_flags
from fastadasp.metrics.samplewise import stats_from_rows
from fastadasp.run.rescoring import task_from_settings
from fastadasp.run.runner import summarize


def rows(hypotheses: dict[str, str], hit: tuple = (), loop: tuple = ()) -> list[dict]:
    return [{"id": k, "index": i, "prediction": h, "answer": h, "reference": REFERENCES[k], "fields": {},
             "flops_realized": 0.1, "hit_max_new_tokens": k in hit, "repetition_loop": k in loop}
            for i, (k, h) in enumerate(hypotheses.items())]


HYPS = {**with_errors({"s01": 2}), "s02": "", "s03": " . ,", "s04": with_errors({"s04": 10})["s04"] + " and more words",
        "s05": with_errors({"s05": 9})["s05"]}
ROWS = rows(HYPS, hit=("s06", "s04"), loop=("s04",))


def test_each_kind_is_found_on_hand_made_rows():
    task = task_from_settings({"task": asr_task()})
    stats = stats_from_rows(ROWS, task.metric, "wer")
    kinds = collapse_flags(row_flags(ROWS), stats)
    ids = np.array(list(HYPS))
    assert list(ids[kinds["empty"]]) == ["s02", "s03"]  # nothing, or punctuation only
    assert list(ids[kinds["max_new_tokens"]]) == ["s04", "s06"]
    assert list(ids[kinds["repetition_loop"]]) == ["s04"]
    # WER above 90%: s02/s03 (100%: everything deleted), s04 (130%); s05 has 90% exactly: not above
    assert list(ids[kinds["above_threshold"]]) == ["s02", "s03", "s04"]
    summary = collapse_summary(ids, kinds, stats)
    assert summary["count"] == 4 and summary["ids"] == ["s02", "s03", "s04", "s06"]  # s04 counts once
    assert summary["by_kind"] == {"empty": 2, "max_new_tokens": 2, "repetition_loop": 1, "above_threshold": 3}
    assert summary["threshold"] == 90.0 and summary["threshold_metric"] == "wer"
    lower = collapse_summary(ids, collapse_flags(row_flags(ROWS), stats, threshold=80.0), stats, 80.0)
    assert lower["ids_by_kind"]["above_threshold"] == ["s02", "s03", "s04", "s05"] and lower["threshold"] == 80.0


def test_metrics_json_records_collapses_interval_and_wer_without_collapses():
    task = task_from_settings({"task": asr_task()})
    out = summarize(ROWS, [], task, resamples=200, seed=1)
    assert out["repetition_loops"] == 1 and out["hit_max_new_tokens"] == 2  # the existing counts stay
    assert out["collapses"]["count"] == 4
    low, high = out["metrics_interval"]["wer"]
    assert low < out["metrics"]["wer"] < high
    assert out["metrics_interval"] | {"wer": None} == {"wer": None, "method": "percentile bootstrap over samples",
                                                        "level": 0.95, "resamples": 200, "seed": 1}
    # without s02, s03, s04, s06: 6 samples, 60 reference words, 2 + 9 edits
    assert out["wer_without_collapses"] == pytest.approx(100 * 11 / 60)
    json.dumps(out)  # metrics.json must be able to hold it


def test_a_metric_without_a_per_sample_form_still_counts_row_collapses():
    node = asr_task() | {"metric": {"_target_": "fastadasp.metrics.accuracy.classification_accuracy",
                                    "_partial_": True}, "primary_metric": "unweighted_accuracy"}
    out = summarize(ROWS, [], task_from_settings({"task": node}))
    assert "unweighted_accuracy" in out["metrics_interval"]["unavailable"]
    assert out["collapses"]["by_kind"] == {"empty": 2, "max_new_tokens": 2, "repetition_loop": 1}
    assert out["collapses"]["threshold"] is None and "unweighted_accuracy_without_collapses" not in out
