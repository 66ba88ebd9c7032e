"""The paper's own numbers (SPEC.md s.9 and the talk slides), read from ``paper_numbers.yaml``
next to this module, so generated tables can show them beside ours.

The numbers are data: :func:`load_paper_numbers` reads the YAML file (its comments say what
each field means) into the frozen objects below; ``BUDGETS``, ``PAPER_TABLES`` and
``LONG_AUDIO_TABLES`` are the package's copy, read once on import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

__all__ = [
    "BUDGETS",
    "LONG_AUDIO_TABLES",
    "PAPER_TABLES",
    "LongAudioPaperTable",
    "PaperNumbers",
    "PaperNumbersError",
    "PaperRow",
    "PaperTable",
    "load_paper_numbers",
]


class PaperNumbersError(ValueError):
    """The paper-numbers file does not have the shape the tables need; the message names the file and entry."""


@dataclass(frozen=True)
class PaperRow:
    """One method row: its label in the paper and the settings of ours it corresponds to."""

    label: str
    method: str
    settings: dict = field(default_factory=dict)
    #: task -> five values (budgets 10..50%); a value may be a tuple (CIDEr, SPICE, SPIDEr)
    values: dict = field(default_factory=dict)
    #: row facts that are not results per budget (Table 6: "te", "te_rank")
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PaperTable:
    """An accuracy table of the paper: tasks as column groups, FLOPs budgets as columns."""

    id: str
    title: str
    model: str
    source: str
    #: task -> (metric name(s), higher_is_better); metric is a tuple for triple cells
    tasks: dict
    #: task -> full-token baseline value
    baseline: dict
    rows: tuple[PaperRow, ...]
    #: "methods" (rows are methods) or "layers" (Table 6: rows are layers of FastAdaSP sparse)
    layout: str = "methods"
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LongAudioPaperTable:
    """The long-audio cost tables (WavLLM): one row per (beam, audio length, token reduce)."""

    id: str
    title: str
    model: str
    device: str
    source: str
    #: (beam, audio_s, token_reduce % or None for full, flops_reduction %, rtf, prefill_s, decode_s,
    #:  throughput, throughput speed-up as printed in the paper or None for full)
    rows: tuple[tuple, ...]


class PaperNumbers(NamedTuple):
    """Everything in the file: the budget columns and the tables by id."""

    budgets: tuple[float, ...]
    accuracy: dict[str, PaperTable]
    long_audio: dict[str, LongAudioPaperTable]


def _tuples(value: Any) -> Any:
    """YAML lists as tuples, at every depth (the objects are frozen and compared by value)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _accuracy_table(entry: dict, budgets: tuple[float, ...], where: str) -> PaperTable:
    tasks = entry["tasks"]
    rows = []
    for row in entry["rows"]:
        values = {task: _tuples(v) for task, v in row["values"].items()}
        bad = [t for t, v in values.items() if t not in tasks or len(v) != len(budgets)]
        if bad:
            raise PaperNumbersError(f"{where}, row {row['label']!r}: values of {bad} need a task of the table "
                                    f"({sorted(tasks)}) and {len(budgets)} entries, one per budget")
        rows.append(PaperRow(row["label"], row["method"], dict(row.get("settings") or {}), values,
                             dict(row.get("extra") or {})))
    return PaperTable(
        id=entry["id"], title=entry["title"], model=entry["model"], source=entry["source"],
        tasks={t: (_tuples(spec["metric"]), bool(spec["higher_is_better"])) for t, spec in tasks.items()},
        baseline={t: _tuples(spec["baseline"]) for t, spec in tasks.items()},
        rows=tuple(rows), layout=entry.get("layout", "methods"), notes=tuple(entry.get("notes") or ()),
    )


def _long_audio_table(entry: dict, columns: list[str], where: str) -> LongAudioPaperTable:
    rows = tuple(_tuples(r) for r in entry["rows"])
    short = [i for i, r in enumerate(rows) if len(r) != len(columns)]
    if short:
        raise PaperNumbersError(f"{where}: rows {short} need {len(columns)} entries ({', '.join(columns)})")
    return LongAudioPaperTable(id=entry["id"], title=entry["title"], model=entry["model"], device=entry["device"],
                               source=entry["source"], rows=rows)


def load_paper_numbers(path: str | Path | None = None) -> PaperNumbers:
    """The paper's tables from ``path`` (default: the package's ``paper_numbers.yaml``).
    A missing field or a row of the wrong length raises :class:`PaperNumbersError` naming the
    file, the table and the entry."""
    if path is None:
        text, shown = resources.files(__package__).joinpath("paper_numbers.yaml").read_text("utf-8"), "paper_numbers.yaml"
    else:
        text, shown = Path(path).read_text("utf-8"), str(path)
    data = yaml.safe_load(text)
    table_id = "?"
    try:
        budgets = tuple(float(b) for b in data["budgets"])
        accuracy, long_audio = {}, {}
        for entry in data["accuracy_tables"]:
            table_id = entry.get("id", "?")
            accuracy[entry["id"]] = _accuracy_table(entry, budgets, f"{shown}, table {table_id}")
        for entry in data["long_audio_tables"]:
            table_id = entry.get("id", "?")
            long_audio[entry["id"]] = _long_audio_table(entry, data["long_audio_columns"], f"{shown}, table {table_id}")
    except (KeyError, TypeError, AttributeError) as exc:
        raise PaperNumbersError(f"{shown}, table {table_id}: missing or malformed field ({type(exc).__name__}: {exc})") from exc
    return PaperNumbers(budgets, accuracy, long_audio)


#: the paper's "FLOPs Reduce" columns, and its tables by id (read once from the package's YAML)
BUDGETS, PAPER_TABLES, LONG_AUDIO_TABLES = load_paper_numbers()
