"""Scale-out: shards and their merge, re-scoring, launchers, model reuse, W&B offline.

On the tiny random Whisper: plumbing and equalities, never scores.
"""

import json
import os
import subprocess
import sys
from functools import partial

import pytest
from conftest import ROOT, noise_clips, tiny_whisper_overrides, tiny_whisper_run, write_jsonl

from fastadasp.run import score
from fastadasp.run.merge import merge_shards
from fastadasp.run.folder import RunFolderError
from fastadasp.run.runner import ModelCache, main

#: metrics.json keys that describe one process (timings, which shard), not the evaluation
PER_PROCESS = {"wall_s", "samples_per_s", "shard", "config", "failures", "mean_encoder_s", "mean_decoder_s",
               "device", "git", "choices"}  # how the config was composed (empty outside Hydra)


@pytest.fixture()
def manifest(tmp_path):
    rows = noise_clips(tmp_path, 5, seed=1, first=12000, step=3000, text="hello world number {i}")
    return write_jsonl(tmp_path / "m.jsonl", [*rows, {"id": "gone", "audio": "wav/gone.wav", "text": "x"}])


#: the tiny Whisper on a manifest (``overrides(model_dir, manifest, *extra)``), and its run config
#: writing into a folder (``cfg_for(model_dir, manifest, out, *extra)``): four decoded tokens
overrides = partial(tiny_whisper_overrides, max_new_tokens=4)
cfg_for = partial(tiny_whisper_run, max_new_tokens=4)


def evaluation_keys(metrics):
    return {k: v for k, v in metrics.items() if k not in PER_PROCESS}


def test_shards_merge_to_the_single_process_result(tiny_whisper_dir, manifest, tmp_path):
    common = ("method=random_merge", "method.layer=1", "flops=0.3")
    single = main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "single", *common))
    shards = []
    for i in range(3):
        out = tmp_path / f"shard{i}"
        m = main(cfg_for(tiny_whisper_dir, manifest, out, *common, f"shard={i}", "num_shards=3"))
        assert m["shard"] == {"index": i, "count": 3}
        shards.append(out)
    assert sorted(r["id"] for d in shards for r in map(json.loads, (d / "predictions.jsonl").read_text().splitlines())) \
        == [f"s{i}" for i in range(5)]
    merged = merge_shards(shards, tmp_path / "merged")
    assert evaluation_keys(merged) == evaluation_keys(json.loads(json.dumps(single)))
    assert [f["id"] for f in merged["failures"]] == ["gone"]
    assert json.loads((tmp_path / "merged" / "metrics.json").read_text())["metrics"] == single["metrics"]
    with pytest.raises(RunFolderError, match=r"missing shard\(s\) \[2\]"):
        merge_shards(shards[:2], tmp_path / "m2")
    other = main(cfg_for(tiny_whisper_dir, manifest, tmp_path / "other", "method=random_merge", "method.layer=1",
                         "flops=0.2", "shard=2", "num_shards=3"))
    assert other["num_samples"] + other["num_failed"] == 2  # samples 2 and 5 of 6
    with pytest.raises(RunFolderError, match="not shards of one run.*budget.flops"):
        merge_shards([*shards[:2], tmp_path / "other"], tmp_path / "m3")


def test_rescoring_a_run_without_the_model(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "run"
    metrics = main(cfg_for(tiny_whisper_dir, manifest, out))
    same = score.main([str(out)])
    assert same["metrics"] == metrics["metrics"]
    paper = score.main([str(out), "metric.normalizer=paper", "--out", str(tmp_path / "paper.json")])
    assert paper["metrics"]["normalizer"] == "paper"
    assert json.loads((tmp_path / "paper.json").read_text())["metrics"] == paper["metrics"]
    proc = subprocess.run([sys.executable, "-m", "fastadasp.run.score", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "settings.json is missing" in proc.stderr


def test_multirun_in_one_process_loads_the_model_once_and_equals_separate_runs(tiny_whisper_dir, manifest, tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "run.py", "-m", *overrides(tiny_whisper_dir, manifest, "method=fastadasp_dense",
                                                     "flops=0.1,0.3", f"hydra.sweep.dir={sweep}")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("reusing the loaded model") == 1
    jobs = sorted(sweep.glob("*/metrics.json"))
    assert len(jobs) == 2
    cache = ModelCache()
    for path in jobs:
        swept = json.loads(path.read_text())
        alone = main(cfg_for(tiny_whisper_dir, manifest, tmp_path / f"alone{swept['flops_target']}", "method=fastadasp_dense",
                             f"flops={swept['flops_target']}"), model_cache=cache)
        assert evaluation_keys(alone) == evaluation_keys(swept) | {"dataset": alone["dataset"]}
        assert alone["dataset"]["fingerprint"] == swept["dataset"]["fingerprint"]
    assert cache.loads == 1  # the two separate runs reused one model too


def test_submitit_local_launcher_runs_a_multirun(tiny_whisper_dir, manifest, tmp_path):
    sweep = tmp_path / "submitit"
    proc = subprocess.run(
        [sys.executable, "run.py", "-m", "hydra/launcher=local",
         *overrides(tiny_whisper_dir, manifest, "limit=2", "method=fastv", "flops=0.1,0.2", f"hydra.sweep.dir={sweep}")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = sorted(json.loads(p.read_text())["flops_target"] for p in sweep.glob("*/metrics.json"))
    assert got == [0.1, 0.2]
    assert list((sweep / ".submitit").glob("*/*_log.out"))  # submitit's own job folders and logs


def test_wandb_offline_logs_metrics_and_a_predictions_table(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "wb"
    env_before = os.environ.get("WANDB_MODE")
    os.environ.pop("WANDB_MODE", None)
    try:
        main(cfg_for(tiny_whisper_dir, manifest, out, "logger=wandb", "limit=3", "method=fastv", "flops=0.2"))
    finally:
        if env_before is not None:
            os.environ["WANDB_MODE"] = env_before
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    tables = list(runs[0].glob("files/media/table/predictions_*.table.json"))
    assert tables, sorted(str(p.relative_to(runs[0])) for p in runs[0].rglob("*"))
    table = json.loads(tables[0].read_text())
    assert table["columns"][:3] == ["id", "reference", "prediction"]
    assert [row[0] for row in table["data"]] == ["s0", "s1", "s2"]
    assert (out / "metrics.json").is_file()


def test_wandb_failure_never_loses_local_results(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "wbfail"
    metrics = main(cfg_for(tiny_whisper_dir, manifest, out, "logger=wandb", "logger.mode=no-such-mode", "limit=1"))
    assert metrics["num_samples"] == 1 and (out / "metrics.json").is_file()
