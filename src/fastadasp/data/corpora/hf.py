"""Any Hugging Face `datasets` dataset already on this machine, read without torchcodec.

Either a folder written by `save_to_disk` (`path=`) or a dataset in the local
cache (`name=`, `config=`, `split=`; set HF_DATASETS_OFFLINE=1 so nothing is
fetched). `datasets` 5 decodes audio with torchcodec, which does not import
beside the CPU torch, so the audio column is cast to `Audio(decode=False)` and
each cell (a local path, or the encoded file's bytes) is decoded by our own
reader (`read_audio` / `decode_audio_bytes`). Bytes are not kept in memory:
a sample fetches its row from the memory-mapped table when its audio is read.

Columns are named in the config: `id_column` (default: the row number),
`audio_column`, `text_column`, and `fields` mapping canonical fields to columns
(e.g. {translation: translation, label: emotion}); ClassLabel columns yield
their names. `constants` adds fixed fields (e.g. {target_language: de}).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf

from ..audio import AudioError, decode_audio_bytes, resample
from ..manifest import Sample
from ._common import CorpusError, apply_limit, check_limit

__all__ = ["HFSample", "load_hf", "samples_from_table"]


@dataclass(frozen=True)
class HFSample(Sample):
    """A sample whose audio lives inside a dataset table (bytes or a decoded array)."""

    table: Any = field(default=None, compare=False, repr=False)
    row: int = -1
    column: str = ""

    def load_audio(self, sr: int = 16000) -> np.ndarray:
        """Decode this row's audio cell (raises AudioError naming the sample)."""
        return decode_cell(self.table[self.row][self.column], sr, label=f"{self.id} ({self.audio_path})")

    def materialize(self, folder: str | Path) -> Path:
        """Write this row's audio to `folder` as a file (original bytes, or a 16-bit wav
        of a decoded array) and return its path; used to export a manifest."""
        cell = self.table[self.row][self.column]
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", self.id)
        if isinstance(cell, Mapping) and cell.get("bytes") is not None:
            target = folder / f"{stem}{Path(str(cell.get('path') or '')).suffix or '.bin'}"
            target.write_bytes(cell["bytes"])
            return target
        target = folder / f"{stem}.wav"
        sf.write(str(target), self.load_audio(16000), 16000, subtype="PCM_16")
        return target


def decode_cell(cell: Any, sr: int, label: str) -> np.ndarray:
    """Decode an audio cell: {"bytes", "path"} or {"array", "sampling_rate"}."""
    if isinstance(cell, Mapping) and cell.get("bytes") is not None:
        name = Path(str(cell.get("path") or "")).name or label
        return decode_audio_bytes(cell["bytes"], sr, name=f"{label}: {name}" if name != label else label)
    if isinstance(cell, Mapping) and cell.get("array") is not None:
        array = np.asarray(cell["array"], dtype=np.float32)
        if array.ndim == 2:  # (channels, samples), as datasets stores multi-channel audio
            array = array.mean(axis=0)
        if array.size == 0:
            raise AudioError(f"empty audio (0 samples): {label}")
        if not np.isfinite(array).all():
            raise AudioError(f"audio samples are not finite: {label}")
        return resample(array, int(cell["sampling_rate"]), sr)
    raise AudioError(f"audio cell has neither bytes, array nor a readable path: {label}")


def _cell_path(cell: Any, base: Path | None) -> Path | None:
    """The local file an audio cell points to, if it exists."""
    raw = cell if isinstance(cell, str) else cell.get("path") if isinstance(cell, Mapping) else None
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path if path.is_file() else None


def _label_names(table: Any, column: str):
    """ClassLabel int -> name converter for `column`, or None."""
    feature = (getattr(table, "features", None) or {}).get(column)
    return getattr(feature, "int2str", None)


def samples_from_table(
    table: Any,
    *,
    source: str,
    audio_column: str = "audio",
    id_column: str | None = None,
    text_column: str | None = None,
    fields: Mapping[str, str] | None = None,
    constants: Mapping[str, Any] | None = None,
    base_dir: str | Path | None = None,
) -> list[Sample]:
    """Convert rows (a `datasets.Dataset` or any indexable sequence of dicts with
    `column_names`) into samples, sorted by id.

    Cells that name an existing local file become plain file samples; others
    (bytes/array) become HFSample that decode from the table on demand.
    """
    fields = dict(fields or {})
    columns = list(table.column_names)
    wanted = [c for c in (audio_column, id_column, text_column, *fields.values()) if c is not None]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise CorpusError(f"{source}: missing column(s) {', '.join(missing)} (columns: {', '.join(columns)})")
    base = Path(base_dir).expanduser() if base_dir is not None else None
    names = {canonical: _label_names(table, column) for canonical, column in fields.items()}
    samples: list[Sample] = []
    width = max(6, len(str(len(table))))
    for row_index, row in enumerate(table):
        sample_id = str(row[id_column]) if id_column else f"{row_index:0{width}d}"
        text = row[text_column] if text_column else None
        if text is not None and not isinstance(text, str):
            raise CorpusError(f"{source}: row {row_index}: column {text_column} must be text, got {text!r}")
        extra = dict(constants or {})
        for canonical, column in fields.items():
            value = row[column]
            if names[canonical] is not None and isinstance(value, int):
                value = names[canonical](value)
            extra[canonical] = value
        cell = row[audio_column]
        local = _cell_path(cell, base)
        if local is not None:
            samples.append(Sample(sample_id, local, text, extra))
        else:
            hint = cell.get("path") if isinstance(cell, Mapping) else None
            samples.append(HFSample(sample_id, Path(hint or f"{source}#{row_index}"), text, extra,
                                    table=table, row=row_index, column=audio_column))
    samples.sort(key=lambda s: s.id)
    return samples


def load_hf(
    path: str | Path | None = None,
    name: str | None = None,
    config: str | None = None,
    split: str = "test",
    limit: int | None = None,
    audio_column: str = "audio",
    id_column: str | None = None,
    text_column: str | None = None,
    fields: Mapping[str, str] | None = None,
    constants: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
) -> list[Sample]:
    """Samples of a saved (`path`) or locally cached (`name`) Hugging Face dataset split."""
    check_limit(limit)
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("dataset=hf needs the `datasets` package: pip install datasets") from exc
    if (path is None) == (name is None):
        raise ValueError("give exactly one of path (a save_to_disk folder) or name (a cached dataset)")
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise CorpusError(f"Hugging Face dataset folder not found: {folder}")
        table = datasets.load_from_disk(str(folder))
        if isinstance(table, datasets.DatasetDict):
            if split not in table:
                raise CorpusError(f"{folder}: no split {split!r} (splits: {', '.join(table)})")
            table = table[split]
        source, base = str(folder), folder
    else:
        table = datasets.load_dataset(name, config, split=split, cache_dir=cache_dir)
        source, base = f"{name}/{config or ''}:{split}", None
    if audio_column in table.column_names and isinstance(table.features.get(audio_column), datasets.Audio):
        table = table.cast_column(audio_column, datasets.Audio(decode=False))
    samples = samples_from_table(table, source=source, audio_column=audio_column, id_column=id_column,
                                 text_column=text_column, fields=fields, constants=constants, base_dir=base)
    return apply_limit(samples, limit, source)
