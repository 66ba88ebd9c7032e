"""Read run folders (``metrics.json``), long-audio benchmark files and Transfer-Entropy
files into pandas objects.

Everything a table needs to place a run is taken from what the run recorded
(model, task, dataset, method and its settings, cost model, FLOPs target),
never from folder names: folders are renamed, copied and mislabelled. Old runs'
cost-model names (``budget_model: flops | paper``) are read as the new ones
(``analytic | token_layer``, :func:`fastadasp.analysis.names.cost_model_name`), so old and
new runs share tables.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .names import REPO_CONFIGS, benchmark_name, cost_model_name, model_config_name, te_model_name

__all__ = [
    "LOWER_IS_BETTER",
    "METHOD_LABELS",
    "RunFileError",
    "RUN_FILE_NAMES",
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
    "run_dir", "model", "model_config", "task", "dataset", "dataset_split", "dataset_fingerprint", "limit", "shard",
    "method", "schedule", "weighted", "layer", "settings", "settings_key", "budget_model", "flops_target",
    "flops_realized", "seed", "primary_metric", "higher_is_better", "value", "metrics", "normalizer",
    "num_samples", "num_failed", "git_commit", "git_dirty", "metrics_interval", "collapses",
]

#: settings that tell repeated runs of one cell apart and so are averaged over
REPEAT_KEYS = frozenset({"seed"})


class RunFileError(ValueError):
    """A metrics / benchmark / TE file that cannot be read as its contract says; the message
    is one line that starts with the file's path."""

    def __init__(self, path: str | Path, reason: str):
        shown = os.path.relpath(path)
        super().__init__(f"{path if shown.startswith('..') else shown}: {reason}")
        self.path = Path(path)
        self.reason = reason

    def __reduce__(self):  # picklable despite the two-argument constructor
        return type(self), (self.path, self.reason)


#: file names under a results tree that are never benchmark files (run folders hold them)
RUN_FILE_NAMES = frozenset({"metrics.json", "settings.json"})
#: numeric fields a long-audio benchmark row may carry (a number or null each)
BENCHMARK_NUMBERS = ("token_reduction", "flops_realized", "rtf", "prefill_s", "decode_s", "new_tokens",
                     "throughput_tok_s", "kv_bytes", "kv_bytes_full", "peak_mem_bytes", "repeats")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _skip_or_raise(error: RunFileError, skipped: list[RunFileError] | None) -> None:
    """Collectors raise on an unreadable file unless the caller collects them (`make tables`)."""
    if skipped is None:
        raise error
    skipped.append(error)


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
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RunFileError(path, f"not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise RunFileError(path, f"not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise RunFileError(path, f"cannot be read ({exc.strerror or exc})") from exc


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
        raise RunFileError(path, f"field 'metrics' must be a dict, got {type(scores).__name__}")
    name = record.get("primary_metric")
    if name is None:  # contract: the metric's first numeric key is its headline value
        name = next((k for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)), None)
        if name is None:
            raise RunFileError(path, "field 'metrics' has no numeric value and no 'primary_metric' is recorded")
    if not isinstance(name, str) or name not in scores:
        raise RunFileError(path, f"primary_metric {name!r} is not a key of 'metrics' ({sorted(scores)})")
    if not _is_number(scores[name]):
        raise RunFileError(path, f"metrics.{name} (the headline metric) is {scores[name]!r}, not a number")
    higher = record.get("higher_is_better")
    return name, float(scores[name]), higher_is_better_for(name) if higher is None else bool(higher)


def _dataset(record: dict) -> dict:
    data = record.get("dataset")
    if data is None:
        return {"name": "unknown", "split": None, "fingerprint": None}
    if isinstance(data, str):
        return {"name": data, "split": None, "fingerprint": None}
    # a set with one part per language (demo_multilingual, CoVoST's source language): the language
    # tells its parts apart in the split, so tables of different languages never share a name
    split = "_".join(str(x) for x in (data.get("split"), data.get("language")) if x) or None
    return {"name": data.get("name", "unknown"), "split": split, "fingerprint": data.get("fingerprint")}


def _check_run_fields(path: Path, record: Any) -> None:
    """Every field a table reads has the type it needs, so a bad file is named here and
    never fails later inside a table."""
    if not isinstance(record, dict):
        raise RunFileError(path, f"a run's metrics.json must hold a JSON object, got {type(record).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise RunFileError(path, f"missing field(s) {missing} (a run's metrics.json must have {list(REQUIRED_KEYS)})")
    wrong = [k for k in ("model", "task", "method", "budget_model") if not isinstance(record[k], str)]
    wrong += [k for k in ("flops_target",) if not _is_number(record[k])]
    wrong += [k for k in ("flops_realized",) if record.get(k) is not None and not _is_number(record[k])]
    wrong += [k for k in ("seed", "limit") if record.get(k) is not None and not _is_int(record[k])]
    wrong += [k for k in ("method_settings", "git", "shard", "choices") if record.get(k) is not None
              and not isinstance(record[k], dict)]
    if record.get("dataset") is not None and not isinstance(record["dataset"], (str, dict)):
        wrong.append("dataset")
    settings = record.get("method_settings") or {}
    if isinstance(settings, dict):
        wrong += [f"method_settings.{k}" for k in ("layer", "start_layer", "seed")
                  if settings.get(k) is not None and not _is_int(settings[k])]
    choices = record.get("choices") or {}
    if isinstance(choices, dict):  # Hydra's config choices: a name per group, or null (an optional group left out)
        wrong += [f"choices.{k}" for k, v in choices.items() if v is not None and not isinstance(v, str)]
    shard = record.get("shard") or {}
    if isinstance(shard, dict):
        wrong += [f"shard.{k}" for k in ("index", "count") if shard.get(k) is not None and not _is_int(shard[k])]
    if wrong:
        shown = ", ".join(f"{k}={_field(record, k)!r}" for k in wrong)
        raise RunFileError(path, f"field(s) of the wrong type: {shown}")


def _field(record: dict, dotted: str) -> Any:
    head, _, tail = dotted.partition(".")
    return record[head][tail] if tail else record[head]


def _recorded_model_config(record: dict) -> dict | None:
    config = record.get("config")
    model = config.get("model") if isinstance(config, dict) else None
    return model if isinstance(model, dict) else None


def _run_row(path: Path, record: Any, configs: Path | None) -> dict:
    _check_run_fields(path, record)
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
        # the config name the run was composed from (file names); "model" is the source description
        "model_config": model_config_name(str(record["model"]), _recorded_model_config(record),
                                          (record.get("choices") or {}).get("model"), configs),
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
        "budget_model": cost_model_name(str(record["budget_model"])),
        "flops_target": round(float(record["flops_target"]), 4),
        "flops_realized": math.nan if record.get("flops_realized") is None else float(record["flops_realized"]),
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
        # what summarize() recorded (runs since issue 18); tables recompute both from predictions.jsonl when present
        "metrics_interval": record.get("metrics_interval") if isinstance(record.get("metrics_interval"), dict) else None,
        "collapses": record.get("collapses") if isinstance(record.get("collapses"), dict) else None,
    }


def collect_runs(paths: Iterable[str | Path], *, skipped: list[RunFileError] | None = None,
                 configs: str | Path | None = REPO_CONFIGS) -> pd.DataFrame:
    """One row per run: every ``metrics.json`` under ``paths``, settings flattened.

    Runs are identified by their recorded settings only; ``run_dir`` is kept for
    provenance. A file that cannot be read (not JSON, a required field missing or
    of the wrong type) raises :class:`RunFileError` naming the file and the field;
    with a ``skipped`` list the error is appended there and the file left out, so
    one broken run folder does not stop every table. ``configs``: the config folder whose
    ``model/*.yaml`` names the models of runs that did not record their config choices.
    """
    rows = []
    for f in find_files(paths, "metrics.json"):
        try:
            rows.append(_run_row(f, _read_json(f), None if configs is None else Path(configs)))
        except RunFileError as exc:
            _skip_or_raise(exc, skipped)
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _benchmark_rows(f: Path, record: dict) -> list[dict]:
    """The rows of one long_audio_benchmark file, each checked (a file is taken whole or not at all)."""
    if not isinstance(record.get("rows"), list):
        raise RunFileError(f, "a long_audio_benchmark file needs a list field 'rows'")
    rows = []
    for i, row in enumerate(record["rows"]):
        if not isinstance(row, dict):
            raise RunFileError(f, f"rows[{i}] is {type(row).__name__}, not an object")
        for needed in ("beam", "audio_s", "method", "flops_target"):
            if needed not in row:
                raise RunFileError(f, f"rows[{i}] misses field {needed!r}")
        wrong = [k for k in ("beam", "audio_s", "flops_target") if not _is_number(row[k])]
        wrong += [k for k in ("method",) if not isinstance(row[k], str)]
        wrong += [k for k in BENCHMARK_NUMBERS if row.get(k) is not None and not _is_number(row[k])]
        if wrong:
            raise RunFileError(f, f"rows[{i}] has field(s) of the wrong type: "
                                  + ", ".join(f"{k}={row[k]!r}" for k in wrong))
        rows.append({
            "file": str(f),
            "model": record.get("model", "unknown"),
            "name": benchmark_name(record.get("settings")),  # None: the file did not record its arguments
            "device": record.get("device", "unknown"),
            "dtype": record.get("dtype"),
            "command": record.get("command"),
            **{k: v for k, v in row.items() if k != "spread"},
        })
    return rows


def collect_benchmarks(paths: Iterable[str | Path], *, skipped: list[RunFileError] | None = None) -> pd.DataFrame:
    """One row per benchmark row of every ``long_audio_benchmark`` JSON file under ``paths``.

    The file-level fields (model, device, dtype, command) are repeated on each row,
    and ``file`` names the source. JSON files of other kinds are passed over; one that
    is not valid JSON cannot be told apart from a broken benchmark and is an error
    (with a ``skipped`` list: listed there and left out, as in :func:`collect_runs`).
    """
    rows = []
    for f in find_files(paths, "*.json"):
        if f.name in RUN_FILE_NAMES or f.name.startswith("transfer_entropy"):
            continue
        try:
            record = _read_json(f)
            if isinstance(record, dict) and record.get("kind") == "long_audio_benchmark":
                rows += _benchmark_rows(f, record)
        except RunFileError as exc:
            _skip_or_raise(exc, skipped)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["flops_target"] = frame["flops_target"].astype(float).round(4)
    return frame


def _te_record(f: Path, record: Any) -> dict:
    layers = record.get("layers") if isinstance(record, dict) else None
    if not isinstance(layers, list) or not layers:
        raise RunFileError(f, "a transfer-entropy file needs a non-empty list field 'layers'")
    for i, entry in enumerate(layers):
        if not isinstance(entry, dict) or "layer" not in entry or "te" not in entry:
            raise RunFileError(f, f"layers[{i}] needs fields 'layer' and 'te'")
        if not _is_int(entry["layer"]) or not _is_number(entry["te"]) or \
                (entry.get("rank") is not None and not _is_number(entry["rank"])):
            raise RunFileError(f, f"layers[{i}] needs an integer 'layer', a numeric 'te' and a numeric or null "
                                  f"'rank', got {entry!r}")
    if record.get("selected_layer") is not None and not _is_int(record["selected_layer"]):
        raise RunFileError(f, f"selected_layer is {record['selected_layer']!r}, not a layer number")
    wrong = [k for k in ("model", "task") if record.get(k) is not None and not isinstance(record[k], str)]
    if wrong:
        raise RunFileError(f, f"field(s) {wrong} must be text")
    curve = pd.DataFrame(layers)
    if "rank" not in curve:  # rank 1 = lowest TE (SPEC s.6: low TE = least change)
        curve["rank"] = curve["te"].rank(method="min")
    curve["rank"] = pd.to_numeric(curve["rank"], errors="coerce")  # None: reference or infeasible layer
    return {**{k: v for k, v in record.items() if k != "layers"}, "curve": curve.sort_values("layer"), "file": str(f),
            "model_config": te_model_name(record)}


def collect_transfer_entropy(paths: Iterable[str | Path], *, skipped: list[RunFileError] | None = None) -> list[dict]:
    """Every ``transfer_entropy*.json`` under ``paths`` as a dict with a ``curve`` DataFrame
    (columns layer, te, rank), ``file`` and ``model_config`` (the model's config name, for file names);
    other keys as written (model, task, selected_layer, rule).
    An unreadable file raises :class:`RunFileError`, or with ``skipped`` is listed there and left out."""
    found = []
    for f in find_files(paths, "transfer_entropy*.json"):
        try:
            found.append(_te_record(f, _read_json(f)))
        except RunFileError as exc:
            _skip_or_raise(exc, skipped)
    return found
