"""Old module names keep working after a move, with a DeprecationWarning.

``moved(__name__, "fastadasp.run.runner")`` in the old module's file makes the
old name *the same module object* as the new one (monkeypatching and private
names included), and ``python -m <old name>`` runs the new module's
``__main__`` block."""

from __future__ import annotations

import importlib
import runpy
import sys
import warnings


def moved(old: str, new: str) -> None:
    if old == "__main__":  # python -m fastadasp.merge: run the new module as the program
        warnings.warn(f"this module moved to {new}; use python -m {new}", DeprecationWarning, stacklevel=2)
        runpy.run_module(new, run_name="__main__", alter_sys=True)
        return
    warnings.warn(f"{old} moved to {new}; import it from there", DeprecationWarning, stacklevel=_importer_level())
    sys.modules[old] = importlib.import_module(new)


def _importer_level() -> int:
    """The stack level of the code that imported the old name (past the shim and importlib's
    frames), so the warning names the user's line and Python's default filters show it there."""
    frame, level = sys._getframe(2), 2  # the shim module's own frame
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib") or level == 2):
        frame, level = frame.f_back, level + 1
    return level
