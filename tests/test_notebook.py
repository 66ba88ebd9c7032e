"""notebooks/analysis.py (jupytext percent format) runs end to end on a synthetic results
folder and shows the tables and plots. The kernel is the venv's python3 kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

from test_tables import make_results

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "analysis.py"


def _texts(nb, mime: str) -> list[str]:
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if mime == "stream" and output.get("output_type") == "stream":
                out.append(output["text"])
            elif mime in output.get("data", {}):
                out.append(output["data"][mime])
    return out


def test_analysis_notebook_runs_and_shows_tables_and_plots(tmp_path, monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager

    # the venv's kernel spec first, whatever a user-level jupyter folder holds
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))
    spec = KernelSpecManager().get_kernel_spec("python3")
    if not Path(spec.resource_dir).resolve().is_relative_to(Path(sys.prefix).resolve()):
        pytest.fail(f"kernel python3 resolves to {spec.resource_dir}, outside the venv {sys.prefix}: "
                    f"run `{sys.executable} -m ipykernel install --prefix {sys.prefix}`")
    results = make_results(tmp_path / "results")
    monkeypatch.setenv("FASTADASP_RESULTS", str(results))
    monkeypatch.setenv("FASTADASP_PLOTS", str(tmp_path / "plots"))
    nb = jupytext.read(NOTEBOOK)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # no outputs committed
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()

    streams = "".join(_texts(nb, "stream"))
    assert f"python: {sys.executable}" in streams  # the kernel ran the venv's interpreter
    assert "18 runs, 4 long-audio benchmark rows, 1 transfer-entropy files" in streams
    markdown = "\n".join(_texts(nb, "text/markdown"))
    assert "| Random Merge" in markdown and "8.00 ± 1.00 (n=3)" in markdown
    assert "## Paper: WavLLM Table 1" in markdown and "## Provenance" in markdown
    assert "Talk Table 6 layout (layer selection)" in markdown and "(1.50x)" in markdown
    html = "\n".join(_texts(nb, "text/html"))
    assert "0.304" in html  # realised FLOPs of the 30% target, in the realised-vs-target pivot
    images = _texts(nb, "image/png")
    assert len(images) == len(list((tmp_path / "plots").glob("*.png"))) == 5  # ASR x 2 budget models, ER, long audio, TE
