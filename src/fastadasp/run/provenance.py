"""What a result was produced with: versions, git commit, device, resolved config."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["environment", "git_state", "package_versions", "resolved_config", "device_name"]

_ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("fastadasp", "torch", "transformers", "numpy", "hydra-core", "jiwer", "sacrebleu"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(root: Path = _ROOT) -> dict[str, Any]:
    """Commit and dirty flag of the checkout the code runs from (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def device_name(device: Any) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{device.type}: {cpu}, {torch.get_num_threads()} torch threads"


def environment(model: Any) -> dict[str, Any]:
    return {"versions": package_versions(), "git": git_state(), "device": device_name(model.device)}


def resolved_config(cfg: Any) -> Any:
    """The config with interpolations resolved where they can be (Hydra's own
    ``${hydra:...}`` keys only resolve inside a Hydra run)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    def walk(node: Any, key: Any) -> Any:
        try:
            value = node[key]
        except (InterpolationResolutionError, MissingMandatoryValue, ValueError):
            return OmegaConf.to_container(node, resolve=False)[key]
        if OmegaConf.is_dict(value):
            return {k: walk(value, k) for k in value.keys()}
        if OmegaConf.is_list(value):
            return [walk(value, i) for i in range(len(value))]
        return value

    return {k: walk(cfg, k) for k in cfg.keys()}
