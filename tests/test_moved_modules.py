"""Modules moved by the package reorganisation keep working under their old names, with a
DeprecationWarning that names the new home (the README's Python API is stable)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

MOVED = {
    "fastadasp.runner": "fastadasp.run.runner",
    "fastadasp.config": "fastadasp.run.config",
    "fastadasp.run_folder": "fastadasp.run.folder",
    "fastadasp.merge": "fastadasp.run.merge",
    "fastadasp.score": "fastadasp.run.score",
    "fastadasp.analysis.transfer_entropy": "fastadasp.run.transfer_entropy",
    "fastadasp.data.dataset": "fastadasp.run.datasets",
    "fastadasp.models.tiny": "fastadasp.testing.tiny_models",
    "fastadasp.data.fixtures": "fastadasp.testing.fixtures",
    "fastadasp.data.demo_set": "fastadasp.data.synthetic.demo_sets",
}


@pytest.mark.parametrize("old,new", MOVED.items())
def test_old_name_is_the_new_module_and_warns(old, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_python_m_old_name_runs_the_new_entry_point():
    out = subprocess.run([sys.executable, "-m", "fastadasp.merge", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--out" in out.stdout and "moved to fastadasp.run.merge" in out.stderr
