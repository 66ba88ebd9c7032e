"""Score prediction rows again from a run folder alone (no model, no dataset).

``settings.json`` holds the resolved task config, so the task's parser and
metric can be rebuilt; each row carries its reference and the fields its
parser looked at (labels, choices). Shared by ``fastadasp.run.score`` (re-score
with other metric settings) and ``fastadasp.run.merge`` (combine shards).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ..data.manifest import Sample
from .folder import RunFolderError, read_predictions
from ..tasks.definition import Task

__all__ = ["load_run", "task_from_settings", "reparse"]


def load_run(run_dir: str | Path) -> tuple[dict, list[dict], dict | None]:
    """``(settings, prediction rows, metrics or None)`` of a run folder."""
    run_dir = Path(run_dir)
    settings_path = run_dir / "settings.json"
    if not settings_path.is_file():
        raise RunFolderError(f"{run_dir} is not a run folder: settings.json is missing")
    settings = json.loads(settings_path.read_text(encoding="utf-8"))
    rows, partial = read_predictions(run_dir / "predictions.jsonl")
    if partial:
        raise RunFolderError(f"{run_dir}/predictions.jsonl ends in a partial line: the run did not finish; resume it first")
    metrics_path = run_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None
    return settings, rows, metrics


def task_from_settings(settings: dict, overrides: Sequence[str] = ()) -> Task:
    """The run's task (metric and parser instantiated), with dotlist overrides
    such as ``metric.normalizer=paper``."""
    from omegaconf import OmegaConf

    from .instantiate import instantiate as _instantiate

    node = OmegaConf.create(settings["task"])
    if overrides:
        node = OmegaConf.merge(node, OmegaConf.from_dotlist(list(overrides)))
    return Task.from_config(node, _instantiate)


def reparse(task: Task, rows: list[dict]) -> list[dict]:
    """Rows with ``answer`` parsed again from the raw prediction by ``task``'s parser."""
    out = []
    for r in rows:
        fields = dict(r.get("fields") or {})
        text = r["reference"] if task.reference == "text" and isinstance(r["reference"], str) else None
        if task.reference != "text":
            fields[task.reference] = r["reference"]
        sample = Sample(r["id"], Path("."), text, fields)
        out.append({**r, "answer": task.answer(r["prediction"], sample)})
    return out


def rescore(task: Task, rows: list[dict]) -> dict[str, Any]:
    return task.score_rows(reparse(task, rows))
