"""`python -m fastadasp.compare RUN_A RUN_B`: the paired comparison of two run folders, and its
one-line refusals (other samples, other references, other metric settings)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fake_runs import REFERENCES, with_errors, write_asr_run

from fastadasp.analysis.compare import ComparisonError, compare_runs, main

EDITS = {"s00": 1, "s01": 0, "s02": 3, "s03": 0, "s04": 2, "s05": 0, "s06": 1, "s07": 0, "s08": 4, "s09": 0}


def test_a_run_against_itself_differs_by_zero_and_one_worse_sample_moves_it_up(tmp_path):
    a = write_asr_run(tmp_path, "a", with_errors(EDITS))
    same = write_asr_run(tmp_path, "same", with_errors(EDITS))
    worse = write_asr_run(tmp_path, "worse", with_errors({**EDITS, "s05": 6}))
    result = compare_runs(a, same, cache_dir=None)["comparison"]
    assert result["difference"] == 0.0 and result["interval"] == [0.0, 0.0] and not result["excludes_zero"]
    result = compare_runs(a, worse, cache_dir=None)["comparison"]
    assert result["a"] == pytest.approx(11.0) and result["b"] == pytest.approx(17.0)
    assert result["difference"] == pytest.approx(6.0) and result["interval"][0] >= 0.0
    assert result["samples"] == 10 and result["resamples"] == 1000 and result["seed"] == 12345


def test_the_command_prints_intervals_difference_and_collapses(tmp_path, capsys):
    a = write_asr_run(tmp_path, "a", with_errors({}))
    hyps = with_errors({k: 4 for k in REFERENCES}) | {"s03": ""}
    b = write_asr_run(tmp_path, "b", hyps, flags={"repetition_loop": ["s07"]})
    assert main([str(a), str(b), "--resamples", "200", "--seed", "3", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "B - A: +46.00 [+" in out and "B is worse than A (the 95% interval excludes 0)" in out
    assert "2 collapsed (empty 1, repetition_loop 1, above_threshold 1): 's03', 's07'" in out
    assert "200 resamples, seed 3" in out
    assert main([str(a), str(b), "--json", "--no-cache"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["collapsed_only_in_b"] == ["s03", "s07"] and data["comparison"]["metric"] == "wer"


def test_runs_on_different_samples_are_refused_in_one_line(tmp_path, capsys):
    a = write_asr_run(tmp_path, "a", with_errors(EDITS))
    fewer = {k: v for k, v in with_errors(EDITS).items() if k not in ("s08", "s09")}
    b = write_asr_run(tmp_path, "b", fewer)
    with pytest.raises(ComparisonError, match=r"not on the same samples: 2 ids differ \(2 only in A: 's08', 's09'; "
                                              r"0 only in B\)"):
        compare_runs(a, b, cache_dir=None)
    assert main([str(a), str(b), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_runs_scored_differently_or_on_other_references_are_refused(tmp_path):
    a = write_asr_run(tmp_path, "a", with_errors(EDITS))
    other_normaliser = write_asr_run(tmp_path, "b", with_errors(EDITS), normalizer="paper")
    with pytest.raises(ComparisonError, match=r"scored differently: task.metric.normalizer: 'none' \(A\) != "
                                              r"'paper' \(B\)"):
        compare_runs(a, other_normaliser, cache_dir=None)
    refs = dict(REFERENCES) | {"s04": "another sentence entirely"}
    other_refs = write_asr_run(tmp_path, "c", with_errors(EDITS, refs), refs)
    with pytest.raises(ComparisonError, match=r"different references for 1 of 10 ids \(e.g. 's04'\)"):
        compare_runs(a, other_refs, cache_dir=None)


def test_python_dash_m_entry_point(tmp_path):
    a = write_asr_run(tmp_path, "a", with_errors(EDITS))
    done = subprocess.run([sys.executable, "-m", "fastadasp.compare", str(a), str(a), "--resamples", "100", "--no-cache"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "B - A: +0.00 [+0.00, +0.00]" in done.stdout


def test_the_cited_comparisons_are_computed_from_the_shipped_runs(tmp_path):
    """scripts/compare_claims.py finds the runs that results/README.md cites by what they recorded and
    prints each paired difference with its interval; tiny.en's large-set sweep is complete."""
    import importlib.util
    import re
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("compare_claims", root / "scripts" / "compare_claims.py")
    claims = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = claims  # its dataclasses look their module up while the module loads
    spec.loader.exec_module(claims)
    out = tmp_path / "comparisons.md"
    assert claims.main(["--out", str(out)]) == 0
    text = out.read_text()
    tiny = text.split("### whisper_tiny_en demo_dense_large asr analytic")[1].split("###")[0]
    rows = [line for line in tiny.splitlines() if line.startswith("| ") and not line.startswith("| B ")]
    assert len(rows) >= 50 and all(re.search(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\] \| (differ|cannot tell apart)",
                                             r) for r in rows)
    assert "whisper_tiny_en demo_dense_large asr analytic: " not in text.split("## Not available")[-1]


def test_runs_of_different_tasks_are_refused_naming_both_tasks(tmp_path):
    a = write_asr_run(tmp_path, "a", dict(REFERENCES))
    b = write_asr_run(tmp_path, "b", dict(REFERENCES))
    settings = json.loads((b / "settings.json").read_text())
    settings["task"]["name"] = "st"
    (b / "settings.json").write_text(json.dumps(settings))
    with pytest.raises(ComparisonError, match=r"is a asr run and .* a st run; compare runs of one task"):
        compare_runs(a, b)
