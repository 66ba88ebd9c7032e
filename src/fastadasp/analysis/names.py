"""Names a reader recognises: table and plot file names from the config names a user typed
(``model=whisper_tiny_en task=asr dataset=demo_dense cost_model=analytic``), and the one place
where the old budget-model spellings are read as the new ones.

A run that recorded its Hydra config choices (``choices`` in metrics.json) is named by them.
Older runs are named by what they recorded: the model config is found by matching the
recorded ``config.model`` against ``configs/model/*.yaml``; the dataset name a run records is
its dataset config's ``corpus``, which is the config's file name. Folder names are never read.
When nothing matches, the name falls back to the model's source description, made file-safe.
"""

from __future__ import annotations

import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = [
    "COST_MODEL_LABELS",
    "COST_MODEL_NAMES",
    "REPO_CONFIGS",
    "benchmark_name",
    "cost_model_label",
    "cost_model_name",
    "model_config_name",
    "slug",
    "te_model_name",
]

#: the cost model's old spellings (config group ``budget=flops|paper``) -> the new ones (``cost_model=``);
#: the same as fastadasp.reduction.budget.DEPRECATED_COST_MODEL_NAMES (a test holds them equal), copied
#: so that reading results never imports torch
COST_MODEL_NAMES = {"flops": "analytic", "paper": "token_layer"}
#: how captions name each cost model
COST_MODEL_LABELS = {"analytic": "analytic FLOPs", "token_layer": "token-layer (paper)"}
#: the repository's config folder (absent when the package is installed without the repository)
REPO_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
#: short dtype names for file names
DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}


def slug(*parts: Any) -> str:
    """Parts joined by ``_``, every run of characters other than letters, digits and ``.`` one ``_``."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", "_".join(str(p) for p in parts if p not in (None, ""))).strip("_")


def cost_model_name(recorded: str) -> str:
    """The cost model's current name for a recorded ``budget_model`` (old runs say flops / paper);
    a name this table does not know is kept as recorded."""
    return COST_MODEL_NAMES.get(recorded, recorded)


def cost_model_label(name: str) -> str:
    """The caption's words for a cost model (e.g. ``analytic FLOPs``)."""
    name = cost_model_name(name)
    return COST_MODEL_LABELS.get(name, name)


@lru_cache(maxsize=8)
def _model_configs(configs: Path | None) -> dict[str, dict]:
    """config name -> its YAML mapping, for every ``configs/model/*.yaml`` (none without the folder)."""
    folder = None if configs is None else Path(configs) / "model"
    if folder is None or not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            found[path.stem] = loaded
    return found


def _matching_model_config(recorded: Mapping, candidates: dict[str, dict]) -> str | None:
    """The model config a recorded ``config.model`` was composed from: same class and source
    (several: the one agreeing on most keys, then by name); else the only config of that class."""
    same_class = {n: c for n, c in candidates.items() if c.get("_target_") == recorded.get("_target_")}
    same_source = {n: c for n, c in same_class.items() if c.get("source") == recorded.get("source")}
    if same_source:
        return min(same_source, key=lambda n: (-sum(recorded.get(k) == v for k, v in same_source[n].items()), n))
    return next(iter(same_class)) if len(same_class) == 1 else None


def model_config_name(description: str, recorded: Mapping | None = None, choice: str | None = None,
                      configs: Path | None = REPO_CONFIGS) -> str:
    """The model part of a file name: the config name (the recorded Hydra choice, else the config
    matching the recorded ``config.model``), plus the checkpoint's last path component when the run
    overrode the config's ``source``; the description made file-safe when no config is known."""
    candidates = _model_configs(None if configs is None else Path(configs))
    recorded = recorded or {}
    name = choice or (_matching_model_config(recorded, candidates) if recorded else None)
    if name is None:
        return slug(description)
    default_source, source = candidates.get(name, {}).get("source"), recorded.get("source")
    if isinstance(source, str) and default_source is not None and source != default_source:
        return slug(name, source.rstrip("/").rsplit("/", 1)[-1])
    return name


def te_model_name(record: Mapping) -> str:
    """The model part of a transfer-entropy plot's name: the recorded choice, else ``model=`` of the
    recorded command (what the user typed), else the model's description made file-safe."""
    choices = record.get("choices")
    choice = choices.get("model") if isinstance(choices, Mapping) else None
    if isinstance(choice, str) and choice:
        return str(choice)
    command = record.get("command")
    typed = [w.split("=", 1)[1] for w in shlex.split(command) if w.startswith("model=")] if isinstance(command, str) else []
    return typed[-1] if typed else slug(record.get("model", "unknown"))


def benchmark_name(settings: Mapping | None) -> str | None:
    """A long-audio benchmark's short name from its own arguments (``settings`` in the file):
    source kind, model config, device, dtype, e.g. ``random_qwen2_audio_cpu_fp32``; None when the
    file did not record them."""
    if not isinstance(settings, Mapping) or not all(settings.get(k) for k in ("model", "device", "dtype")):
        return None
    source = str(settings.get("source") or "")
    if source == "random" or source.startswith("tiny:"):
        kind = source.split(":")[0]
    else:
        kind = source.rstrip("/").rsplit("/", 1)[-1]  # a checkpoint: its name
    device = str(settings["device"]).split(":")[0]
    dtype = DTYPE_NAMES.get(str(settings["dtype"]), str(settings["dtype"]))
    return slug(kind, settings["model"], device, dtype)
