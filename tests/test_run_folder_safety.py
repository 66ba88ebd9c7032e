"""Run folders under hostile use (issue 15, section 3): nothing finished is ever lost.

- ``overwrite=true`` keeps the old results aside until the new run's
  ``metrics.json`` exists, and puts them back when it stops before its first row
  (at once, or at the next run if the process was killed);
- ``fastadasp.run.merge`` never writes into an input shard and refuses an output
  that holds results unless ``--overwrite``;
- a run folder is locked (real ``fcntl.flock``, other processes) for the life of
  a run and of a merge; a stale lock is taken over;
- duplicated rows are counted once (resume, score, merge), and said;
- result files get the umask's mode; ``run.log`` tells how a run ended.

On the tiny random Whisper (plumbing, never scores); lock holders are small
subprocesses that use :mod:`fastadasp.run.folder` directly.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, noise_clips, tiny_whisper_overrides, tiny_whisper_run, write_jsonl

from fastadasp.run import merge, score
from fastadasp.run.merge import merge_shards
from fastadasp.run.folder import KEPT_DIR, LOCK_FILE, RunFolder, RunFolderError
from fastadasp.run.runner import ModelCache, main

HOST = socket.gethostname()
#: one thread per subprocess: the tests share two noisy cores (conftest does the same in-process)
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
RESULTS = ("predictions.jsonl", "metrics.json", "settings.json")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety_data")
    return write_jsonl(root / "m.jsonl", noise_clips(root, 4, seed=3, first=8000, step=2000))


#: the tiny Whisper on a manifest, three decoded tokens: ``overrides(model_dir, manifest, *extra)``,
#: and its run config writing into a folder: ``cfg_for(model_dir, manifest, out, *extra)``
overrides, cfg_for = tiny_whisper_overrides, tiny_whisper_run


def snapshot(folder: Path) -> dict[str, bytes]:
    """The result files' bytes (what must survive every refusal and failure)."""
    return {name: (folder / name).read_bytes() for name in RESULTS if (folder / name).is_file()}


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]


class _Crash(RuntimeError):
    pass


class _FailingModel:
    """The real model, whose ``generate`` fails at call number ``fail_at`` (1-based)."""

    def __init__(self, model, fail_at: int, error: type[BaseException]):
        self._model, self._fail_at, self._error, self._calls = model, fail_at, error, 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate(self, *args, **kwargs):
        self._calls += 1
        if self._calls == self._fail_at:
            raise self._error("simulated crash in generate")
        return self._model.generate(*args, **kwargs)


class FailingCache(ModelCache):
    def __init__(self, fail_at: int, error: type[BaseException] = _Crash):
        super().__init__()
        self.fail_at, self.error = fail_at, error

    def get(self, node):
        return _FailingModel(super().get(node), self.fail_at, self.error)


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True, env=ONE_THREAD, **kwargs)


#: holds a folder's lock until its stdin is closed
HOLDER = """
import os, sys
from fastadasp.run.folder import RunFolder
folder = RunFolder(sys.argv[1])
folder.check({}, resume=False, overwrite=True)  # overwrite: no refusal; nothing changes before start()
print(os.getpid(), flush=True)
sys.stdin.read()
folder.close()
"""


class Holder:
    """Another process holding a folder's lock (a real flock) while the ``with`` block runs."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self) -> int:
        self.proc = python(HOLDER, str(self.folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line.strip(), self.proc.stderr.read()
        return int(line)

    def __exit__(self, *exc):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr.read()


def lock_is_free(folder: Path) -> bool:
    """Whether another process can take the folder's lock now."""
    proc = subprocess.run([sys.executable, "-c", "import sys; from fastadasp.run.folder import RunFolder;"
                           "RunFolder(sys.argv[1]).check({}, resume=False, overwrite=True)", str(folder)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    return proc.returncode == 0


@pytest.fixture()
def finished(tiny_whisper_dir, manifest, tmp_path):
    """A finished 3-sample run and its files' bytes."""
    out = tmp_path / "done"
    main(cfg_for(tiny_whisper_dir, manifest, out, "limit=3"))
    return out, snapshot(out)


# -- overwrite=true ----------------------------------------------------------------------------


@pytest.mark.parametrize("error", [_Crash, KeyboardInterrupt])
def test_overwrite_that_stops_before_its_first_row_leaves_the_finished_run_as_it_was(
        tiny_whisper_dir, manifest, finished, caplog, error):
    out, before = finished
    with caplog.at_level(logging.INFO), pytest.raises(error):
        main(cfg_for(tiny_whisper_dir, manifest, out, "overwrite=true", "method=fastv", "method.layer=1",
                     "flops=0.2"), model_cache=FailingCache(fail_at=1, error=error))
    assert snapshot(out) == before
    assert not (out / KEPT_DIR).exists() and not (out / LOCK_FILE).exists()
    assert "set the results already there aside" in caplog.text and "back in place" in caplog.text


def test_overwrite_with_a_method_setting_that_fails_keeps_the_finished_run(tiny_whisper_dir, manifest, finished):
    """The issue's command: a start layer beyond the 4-layer encoder, and H2O on Whisper."""
    out, before = finished
    for bad in (("method=fastadasp_sparse", "method.layer=99", "flops=0.3"), ("method=h2o", "flops=0.3")):
        with pytest.raises(ValueError):
            main(cfg_for(tiny_whisper_dir, manifest, out, "overwrite=true", *bad))
        assert snapshot(out) == before and not (out / KEPT_DIR).exists()


def test_overwrite_that_stops_after_rows_keeps_the_old_results_aside_until_it_finishes(
        tiny_whisper_dir, manifest, finished, caplog):
    out, before = finished
    new = ("overwrite=true", "method=fastv", "method.layer=1", "flops=0.2")
    with caplog.at_level(logging.WARNING), pytest.raises(_Crash):
        main(cfg_for(tiny_whisper_dir, manifest, out, *new), model_cache=FailingCache(fail_at=3))
    assert f"stay in {out / KEPT_DIR}" in caplog.text
    kept = {p.name: p.read_bytes() for p in (out / KEPT_DIR).iterdir()}
    assert kept == {f"{name}.kept": data for name, data in before.items()}  # no tool reads them as a run
    assert len(rows_of(out)) == 2 and not (out / "metrics.json").exists()
    # a plain rerun is refused; resume continues the new run and, once it finishes, drops the old results
    with pytest.raises(RunFolderError, match="already holds results"):
        main(cfg_for(tiny_whisper_dir, manifest, out, "method=fastv", "method.layer=1", "flops=0.2"))
    metrics = main(cfg_for(tiny_whisper_dir, manifest, out, "resume=true", *new[1:]))
    assert metrics["num_samples"] == 4 and metrics["method"] == "fastv"
    assert not (out / KEPT_DIR).exists() and sorted(r["id"] for r in rows_of(out)) == ["s0", "s1", "s2", "s3"]


def test_a_second_overwrite_over_an_unfinished_one_keeps_the_last_finished_results(
        tiny_whisper_dir, manifest, finished):
    out, before = finished
    new = ("overwrite=true", "method=fastv", "method.layer=1", "flops=0.2")
    with pytest.raises(_Crash):
        main(cfg_for(tiny_whisper_dir, manifest, out, *new), model_cache=FailingCache(fail_at=2))
    with pytest.raises(_Crash):  # discards the unfinished rows, then stops before a row of its own
        main(cfg_for(tiny_whisper_dir, manifest, out, *new), model_cache=FailingCache(fail_at=1))
    assert snapshot(out) == before and not (out / KEPT_DIR).exists()


KILLED_OVERWRITE = """
import json, os, signal, sys
from fastadasp.run.folder import RunFolder
folder = RunFolder(sys.argv[1])
folder.check({"new": True}, resume=False, overwrite=True)
folder.start({"new": True}, [])
with folder.predictions.open("a") as fh:
    for i in range(int(sys.argv[2])):
        folder.append(fh, {"id": f"new{i}", "index": i, "prediction": "x"})
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_overwrite_killed_before_its_first_row_is_put_back_by_the_next_run(finished, caplog):
    out, before = finished
    proc = python(KILLED_OVERWRITE, str(out), "0")
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert (out / KEPT_DIR).is_dir() and (out / LOCK_FILE).is_file()  # what a killed process leaves
    with caplog.at_level(logging.WARNING):
        with RunFolder(out) as folder, pytest.raises(RunFolderError, match="already holds results"):
            folder.check({}, resume=False, overwrite=False)
    assert f"took over the lock of pid {proc.pid} on host {HOST}" in caplog.text
    assert "put back the results" in caplog.text
    assert snapshot(out) == before and not (out / KEPT_DIR).exists() and not (out / LOCK_FILE).exists()


def test_an_overwrite_killed_after_rows_keeps_both_until_it_finishes(finished):
    out, before = finished
    assert python(KILLED_OVERWRITE, str(out), "2").wait(timeout=60) == -signal.SIGKILL
    with RunFolder(out) as folder:
        assert [r["id"] for r in folder.check({"new": True}, resume=True, overwrite=False)] == ["new0", "new1"]
        assert (out / KEPT_DIR / "metrics.json.kept").read_bytes() == before["metrics.json"]
        folder.start({"new": True}, folder._rows)
        folder.finish({"done": True})
    assert not (out / KEPT_DIR).exists() and json.loads((out / "metrics.json").read_text()) == {"done": True}


# -- merge -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(tiny_whisper_dir, manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("safety_shards")
    dirs = []
    for i in range(2):
        main(cfg_for(tiny_whisper_dir, manifest, root / f"shard{i}", f"shard={i}", "num_shards=2"))
        dirs.append(root / f"shard{i}")
    return dirs


def run_merge(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "fastadasp.run.merge", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=ONE_THREAD)


def test_merge_refuses_an_output_that_holds_results_unless_overwrite(shards, finished):
    out, before = finished
    proc = run_merge(*shards, "--out", out)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {out} already holds results; add --overwrite to replace them, or choose another --out folder"]
    assert snapshot(out) == before
    assert merge.main([*map(str, shards), "--out", str(out), "--overwrite"])["num_samples"] == 4
    assert json.loads((out / "metrics.json").read_text())["num_samples"] == 4
    assert not (out / KEPT_DIR).exists() and not (out / LOCK_FILE).exists()


def test_merge_never_writes_into_an_input_shard(shards, tmp_path, monkeypatch):
    before = [snapshot(d) for d in shards]
    link = tmp_path / "link-to-shard0"
    link.symlink_to(shards[0], target_is_directory=True)
    proc = run_merge(*shards, "--out", link, "--overwrite")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: --out {link} is the input shard {shards[0]}: the merge would overwrite it; choose a new output folder"]
    monkeypatch.chdir(shards[1])
    for out in (shards[0], link, Path("..") / shards[0].name, Path("."), Path("../shard0/")):
        for overwrite in (False, True):
            with pytest.raises(RunFolderError, match="is the input shard"):
                merge_shards(shards, out, overwrite=overwrite)
    assert [snapshot(d) for d in shards] == before


def test_merge_counts_duplicated_rows_once(shards, tmp_path, caplog):
    copy = tmp_path / "dup0"
    copy.mkdir()
    for name in RESULTS:
        (copy / name).write_bytes((shards[0] / name).read_bytes())
    first = (copy / "predictions.jsonl").read_text().splitlines()[0]
    with (copy / "predictions.jsonl").open("a") as fh:
        fh.write(first + "\n")
    with caplog.at_level(logging.WARNING):
        merged = merge_shards([copy, shards[1]], tmp_path / "merged")
    assert merged["num_samples"] == 4 and len(rows_of(tmp_path / "merged")) == 4
    assert f"{copy / 'predictions.jsonl'}: 1 id(s) have more than one row" in caplog.text


def test_merge_refuses_a_shard_being_written_and_a_locked_output(shards, tmp_path, caplog):
    with Holder(shards[1]) as pid:
        with pytest.raises(RunFolderError, match=f"shard {shards[1]} is still being written \\(pid {pid} on host"):
            merge_shards(shards, tmp_path / "m1")
        with caplog.at_level(logging.WARNING):  # score reads it, and says the run is not over
            assert score.main([str(shards[1])])["num_samples"] == 2
        assert f"{shards[1]} is still being written (pid {pid} on host {HOST}" in caplog.text
    out = tmp_path / "m2"
    out.mkdir()
    with Holder(out) as pid:
        with pytest.raises(RunFolderError, match=f"{out} is in use by another run \\(pid {pid} on host {HOST}"):
            merge_shards(shards, out)
        assert snapshot(out) == {}
    assert merge.main([*map(str, shards), "--out", str(out)])["num_samples"] == 4


# -- the lock ----------------------------------------------------------------------------------


def test_a_second_run_into_a_locked_folder_is_refused_before_anything(tiny_whisper_dir, manifest, finished):
    out, before = finished
    cache = ModelCache()
    with Holder(out) as pid:
        assert json.loads((out / LOCK_FILE).read_text())["pid"] == pid  # the holder says who it is
        for extra in (("limit=3", "resume=true"), ("overwrite=true",), ("flops=0.5", "method=fastv")):
            with pytest.raises(RunFolderError) as err:
                main(cfg_for(tiny_whisper_dir, manifest, out, *extra), model_cache=cache)
            assert str(err.value).startswith(f"{out} is in use by another run (pid {pid} on host {HOST} since ")
            assert "wait for it to finish" in str(err.value)
        proc = subprocess.run([sys.executable, "run.py", *overrides(tiny_whisper_dir, manifest, "limit=3"),
                               "resume=true", f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env=ONE_THREAD)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
        assert f"in use by another run (pid {pid} on host {HOST}" in proc.stderr
    assert cache.loads == 0 and snapshot(out) == before


def test_the_lock_is_held_for_the_run_and_released_after(tiny_whisper_dir, manifest, tmp_path):
    out = tmp_path / "held"
    seen = {}

    class Probe(ModelCache):
        def get(self, node):
            seen["free_while_loading"] = lock_is_free(out)
            return super().get(node)

    main(cfg_for(tiny_whisper_dir, manifest, out, "limit=1"), model_cache=Probe())
    assert seen == {"free_while_loading": False}
    assert not (out / LOCK_FILE).exists() and lock_is_free(out)


ORPHANED = """
import os, sys, time
from fastadasp.run.folder import RunFolder
folder = RunFolder(sys.argv[1])
folder.check({}, resume=False, overwrite=False)
child = os.fork()
if child == 0:
    time.sleep(120)
    os._exit(0)
print(child, flush=True)
os._exit(0)
"""


def test_a_lock_whose_recorded_holder_died_is_named_so_and_taken_over_once_free(tmp_path, caplog):
    """The recorded holder exited but a process it forked keeps the lock: the refusal says so;
    once that process is gone too, the lock is taken over with a warning naming the dead holder."""
    out = tmp_path / "orphan"
    proc = python(ORPHANED, str(out), stdout=subprocess.PIPE)
    child = int(proc.stdout.readline())
    assert proc.wait(timeout=30) == 0
    try:
        with pytest.raises(RunFolderError, match=f"pid {proc.pid} on host {HOST} since .*no longer running"):
            RunFolder(out).check({}, resume=False, overwrite=False)
    finally:
        os.kill(child, signal.SIGKILL)
    deadline = time.time() + 30
    while not lock_is_free(out):
        assert time.time() < deadline
        time.sleep(0.1)
    proc2 = python(KILLED_OVERWRITE, str(out), "0")  # leaves a lock file naming a dead pid
    assert proc2.wait(timeout=60) == -signal.SIGKILL
    with caplog.at_level(logging.WARNING), RunFolder(out) as folder:
        folder.check({}, resume=False, overwrite=False)
    assert f"took over the lock of pid {proc2.pid} on host {HOST}" in caplog.text


# -- duplicated rows ---------------------------------------------------------------------------


def test_resume_counts_a_duplicated_id_once_and_says_so(tiny_whisper_dir, manifest, tmp_path, caplog):
    out = tmp_path / "dup"
    first = main(cfg_for(tiny_whisper_dir, manifest, out, "limit=3"))
    lines = (out / "predictions.jsonl").read_text().splitlines()
    # two runs once wrote into this folder at once; the second was killed mid-row
    (out / "predictions.jsonl").write_text("\n".join([*lines, lines[0], lines[1]]) + "\n" + lines[2][:20])
    (out / "metrics.json").unlink()
    with caplog.at_level(logging.WARNING):
        again = main(cfg_for(tiny_whisper_dir, manifest, out, "limit=3", "resume=true"))
    messages = [r.getMessage() for r in caplog.records]
    assert f"{out / 'predictions.jsonl'}: 2 id(s) have more than one row (2 extra rows, e.g. 's0', 's1')" \
        in caplog.text
    assert sum("more than one row" in m for m in messages) == 1
    assert sum("partial last line" in m for m in messages) == 1  # main() and evaluate() both read the file
    assert again["num_samples"] == 3 and again["metrics"] == first["metrics"]
    assert [r["id"] for r in rows_of(out)] == ["s0", "s1", "s2"]


def test_score_counts_a_duplicated_id_once(finished, caplog):
    out, _ = finished
    clean = score.main([str(out)])
    with (out / "predictions.jsonl").open("a") as fh:
        fh.write((out / "predictions.jsonl").read_text())
    with caplog.at_level(logging.WARNING):
        doubled = score.main([str(out)])
    assert doubled["num_samples"] == clean["num_samples"] == 3 and doubled["metrics"] == clean["metrics"]
    assert "3 id(s) have more than one row" in caplog.text


# -- file modes and run.log --------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o007, 0o660)])
def test_result_files_get_the_mode_of_any_new_file(tiny_whisper_dir, manifest, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        out = tmp_path / "modes"
        main(cfg_for(tiny_whisper_dir, manifest, out, "limit=1"))
        merged = tmp_path / "merged"
        merge_shards([out], merged)
    finally:
        os.umask(old)
    for folder in (out, merged):
        assert {n: oct((folder / n).stat().st_mode & 0o777) for n in RESULTS} == {n: oct(mode) for n in RESULTS}


FAILING_RUN_PY = """
import runpy, sys
import fastadasp.run.runner as runner

def main(cfg, model_cache=None):
    raise ZeroDivisionError("simulated bug in the run")

runner.main = main
sys.argv = ["run.py", *sys.argv[1:]]
runpy.run_path("run.py", run_name="__main__")
"""


def test_run_log_holds_the_traceback_of_a_failed_run(tmp_path):
    out = tmp_path / "tb"
    proc = python(FAILING_RUN_PY, f"hydra.run.dir={out}", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "ZeroDivisionError" in err
    log = (out / "run.log").read_text()
    assert "run stopped: ZeroDivisionError: simulated bug in the run" in log
    assert "Traceback (most recent call last)" in log and 'File "<string>", line 6, in main' in log


def test_run_log_says_a_run_was_interrupted_and_resume_finishes_it(tiny_whisper_dir, tmp_path):
    rng = np.random.default_rng(5)
    sf.write(tmp_path / "a.wav", rng.normal(0, 0.1, 8000).astype("float32"), 16000)
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"id": f"c{i}", "audio": "a.wav", "text": "x"}) + "\n" for i in range(80)))
    out = tmp_path / "int"
    args = [sys.executable, "run.py", *overrides(tiny_whisper_dir, many, "progress_every=1"),
            f"hydra.run.dir={out}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ONE_THREAD)
    deadline = time.time() + 120
    while not ((out / "run.log").is_file() and "samples/s" in (out / "run.log").read_text()):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "run stopped: KeyboardInterrupt" in (out / "run.log").read_text()
    assert not (out / LOCK_FILE).exists() and 0 < len(rows_of(out)) < 80
    done = subprocess.run([*args, "resume=true"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=ONE_THREAD)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [r["id"] for r in rows_of(out)]
    assert sorted(ids) == sorted(f"c{i}" for i in range(80)) and len(ids) == 80
