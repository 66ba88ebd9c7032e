"""espeak-ng and sox: the two system tools that render every synthetic set and fixture.

One place for the commands, so every builder renders speech the same way
(espeak-ng writes 22.05 kHz; sox converts, with ``-R`` so the dither is
seeded and a rebuild writes the same bytes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["check_tools", "run_tool", "speak"]


def check_tools() -> None:
    """Fail with the install command when espeak-ng or sox is missing."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not found on PATH; synthetic speech needs both: "
            "apt-get install espeak-ng sox (or make system-deps)"
        )


def run_tool(cmd: list[str]) -> None:
    """Run a command; a failure raises with the command and its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")


def speak(text: str, out: str | Path, *, voice: str = "en-us", speed: int = 165,
          sr: int = 16000, channels: int = 1) -> Path:
    """Render ``text`` with espeak-ng into ``out`` (format by suffix), 16-bit, atomically."""
    check_tools()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw, conv = Path(tmp) / "raw.wav", Path(tmp) / f"conv{out.suffix}"
        run_tool(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text])
        run_tool(["sox", "-R", str(raw), "-r", str(sr), "-c", str(channels), "-b", "16", str(conv)])
        os.replace(conv, out)
    return out
