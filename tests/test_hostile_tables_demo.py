"""Hostile inputs (issue 15, section 3): the demo dataset never writes into a user's folder, and
one unreadable results file does not stop `make tables`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from fastadasp.analysis import RunFileError, build_tables, collect_benchmarks, collect_runs, collect_transfer_entropy
from fastadasp.data.synthetic import demo_sets as demo_set
from fastadasp.data.synthetic.demo_sets import STAMP_FILE, DemoFolderError, build_demo_set, demo_samples

from test_tables import make_results, write_benchmark, write_run

ROOT = Path(__file__).resolve().parents[1]
needs_espeak = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                                  reason="the demo sets need espeak-ng and sox")
ONE = dict(sentences=demo_set.SENTENCES[:1], voices=("en-us",), speeds=(170,))  # renders in a fraction of a second
TWO = dict(sentences=demo_set.SENTENCES[:2], voices=("en-us",), speeds=(170,))


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def user_folder(root: Path) -> Path:
    """A user's own data: a manifest and wavs, one of them named like a demo clip."""
    (root / "wavs").mkdir(parents=True)
    (root / "manifest.jsonl").write_text(json.dumps({"id": "u1", "audio": "wavs/mine.wav", "text": "mine"}) + "\n")
    (root / "wavs" / "mine.wav").write_bytes(b"RIFF my own recording")
    (root / "wavs" / "demo_001.wav").write_bytes(b"RIFF my own recording named like a demo clip")
    return root


# ---------------------------------------------------------------------------- demo set: refusals


def test_demo_dataset_refuses_a_users_folder_and_leaves_every_file(tmp_path):
    root = user_folder(tmp_path / "mydata")
    before = snapshot(root)
    with pytest.raises(DemoFolderError) as err:
        demo_samples(root, limit=2)
    message = str(err.value)
    assert "\n" not in message and str(root) in message and "manifest.jsonl" in message
    assert f"dataset=manifest dataset.path={root / 'manifest.jsonl'}" in message  # what the user most likely wanted
    assert snapshot(root) == before  # nothing rewritten, nothing deleted, no stamp written
    assert isinstance(err.value, ValueError)


def test_the_run_stops_on_a_users_folder_before_any_output(tmp_path):
    from fastadasp.run.runner import main

    root = user_folder(tmp_path / "mydata")
    before = snapshot(root)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"dataset.root={root}", "limit=2",
                                                       f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(Exception) as err:  # a DemoFolderError (Hydra may wrap it until the runner unwraps)
        main(cfg)
    assert "holds files the demo-set builder did not write" in str(err.value)
    assert snapshot(root) == before
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("make", ["missing", "empty", "empty_tree"])
def test_a_missing_or_empty_root_not_named_for_the_demo_set_is_refused(tmp_path, make):
    root = tmp_path / "librispeech_test"
    if make != "missing":
        root.mkdir()
    if make == "empty_tree":
        (root / "wavs").mkdir()
    with pytest.raises(DemoFolderError, match=r"librispeech_test (does not exist|is empty): .*name contains 'demo'.*"
                                              r"dataset=manifest dataset.path="):
        demo_samples(root)
    assert root.exists() == (make != "missing") and not (root / STAMP_FILE).exists()


def test_a_file_or_a_folder_of_another_demo_set_is_refused(tmp_path):
    (tmp_path / "demo_file").write_text("x")
    with pytest.raises(DemoFolderError, match="is a file, not a folder"):
        demo_samples(tmp_path / "demo_file")
    folder = tmp_path / "demo_x"
    folder.mkdir()
    (folder / STAMP_FILE).write_text(json.dumps({"set": "demo_dense", "files": {}}))
    with pytest.raises(DemoFolderError, match=r"holds the demo set 'demo_dense', not 'demo_asr'"):
        demo_samples(folder)
    (folder / STAMP_FILE).write_text("{truncated")
    with pytest.raises(DemoFolderError, match="demo-set stamp is unreadable"):
        demo_samples(folder)
    (folder / "keep.txt").write_text("mine")  # a stamp may not send a rebuild outside the set's own files
    (folder / STAMP_FILE).write_text(json.dumps({"set": "demo_asr", "files": {"keep.txt": None, "../x.wav": None}}))
    with pytest.raises(DemoFolderError, match="lists files the builder never writes"):
        demo_samples(folder)
    assert (folder / "keep.txt").read_text() == "mine"


def test_build_script_refuses_in_one_line_with_exit_2(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("build_demo_set", ROOT / "scripts" / "build_demo_set.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    root = user_folder(tmp_path / "mine")
    before = snapshot(root)
    assert script.main(["--out", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {root} holds files") and "new or empty folder" in err
    assert snapshot(root) == before


# ---------------------------------------------------------------------------- demo set: owned folders


@needs_espeak
def test_a_new_folder_named_for_the_demo_set_is_claimed_and_stamped(tmp_path):
    root = tmp_path / "my_demo"
    manifest = build_demo_set(root, require_demo_name=True, **TWO)
    stamp = json.loads((root / STAMP_FILE).read_text())
    assert stamp["complete"] is True and stamp["set"] == "demo_asr"
    assert set(stamp["files"]) == {"manifest.jsonl", "wavs/demo_000.wav", "wavs/demo_001.wav"}
    assert manifest == root / "manifest.jsonl"
    # an explicit build (scripts/build_demo_set.py, tests) may claim any new or empty folder
    build_demo_set(tmp_path / "anything", **ONE)
    assert (tmp_path / "anything" / STAMP_FILE).is_file()


@needs_espeak
def test_a_rebuild_removes_only_files_the_builder_wrote(tmp_path):
    root = tmp_path / "demo_set"
    build_demo_set(root, **TWO)
    build_demo_set(root, **ONE)  # a smaller plan: the builder's own stale clip goes
    assert sorted(p.name for p in (root / "wavs").iterdir()) == ["demo_000.wav"]
    (root / "wavs" / "notes.wav").write_bytes(b"the user's")
    with pytest.raises(DemoFolderError, match=r"demo_set holds files the demo-set builder did not write \(wavs/notes.wav\)"):
        build_demo_set(root, **TWO)
    assert (root / "wavs" / "notes.wav").read_bytes() == b"the user's"
    assert not (root / "wavs" / "demo_001.wav").exists()


@needs_espeak
def test_a_manifest_changed_after_the_build_is_not_overwritten_or_read(tmp_path):
    root = tmp_path / "demo_set"
    build_demo_set(root, **ONE)
    mine = json.dumps({"id": "u1", "audio": "wavs/demo_000.wav", "text": "my own transcript"}) + "\n"
    (root / "manifest.jsonl").write_text(mine)
    with pytest.raises(DemoFolderError, match=r"demo_set holds files changed since the demo-set builder wrote them "
                                              r"\(manifest.jsonl\)"):
        build_demo_set(root, **ONE)  # up to date by its plan, but the manifest is no longer the demo set's
    with pytest.raises(DemoFolderError):
        build_demo_set(root, force=True, **ONE)
    assert (root / "manifest.jsonl").read_text() == mine


@needs_espeak
def test_a_folder_built_before_the_stamp_is_adopted_unless_it_holds_other_files(tmp_path):
    root = tmp_path / "demo_asr"
    build_demo_set(root, **ONE)
    digest = json.loads((root / STAMP_FILE).read_text())["plan_hash"]
    (root / STAMP_FILE).unlink()
    (root / ".build_hash").write_text(digest + "\n")  # the layout of builds before the stamp
    wav = (root / "wavs" / "demo_000.wav").stat().st_mtime_ns
    build_demo_set(root, require_demo_name=True, **ONE)
    assert (root / STAMP_FILE).is_file() and not (root / ".build_hash").exists()
    assert (root / "wavs" / "demo_000.wav").stat().st_mtime_ns == wav  # adopted, not re-rendered
    (root / STAMP_FILE).unlink()
    (root / ".build_hash").write_text(digest + "\n")
    (root / "wavs" / "take1.wav").write_bytes(b"the user's")
    with pytest.raises(DemoFolderError, match=r"wavs/take1.wav"):
        build_demo_set(root, **ONE)
    assert (root / "wavs" / "take1.wav").exists() and (root / ".build_hash").exists()


# ---------------------------------------------------------------------------- make tables


def make_tables_script():
    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "scripts" / "make_tables.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_one_truncated_metrics_json_leaves_every_other_table_built(tmp_path, capsys):
    results = make_results(tmp_path / "results")
    broken = results / "a" / "c0" / "metrics.json"
    broken.write_text(broken.read_text()[:120])  # cut mid-file, as a killed copy leaves it
    script = make_tables_script()
    assert script.main(["--results", str(results), "--out", str(tmp_path / "out"), "--no-paper"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "a/c0/metrics.json" in line]
    assert len(lines) == 1 and "not valid JSON (line 1)" in lines[0]  # named once, in one line
    assert "Traceback" not in err and "left out 1 unreadable file(s)" in err
    tables = tmp_path / "out" / "tables"
    md = (tables / "methods_whisper_tiny_en_asr_demo_test_analytic.md").read_text()
    assert "8.00 ± 1.00 (n=3)" in md  # the other runs of the same table are all there
    assert (tables / "methods_whisper_tiny_en_er_emo_test_analytic.md").is_file()
    assert any(p.name.startswith("long_audio_") for p in tables.iterdir())
    index = (tables / "index.md").read_text()
    assert "## Left out" in index and "a/c0/metrics.json: not valid JSON" in index
    # --strict: the same tables, and the exit status says something was left out
    assert script.main(["--results", str(results), "--out", str(tmp_path / "strict"), "--no-paper", "--strict"]) == 1
    assert sorted(p.name for p in (tmp_path / "strict" / "tables").iterdir()) == sorted(p.name for p in tables.iterdir())


@pytest.mark.parametrize("content, reason", [
    ("", r"not valid JSON \(line 1\)"),
    (b"\xff\xfe\x00garbage", r"not UTF-8 text"),
    ("[]", r"a run's metrics.json must hold a JSON object, got list"),
    ("null", r"a run's metrics.json must hold a JSON object, got NoneType"),
    ({"drop": ("task", "budget_model")}, r"missing field\(s\) \['task', 'budget_model'\]"),
    ({"flops_target": "0.3"}, r"wrong type: flops_target='0.3'"),
    ({"flops_realized": "high"}, r"wrong type: flops_realized='high'"),
    ({"dataset": ["demo"]}, r"wrong type: dataset=\['demo'\]"),
    ({"shard": "0/2"}, r"wrong type: shard='0/2'"),
    ({"seed": "zero"}, r"wrong type: seed='zero'"),
    ({"method_settings": {"start_layer": "two"}}, r"wrong type: method_settings.start_layer='two'"),
    ({"metrics": {"wer": "5.0"}}, r"metrics.wer \(the headline metric\) is '5.0', not a number"),
    ({"metrics": [5.0]}, r"field 'metrics' must be a dict"),
])
def test_malformed_metrics_files_are_named_and_left_out(tmp_path, content, reason):
    write_run(tmp_path, "good", "none", 0.0, 5.0)
    path = write_run(tmp_path, "bad", "fastv", 0.1, 6.0, settings={"start_layer": 1}) / "metrics.json"
    if isinstance(content, dict):
        record = json.loads(path.read_text())
        changes = dict(content)
        for key in changes.pop("drop", ()):
            record.pop(key)
        record.update(changes)
        path.write_text(json.dumps(record))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(RunFileError, match="bad/metrics.json: .*" + reason):  # the library default: strict
        collect_runs([tmp_path])
    skipped: list[RunFileError] = []
    runs = collect_runs([tmp_path], skipped=skipped)
    assert list(runs["method"]) == ["none"] and len(skipped) == 1
    assert skipped[0].path == path.resolve() and "\n" not in str(skipped[0])
    build_tables(runs, include_paper=False)  # what was read builds


@pytest.mark.parametrize("record, reason", [
    ("{\"kind\": \"long_audio_benchmark\", \"rows\": [", r"not valid JSON"),
    ({"kind": "long_audio_benchmark", "rows": {"beam": 1}}, r"needs a list field 'rows'"),
    ({"kind": "long_audio_benchmark", "rows": [3]}, r"rows\[0\] is int, not an object"),
    ({"kind": "long_audio_benchmark", "rows": [{"beam": 1, "audio_s": 60, "method": "none"}]},
     r"rows\[0\] misses field 'flops_target'"),
    ({"kind": "long_audio_benchmark", "rows": [{"beam": 1, "audio_s": "60s", "method": "none", "flops_target": 0,
                                                "prefill_s": "fast"}]},
     r"rows\[0\] has field\(s\) of the wrong type: audio_s='60s', prefill_s='fast'"),
])
def test_malformed_benchmark_files_are_named_and_left_out(tmp_path, record, reason):
    write_benchmark(tmp_path / "good" / "bench.json")
    bad = tmp_path / "bad" / "bench.json"
    bad.parent.mkdir()
    bad.write_text(record if isinstance(record, str) else json.dumps(record))
    (tmp_path / "good" / "settings.json").write_text("{trunc")  # a run folder's file, never read as a benchmark
    with pytest.raises(RunFileError, match="bad/bench.json: .*" + reason):
        collect_benchmarks([tmp_path])
    skipped: list[RunFileError] = []
    bench = collect_benchmarks([tmp_path], skipped=skipped)
    assert len(skipped) == 1 and set(bench["file"]) == {str((tmp_path / "good" / "bench.json").resolve())}
    assert any(t.kind == "long_audio" for t in build_tables(collect_runs([tmp_path]), bench, include_paper=False))


@pytest.mark.parametrize("record, reason", [
    ("{\"layers\": [", r"not valid JSON"),
    ({"layers": []}, r"needs a non-empty list field 'layers'"),
    ({"layers": [{"layer": 0}]}, r"layers\[0\] needs fields 'layer' and 'te'"),
    ({"layers": [{"layer": "0", "te": 1.0}]}, r"layers\[0\] needs an integer 'layer'"),
    ({"layers": [{"layer": 0, "te": 1.0, "rank": "first"}]}, r"numeric or null 'rank'"),
    ({"layers": [{"layer": 0, "te": 1.0}], "selected_layer": "best"}, r"selected_layer is 'best'"),
])
def test_malformed_transfer_entropy_files_are_named_and_left_out(tmp_path, record, reason):
    (tmp_path / "transfer_entropy.json").write_text(record if isinstance(record, str) else json.dumps(record))
    with pytest.raises(RunFileError, match="transfer_entropy.json: .*" + reason):
        collect_transfer_entropy([tmp_path])
    skipped: list[RunFileError] = []
    assert collect_transfer_entropy([tmp_path], skipped=skipped) == [] and len(skipped) == 1


def test_a_table_whose_runs_disagree_is_left_out_and_the_rest_built(tmp_path, capsys):
    make_results(tmp_path / "results")
    write_run(tmp_path / "results", "er_other_metric", "fastv", 0.3, 0.5, settings={"start_layer": 1},
              task="er", metric="f1", dataset="emo")
    refused: list[str] = []
    tables = build_tables(collect_runs([tmp_path / "results"]), include_paper=False, skipped=refused)
    # the ER methods table and the paper layouts holding ER: one line each, naming the group
    assert refused and all("/ er / emo/test" in r and "disagree on the headline metric" in r for r in refused)
    assert all("\n" not in r for r in refused)
    assert not any(t.name.startswith("methods_whisper_tiny_en_er") for t in tables)
    assert any(t.name.startswith("methods_whisper_tiny_en_asr") for t in tables)
    script = make_tables_script()
    out = tmp_path / "out"
    assert script.main(["--results", str(tmp_path / "results"), "--out", str(out), "--strict"]) == 1
    assert "table not built: " in capsys.readouterr().err
    assert "table not built: " in (out / "tables" / "index.md").read_text()


def test_a_missing_extra_folder_is_one_line_exit_2(tmp_path, capsys):
    script = make_tables_script()
    with pytest.raises(SystemExit) as stop:
        script.main([str(tmp_path / "nowhere"), "--results", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert stop.value.code == 2 and "no such file or folder" in capsys.readouterr().err
