"""Read run folders (``metrics.json``), long-audio benchmark files and Transfer-Entropy
files into pandas objects.

Everything a table needs to place a run is taken from what the run recorded
(model, task, dataset, method and its settings, budget model, FLOPs target),
never from folder names: folders are renamed, copied and mislabelled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

__all__ = [
    "LOWER_IS_BETTER",
    "METHOD_LABELS",
    "RunFileError",
    "collect_benchmarks",
    "collect_runs",
    "collect_transfer_entropy",
    "find_files",
    "higher_is_better_for",
]

#: metrics where a smaller value is better, for runs that do not record ``higher_is_better``
LOWER_IS_BETTER = frozenset({"wer", "cer", "ter", "error_rate", "eer"})

#: display names, in the paper's spelling
METHOD_LABELS = {
    "none": "Full-token baseline",
    "h2o": "H2O",
    "random_merge": "Random Merge",
    "random_evict": "Random Evict",
    "atome": "A-ToMe",
    "fastv": "FastV",
    "fastadasp_dense": "FastAdaSP-Dense",
    "fastadasp_sparse": "FastAdaSP-Sparse",
}

#: keys a metrics.json must have for its run to be placed in a table
REQUIRED_KEYS = ("model", "task", "method", "budget_model", "flops_target", "metrics")

#: the columns of :func:`collect_runs`
RUN_COLUMNS = [
    "run_dir", "model", "task", "dataset", "dataset_split", "dataset_fingerprint", "limit", "shard",
    "method", "schedule", "weighted", "layer", "settings", "settings_key", "budget_model", "flops_target",
    "flops_realized", "seed", "primary_metric", "higher_is_better", "value", "metrics", "normalizer",
    "num_samples", "num_failed", "git_commit", "git_dirty",
]

#: settings that tell repeated runs of one cell apart and so are averaged over
REPEAT_KEYS = frozenset({"seed"})


class RunFileError(ValueError):
    """A metrics / benchmark / TE file that cannot be read as its contract says."""


def higher_is_better_for(metric: str) -> bool:
    """Direction of a metric when the run did not record it."""
    return metric.lower() not in LOWER_IS_BETTER


def find_files(paths: Iterable[str | Path], pattern: str) -> list[Path]:
    """Files matching ``pattern`` under every path (recursively); a path may be the file itself.
    Each file once, even when folders overlap. W&B run folders (``wandb/``) are not searched:
    they hold copies of logged tables, not results."""
    seen: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        found = [path] if path.is_file() else sorted(
            f for f in path.rglob(pattern) if "wandb" not in f.relative_to(path).parts[:-1])
        for f in found:
            if f.is_file() and f.match(pattern):
                seen.setdefault(f.resolve(), None)
    return list(seen)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunFileError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc


def _freeze(value: Any) -> Any:
    """A hashable, order-independent form of a setting value."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _primary(path: Path, record: dict) -> tuple[str, float, bool]:
    scores = record["metrics"]
    if not isinstance(scores, dict):
        raise RunFileError(f"{path}: field 'metrics' must be a dict, got {type(scores).__name__}")
    name = record.get("primary_metric")
    if name is None:  # contract: the metric's first numeric key is its headline value
        name = next((k for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)), None)
        if name is None:
            raise RunFileError(f"{path}: field 'metrics' has no numeric value and no 'primary_metric' is recorded")
    if name not in scores:
        raise RunFileError(f"{path}: primary_metric {name!r} is not a key of 'metrics' ({sorted(scores)})")
    if not isinstance(scores[name], (int, float)) or isinstance(scores[name], bool):
        raise RunFileError(f"{path}: metrics.{name} (the headline metric) is {scores[name]!r}, not a number")
    higher = record.get("higher_is_better")
    return name, float(scores[name]), higher_is_better_for(name) if higher is None else bool(higher)


def _dataset(record: dict) -> dict:
    data = record.get("dataset")
    if data is None:
        return {"name": "unknown", "split": None, "fingerprint": None}
    if isinstance(data, str):
        return {"name": data, "split": None, "fingerprint": None}
    return {"name": data.get("name", "unknown"), "split": data.get("split"), "fingerprint": data.get("fingerprint")}


def _run_row(path: Path, record: dict) -> dict:
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise RunFileError(f"{path}: missing field(s) {missing} (a run's metrics.json must have {list(REQUIRED_KEYS)})")
    settings = dict(record.get("method_settings") or {})
    seed = record.get("seed", settings.get("seed"))
    key_settings = {k: v for k, v in settings.items() if k not in REPEAT_KEYS and k != "name"}
    metric, value, higher = _primary(path, record)
    data = _dataset(record)
    git = record.get("git") or {}
    shard = record.get("shard") or {}
    return {
        "run_dir": str(path.parent),
        "model": str(record["model"]),
        "task": str(record["task"]),
        "dataset": str(data["name"]),
        "dataset_split": data["split"],
        "dataset_fingerprint": data["fingerprint"],
        "limit": record.get("limit"),
        # a shard of a larger run (merged runs record index None): not a complete evaluation
        "shard": f"{shard['index']}/{shard['count']}"
        if shard.get("index") is not None and shard.get("count", 1) > 1 else None,
        "method": str(record["method"]),
        "schedule": settings.get("schedule"),
        "weighted": settings.get("weighted"),
        "layer": settings.get("layer", settings.get("start_layer")),
        "settings": key_settings,
        "settings_key": _freeze(key_settings),
        "budget_model": str(record["budget_model"]),
        "flops_target": round(float(record["flops_target"]), 4),
        "flops_realized": float(record.get("flops_realized", math.nan)),
        "seed": seed,
        "primary_metric": metric,
        "higher_is_better": higher,
        "value": value,
        "metrics": record["metrics"],
        "normalizer": record["metrics"].get("normalizer"),
        "num_samples": record.get("num_samples"),
        "num_failed": record.get("num_failed"),
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
    }


def collect_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: every ``metrics.json`` under ``paths``, settings flattened.

    Runs are identified by their recorded settings only; ``run_dir`` is kept for
    provenance. A file that misses a required field raises :class:`RunFileError`
    naming the file and the field.
    """
    rows = [_run_row(f, _read_json(f)) for f in find_files(paths, "metrics.json")]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def collect_benchmarks(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per benchmark row of every ``long_audio_benchmark`` JSON file under ``paths``.

    The file-level fields (model, device, dtype, command) are repeated on each row,
    and ``file`` names the source. JSON files of other kinds are skipped.
    """
    rows = []
    for f in find_files(paths, "*.json"):
        if f.name == "metrics.json" or f.name.startswith("transfer_entropy"):
            continue
        record = _read_json(f)
        if not isinstance(record, dict) or record.get("kind") != "long_audio_benchmark":
            continue
        if not isinstance(record.get("rows"), list):
            raise RunFileError(f"{f}: a long_audio_benchmark file needs a list field 'rows'")
        for i, row in enumerate(record["rows"]):
            for needed in ("beam", "audio_s", "method", "flops_target"):
                if needed not in row:
                    raise RunFileError(f"{f}: rows[{i}] misses field {needed!r}")
            rows.append({
                "file": str(f),
                "model": record.get("model", "unknown"),
                "device": record.get("device", "unknown"),
                "dtype": record.get("dtype"),
                "command": record.get("command"),
                **{k: v for k, v in row.items() if k != "spread"},
            })
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["flops_target"] = frame["flops_target"].astype(float).round(4)
    return frame


def collect_transfer_entropy(paths: Iterable[str | Path]) -> list[dict]:
    """Every ``transfer_entropy*.json`` under ``paths`` as a dict with a ``curve`` DataFrame
    (columns layer, te, rank) and ``file``; other keys as written (model, task, selected_layer, rule)."""
    found = []
    for f in find_files(paths, "transfer_entropy*.json"):
        record = _read_json(f)
        layers = record.get("layers") if isinstance(record, dict) else None
        if not isinstance(layers, list) or not layers:
            raise RunFileError(f"{f}: a transfer-entropy file needs a non-empty list field 'layers'")
        curve = pd.DataFrame(layers)
        for needed in ("layer", "te"):
            if needed not in curve:
                raise RunFileError(f"{f}: every entry of 'layers' needs field {needed!r}")
        if "rank" not in curve:  # rank 1 = lowest TE (SPEC s.6: low TE = least change)
            curve["rank"] = curve["te"].rank(method="min")
        curve["rank"] = pd.to_numeric(curve["rank"], errors="coerce")  # None: reference or infeasible layer
        found.append({**{k: v for k, v in record.items() if k != "layers"}, "curve": curve.sort_values("layer"),
                      "file": str(f)})
    return found
