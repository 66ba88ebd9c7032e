"""A run folder: its identity, its predictions, and the rules that protect them.

``settings.json`` holds the run's *identity*: every setting that can change a
prediction (model and its settings, task, method, budget, dataset identity
with a content fingerprint, the subset, seed, project version). A folder that
already holds results is never silently replaced: a rerun needs
``resume=true`` (refused, naming each differing key, when the identity
differs) or ``overwrite=true``; nothing is truncated until the caller says
every check has passed (:meth:`RunFolder.start`). ``metrics.json`` and
``settings.json`` are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "RunFolder",
    "RunFolderError",
    "ResumeError",
    "dataset_fingerprint",
    "flatten",
    "read_predictions",
    "write_json_atomic",
]

log = logging.getLogger(__name__)


class RunFolderError(ValueError):
    """The output folder cannot be used as asked (holds results, not writable)."""


class ResumeError(RunFolderError):
    """``resume=true`` into a folder produced with other settings."""


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place,
    so a reader never sees half a file, even if the process dies mid-write."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: obj}


def _normalise(obj: Any) -> Any:
    """JSON round trip, so saved and fresh identities compare alike (tuples, paths)."""
    return json.loads(json.dumps(obj, default=str))


def identity_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, current value)`` for every flattened key that differs."""
    a, b = flatten(_normalise(saved)), flatten(_normalise(current))
    missing = object()
    return [(k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(a.keys() | b.keys())
            if a.get(k, missing) != b.get(k, missing)]


def dataset_fingerprint(samples: Iterable[Any]) -> str:
    """Content fingerprint of a sample listing: ids, audio file names and
    sizes, references and every extra field. Any edit of the manifest or the
    corpus (a changed transcript, a re-encoded file) changes it; moving the
    corpus to another folder does not (the folder is a setting of its own)."""
    h = hashlib.sha256()
    for s in samples:
        path = Path(s.audio_path)
        size = path.stat().st_size if path.is_file() else -1
        h.update(json.dumps([s.id, path.name, size, s.text, s.extra], sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()[:20]


def read_predictions(path: Path) -> tuple[list[dict], bool]:
    """Rows of a ``predictions.jsonl`` and whether a partial last line was dropped.

    A process killed mid-write leaves a last line without its newline that may
    not parse: it is dropped with a warning naming the file, and that sample is
    redone. A malformed line anywhere else is not a crash artefact and raises.
    """
    if not path.is_file():
        return [], False
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows, dropped = [], False
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if lineno == len(lines) and not text.endswith("\n"):
                log.warning("%s: dropped a partial last line (the process died mid-write); that sample is redone", path)
                dropped = True
                continue
            raise RunFolderError(f"{path}:{lineno}: malformed prediction row ({exc.msg}); "
                                 "the file was edited or corrupted, use overwrite=true to start again") from exc
    if text and not text.endswith("\n") and not dropped:
        dropped = True  # a complete row without its newline: rewrite the file so appends stay line-aligned
    return rows, dropped


class RunFolder:
    """``predictions.jsonl``, ``settings.json`` and ``metrics.json`` of one run."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.predictions = self.path / "predictions.jsonl"
        self.settings = self.path / "settings.json"
        self.metrics = self.path / "metrics.json"
        self._rows: list[dict] = []
        self._rewrite = False
        self._overwrite = False

    def holds_results(self) -> bool:
        has_rows = self.predictions.is_file() and self.predictions.stat().st_size > 0
        return has_rows or self.metrics.is_file()

    def check(self, identity: Mapping[str, Any], *, resume: bool, overwrite: bool) -> list[dict]:
        """Every check that can fail before decoding; changes nothing on disk.

        Returns the finished rows to keep (resume) or ``[]``."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-test-")
            probe.close()
        except OSError as exc:
            raise RunFolderError(f"cannot write to output folder {self.path}: {exc.strerror or exc}") from exc
        self._overwrite = overwrite
        if overwrite or not self.holds_results():
            return []
        if not resume:
            raise RunFolderError(
                f"{self.path} already holds results; add resume=true to continue that run "
                f"or overwrite=true to replace it (or choose another output folder with hydra.run.dir=...)"
            )
        if not self.settings.is_file():
            raise ResumeError(f"cannot resume {self.path}: it has predictions but no settings.json to check them against")
        saved = json.loads(self.settings.read_text(encoding="utf-8"))
        diff = identity_diff(saved, identity)
        if diff:
            lines = "; ".join(f"{k}: {a!r} (saved) != {b!r} (now)" for k, a, b in diff[:20])
            more = f" and {len(diff) - 20} more" if len(diff) > 20 else ""
            raise ResumeError(f"cannot resume {self.path}: it was produced with other settings: {lines}{more}")
        rows, self._rewrite = read_predictions(self.predictions)
        self._rows = rows
        return rows

    def earlier_timing(self) -> tuple[float, int]:
        """``(seconds, samples generated in them)`` of the sessions that
        produced the kept rows, from the metrics.json they left (a session
        killed before writing it left none: its time is unknown, 0)."""
        if self._overwrite or not self._rows or not self.metrics.is_file():
            return 0.0, 0
        try:
            saved = json.loads(self.metrics.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return 0.0, 0
        wall = float(saved.get("wall_s") or 0.0)
        timed = saved.get("timed_samples")
        if timed is None:  # written before timed_samples existed
            timed = round((saved.get("samples_per_s") or 0.0) * wall)
        return wall, int(timed)

    def start(self, identity: Mapping[str, Any], keep_rows: Sequence[dict]) -> None:
        """Called once every check has passed: write the identity, replace or
        repair the predictions file so appends continue a clean file."""
        if self._overwrite:
            self.metrics.unlink(missing_ok=True)
            self.predictions.unlink(missing_ok=True)
        elif self._rewrite or len(keep_rows) != len(self._rows):
            tmp = self.predictions.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep_rows), encoding="utf-8")
            os.replace(tmp, self.predictions)
        write_json_atomic(self.settings, identity)

    def append(self, fh, row: dict) -> None:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
