"""A run folder: its identity, its predictions, and the rules that protect them.

``settings.json`` holds the run's *identity*: every setting that can change a
prediction (model and its settings, task, method, budget, dataset identity
with a content fingerprint, the subset, seed, project version). The rules:

- **One writer.** :meth:`RunFolder.check` first takes an exclusive OS lock
  (``fcntl.flock`` on ``.run.lock`` in the folder, which records the holder's
  pid, host and start time). Every :class:`RunFolder` of one folder in one
  process shares it (``main()`` and ``evaluate()`` both check the folder); it
  is released when the last of them is closed or collected, when a ``with
  RunFolder(...)`` block (the life of a run or merge) ends, or when the process
  ends: the kernel releases a dead process's lock, so a lock file left by a
  killed run is taken over, with a warning naming it. A second run or merge
  into a locked folder is refused in one line naming the holder.
- **Never a silent replacement.** A folder that already holds results needs
  ``resume=true`` (refused, naming each differing key, when the identity
  differs) or ``overwrite=true``. No result changes until the caller says
  every check has passed (:meth:`RunFolder.start`); the only earlier change,
  under the lock, finishes what a killed ``overwrite=true`` left half done.
- **overwrite=true keeps the old results until the new ones exist.**
  :meth:`RunFolder.start` sets the old files aside in ``.previous-results/``
  (names ending in ``.kept``, so no tool reads them as a run) and
  :meth:`RunFolder.finish` removes them only once the new ``metrics.json`` is
  written. A run that stops before its first prediction puts them back (at
  once, or when the next run takes the lock if the process was killed); one
  that stops later leaves its rows (``resume=true`` continues it) and the old
  results aside.
- ``metrics.json``, ``settings.json`` and rewritten prediction files are
  written atomically (temporary file + rename), with the mode any new file
  gets under the process umask.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping, Sequence

__all__ = [
    "KEPT_DIR",
    "LOCK_FILE",
    "RunFolder",
    "RunFolderError",
    "ResumeError",
    "dataset_fingerprint",
    "flatten",
    "lock_holder",
    "read_predictions",
    "unique_rows",
    "write_json_atomic",
    "write_text_atomic",
]

log = logging.getLogger(__name__)

#: the lock file inside a run folder (pid, host and start time of the holder)
LOCK_FILE = ".run.lock"
#: where overwrite=true keeps the results it replaces until the new run writes metrics.json
KEPT_DIR = ".previous-results"
_KEPT_SUFFIX = ".kept"
#: the files that make a run's results, in the order they are set aside (metrics first: the
#: folder stops looking finished before anything else moves)
RESULT_FILES = ("metrics.json", "predictions.jsonl", "settings.json")

_RUN_REMEDY = ("add resume=true to continue that run or overwrite=true to replace it "
               "(or choose another output folder with hydra.run.dir=...)")


class RunFolderError(ValueError):
    """The output folder cannot be used as asked (holds results, locked, not writable)."""


class ResumeError(RunFolderError):
    """``resume=true`` into a folder produced with other settings."""


# -- files ---------------------------------------------------------------------------------


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place,
    so a reader never sees half a file, even if the process dies mid-write.

    The temporary file is created with ``open(..., 0o666)``, so it gets the
    mode (and default ACL) of any new file under the process umask; ``mkstemp``
    would make it 0600 and unreadable for the rest of a shared results folder."""
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """:func:`write_text_atomic` of ``obj`` as indented JSON (serialised first:
    an object that cannot be serialised leaves no file behind)."""
    write_text_atomic(path, json.dumps(obj, indent=1, default=str) + "\n")


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


def read_predictions(path: Path, say: Callable[[str], None] | None = None) -> tuple[list[dict], bool]:
    """Rows of a ``predictions.jsonl`` and whether a partial last line was dropped.

    A process killed mid-write leaves a last line without its newline that may
    not parse: it is dropped with a warning naming the file (through ``say``,
    default ``log.warning``), and that sample is redone. A malformed line
    anywhere else is not a crash artefact and raises.
    """
    say = say or log.warning
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
                say(f"{path}: dropped a partial last line (the process died mid-write); that sample is redone")
                dropped = True
                continue
            raise RunFolderError(f"{path}:{lineno}: malformed prediction row ({exc.msg}); "
                                 "the file was edited or corrupted, use overwrite=true to start again") from exc
    if text and not text.endswith("\n") and not dropped:
        dropped = True  # a complete row without its newline: rewrite the file so appends stay line-aligned
    return rows, dropped


def unique_rows(rows: Sequence[dict], source: str | Path, say: Callable[[str], None] | None = None) -> list[dict]:
    """``rows`` with one row per id (the first), and a warning naming ``source``
    and the count when some id has more: two processes wrote into one folder
    (before folders were locked), and no id may count twice."""
    seen: dict[Any, dict] = {}
    extra: Counter = Counter()
    for row in rows:
        key = row.get("id")
        if key in seen:
            extra[key] += 1
        else:
            seen[key] = row
    if extra:
        example = ", ".join(repr(k) for k in list(extra)[:3])
        (say or log.warning)(
            f"{source}: {len(extra)} id(s) have more than one row ({sum(extra.values())} extra rows, e.g. {example}); "
            "each id is counted once (its first row)")
    return list(seen.values())


def _same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` are one file: a hard link, or a copy that kept size and mtime."""
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    same_inode = (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    return same_inode or (sa.st_size, sa.st_mtime_ns) == (sb.st_size, sb.st_mtime_ns)


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src`` again without touching ``src`` (a hard link; a copy on
    file systems without them), replacing ``dst`` atomically."""
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- the lock ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Hold:
    """This process's exclusive lock on one folder, shared by every :class:`RunFolder`
    of that folder in the process (``main()`` and ``evaluate()`` check the same folder)."""

    folder: Path
    fd: int | None  # None: the file system has no locks (warned once)
    owner_pid: int
    count: int = 0
    said: set[str] = field(default_factory=set)


_HOLDS: dict[str, _Hold] = {}
_HOLDS_GUARD = threading.RLock()
_HOST = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def _read_holder(path: Path, fd: int | None = None) -> dict:
    """The holder record of a lock file (``{}`` if empty or unreadable)."""
    try:
        if fd is None:
            text = path.read_text(encoding="utf-8")
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            text = os.read(fd, 65536).decode("utf-8", "replace")
        record = json.loads(text) if text.strip() else {}
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe_holder(path: Path) -> str:
    """``pid N on host H since T`` for the refusal; waits briefly for a holder that
    has the lock but has not written its record yet."""
    record: dict = {}
    for _ in range(20):
        record = _read_holder(path)
        if record:
            break
        time.sleep(0.05)
    if not record:
        return "a process that has not said who it is"
    pid, host = record.get("pid"), record.get("host", "?")
    text = f"pid {pid} on host {host}"
    if record.get("since"):
        text += f" since {record['since']}"
    if host == _HOST and isinstance(pid, int) and not _pid_alive(pid):
        text += (", which is no longer running: a process it started still holds the lock open; "
                 "end that process")
    return text


def _acquire(folder: Path) -> _Hold:
    """Take (or re-enter) this process's exclusive lock on ``folder``."""
    key = os.path.realpath(folder)
    with _HOLDS_GUARD:
        hold = _HOLDS.get(key)
        if hold is not None and hold.owner_pid == os.getpid():
            hold.count += 1
            return hold
        path = Path(key) / LOCK_FILE
        for _ in range(50):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise RunFolderError(f"cannot open the lock file {path}: {exc.strerror or exc}; "
                                     "remove it if no run is using the folder") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunFolderError(
                    f"{folder} is in use by another run ({_describe_holder(path)}): wait for it to finish "
                    "or stop it, or choose another output folder") from None
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise RunFolderError(f"cannot lock {path}: {exc.strerror or exc}") from exc
                log.warning("%s: this file system does not support file locks (%s); nothing stops a second run "
                            "from writing into the folder at the same time", folder, exc.strerror)
                hold = _HOLDS[key] = _Hold(Path(key), None, os.getpid(), 1)
                return hold
            # the file locked must still be the one at the path: a holder removes it when it lets go
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise RunFolderError(f"cannot lock {path}: the lock file keeps being replaced")
        stale = _read_holder(path, fd)
        if stale:
            log.warning("%s: took over the lock of pid %s on host %s (since %s), which ended without releasing it "
                        "(killed)", folder, stale.get("pid"), stale.get("host"), stale.get("since"))
        record = {"pid": os.getpid(), "host": _HOST, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        hold = _HOLDS[key] = _Hold(Path(key), fd, os.getpid(), 1)
        return hold


def _release(key: str, hold: _Hold, *, everyone: bool = False) -> None:
    """Drop one reference to this process's lock on the folder ``key`` (``everyone``:
    all of them); the last one removes the lock file and closes it, which releases
    the lock. A reference to an earlier, already released hold does nothing."""
    with _HOLDS_GUARD:
        if _HOLDS.get(key) is not hold or hold.owner_pid != os.getpid():
            return  # released already, or a forked child: never release the parent's lock
        hold.count = 0 if everyone else hold.count - 1
        if hold.count > 0:
            return
        del _HOLDS[key]
        if hold.fd is None:
            return
        path = hold.folder / LOCK_FILE
        try:
            if os.path.samestat(os.fstat(hold.fd), os.stat(path)):
                path.unlink()
        except OSError:
            pass
        os.close(hold.fd)


def lock_holder(folder: str | Path) -> str | None:
    """Who is writing ``folder`` now (``pid N on host H ...``), or ``None`` when no
    other live process holds its lock. Reads only: works on read-only folders."""
    key = os.path.realpath(folder)
    with _HOLDS_GUARD:
        hold = _HOLDS.get(key)
        if hold is not None and hold.owner_pid == os.getpid():
            return None
    path = Path(key) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe_holder(path)
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return None


# -- the folder ----------------------------------------------------------------------------


class RunFolder:
    """``predictions.jsonl``, ``settings.json`` and ``metrics.json`` of one run.

    Use: ``check()`` (takes the lock, then checks; changes nothing), ``start()``
    once every other check has passed, ``append()`` per row, ``finish(metrics)``,
    and ``close()`` (or ``with RunFolder(out) as folder:``), which releases the
    lock and, when the run stopped before its first row, puts back what
    ``overwrite=true`` set aside. ``remedy`` is the advice of the "already holds
    results" refusal (the command line differs between a run and a merge)."""

    def __init__(self, path: str | Path, remedy: str = _RUN_REMEDY):
        self.path = Path(path)
        self.remedy = remedy
        self.predictions = self.path / "predictions.jsonl"
        self.settings = self.path / "settings.json"
        self.metrics = self.path / "metrics.json"
        self.kept = self.path / KEPT_DIR
        self._rows: list[dict] = []
        self._raw_count = 0
        self._rewrite = False
        self._overwrite = False
        self._key: str | None = None
        self._hold: _Hold | None = None
        self._release: weakref.finalize | None = None
        self._started = self._finished = self._set_aside = False
        self._appended = 0

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: object) -> None:
        """The end of the run (or merge) the block protected: :meth:`close`, and this
        process lets go of the folder altogether, also where another object of it
        (``main()``'s check, kept alive by a traceback) would hold on until collected."""
        hold = self._hold
        self.close()
        if hold is not None:
            _release(os.path.realpath(self.path), hold, everyone=True)

    # -- lock --------------------------------------------------------------------------------

    def lock(self) -> "RunFolder":
        """Create the folder if needed, check it is writable, take the exclusive lock
        (re-entered if this process holds it already) and put back the results of an
        ``overwrite=true`` run that was killed before its first row."""
        if self._key is not None:
            return self
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-test-")
            probe.close()
        except OSError as exc:
            raise RunFolderError(f"cannot write to output folder {self.path}: {exc.strerror or exc}") from exc
        self._hold = _acquire(self.path)
        self._key = os.path.realpath(self.path)
        self._release = weakref.finalize(self, _release, self._key, self._hold)
        self._recover()
        return self

    def close(self) -> None:
        """End this object's use of the folder: a started run that did not finish
        puts back what it set aside if it wrote no row (else says where it is); then
        the lock is released (when no other object of this process holds it)."""
        if self._started and not self._finished and self.kept.is_dir():
            if self._set_aside and self._appended == 0:
                try:
                    self._restore()
                except OSError as exc:  # never hide the error that stopped the run
                    log.error("%s: could not put back the results set aside in %s (%s); the next run in the "
                              "folder tries again", self.path, self.kept, exc)
                else:
                    log.warning("%s: this run stopped before its first prediction; the results that "
                                "overwrite=true had set aside are back in place", self.path)
            else:
                log.warning("%s: this run stopped after %d new predictions; the results it replaces stay in %s "
                            "until it finishes (resume=true continues it)", self.path, self._appended, self.kept)
        self._started = False
        if self._release is not None:
            self._release()
            self._release, self._key, self._hold = None, None, None

    def _say(self, message: str) -> None:
        """A warning said once per lock hold: ``main()`` and ``evaluate()`` both check
        the folder, and the user should read each finding once."""
        hold = self._hold
        if hold is not None:
            if message in hold.said:
                return
            hold.said.add(message)
        log.warning("%s", message)

    # -- set aside / restore -----------------------------------------------------------------

    def _kept_file(self, name: str) -> Path:
        return self.kept / (name + _KEPT_SUFFIX)

    def _own(self, name: str) -> bool:
        """The folder's ``name`` exists and is not the copy set aside (written since)."""
        top = self.path / name
        return top.is_file() and not _same_file(top, self._kept_file(name))

    def _set_aside_results(self) -> None:
        """overwrite=true: move the results out of the way, keeping them until
        :meth:`finish`. Hard links first, committed by renaming their folder, then
        the originals go: a crash at any point leaves one complete copy."""
        present = [n for n in RESULT_FILES if (self.path / n).is_file()]
        if not present:
            return
        self._set_aside = True
        if self.kept.is_dir():
            # only an unfinished replacement is left beside a kept set (recovery removed the rest):
            # keep the last finished results, discard the unfinished rows
            rows = len(read_predictions(self.predictions, say=lambda _: None)[0])
            for name in present:
                (self.path / name).unlink(missing_ok=True)
            log.warning("%s: overwrite=true discarded %d predictions of an unfinished run; the results before it "
                        "stay in %s until this run writes metrics.json", self.path, rows, self.kept)
            return
        staging = self.path / (KEPT_DIR + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in present:
            src = self.path / name
            dst = staging / (name + _KEPT_SUFFIX)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        _fsync_dir(staging)
        os.rename(staging, self.kept)
        _fsync_dir(self.path)
        for name in present:
            (self.path / name).unlink(missing_ok=True)
        log.info("%s: overwrite=true set the results already there aside in %s; they are removed once this run "
                 "writes metrics.json and put back if it stops before its first prediction", self.path, self.kept)

    def _restore(self) -> None:
        """Put the set-aside results back; the kept copies stay until every file is in
        place, so a crash half-way is finished by the next :meth:`_recover`."""
        for name in RESULT_FILES:
            kept = self._kept_file(name)
            if kept.is_file():
                _link_or_copy(kept, self.path / name)
            else:
                (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.kept, ignore_errors=True)

    def _recover(self) -> None:
        """Under the lock: finish what a killed process left half done."""
        shutil.rmtree(self.path / (KEPT_DIR + ".tmp"), ignore_errors=True)  # set-aside not committed: originals intact
        if not self.kept.is_dir():
            return
        if not any(self._kept_file(name).is_file() for name in RESULT_FILES):
            shutil.rmtree(self.kept, ignore_errors=True)  # nothing was kept in it
            return
        if self._own("metrics.json"):
            shutil.rmtree(self.kept, ignore_errors=True)  # the replacement finished
            self._say(f"{self.path}: removed {self.kept}: the run that replaced those results has finished")
        elif not (self._own("predictions.jsonl") and self.predictions.stat().st_size > 0):
            self._restore()
            self._say(f"{self.path}: put back the results that an overwrite=true run had set aside in {self.kept}: "
                      "it was stopped before its first prediction")

    # -- the run -----------------------------------------------------------------------------

    def holds_results(self) -> bool:
        has_rows = self.predictions.is_file() and self.predictions.stat().st_size > 0
        return has_rows or self.metrics.is_file()

    def check(self, identity: Mapping[str, Any], *, resume: bool, overwrite: bool) -> list[dict]:
        """Take the folder's lock, then every check that can fail before decoding;
        changes no result on disk.

        Returns the finished rows to keep (resume; one per id) or ``[]``."""
        self.lock()
        self._overwrite = overwrite
        if overwrite or not self.holds_results():
            self._rows, self._raw_count, self._rewrite = [], 0, False
            return []
        if not resume:
            raise RunFolderError(f"{self.path} already holds results; {self.remedy}")
        if not self.settings.is_file():
            raise ResumeError(f"cannot resume {self.path}: it has predictions but no settings.json "
                              "to check them against")
        try:
            saved = json.loads(self.settings.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ResumeError(f"cannot resume {self.path}: {self.settings.name} is not valid JSON ({exc.msg}); "
                              "use overwrite=true to start again") from exc
        diff = identity_diff(saved, identity)
        if diff:
            lines = "; ".join(f"{k}: {a!r} (saved) != {b!r} (now)" for k, a, b in diff[:20])
            more = f" and {len(diff) - 20} more" if len(diff) > 20 else ""
            raise ResumeError(f"cannot resume {self.path}: it was produced with other settings: {lines}{more}")
        rows, self._rewrite = read_predictions(self.predictions, say=self._say)
        self._raw_count = len(rows)
        self._rows = unique_rows(rows, self.predictions, say=self._say)
        return list(self._rows)

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
        """Called once every check has passed: set the old results aside
        (overwrite), write the identity, and leave ``predictions.jsonl`` holding
        exactly ``keep_rows`` so appends continue a clean file."""
        if self._key is None:
            raise RuntimeError("RunFolder.start() before check(): the folder is not locked")
        if self._overwrite:
            self._set_aside_results()
        if self._overwrite or self._rewrite or len(keep_rows) != self._raw_count:
            write_text_atomic(self.predictions, "".join(json.dumps(r) + "\n" for r in keep_rows))
        write_json_atomic(self.settings, identity)
        self._started, self._finished, self._appended = True, False, 0

    def append(self, fh: IO[str], row: dict) -> None:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        self._appended += 1

    def finish(self, metrics: Mapping[str, Any]) -> None:
        """Write ``metrics.json``; only then drop the results ``overwrite=true`` set aside."""
        write_json_atomic(self.metrics, metrics)
        self._finished = True
        if self.kept.is_dir():
            shutil.rmtree(self.kept, ignore_errors=True)
            log.info("%s: the new results are complete; removed the earlier ones set aside in %s",
                     self.path, self.kept)
