"""Instantiate a dataset config node into samples plus its identity.

Dataset configs (``configs/dataset/*.yaml``) are a loader ``_target_`` and its
arguments, plus an optional ``corpus`` name (meta, not passed to the loader), so a
run records which corpus it read even when the task chose it by default.

Rows a reader leaves out on purpose (CoVoST 2 rows whose clip Common Voice's
``validated.tsv`` does not list) are never lost silently: the reader returns a
``SampleList`` whose ``dropped`` maps each reason to the ids (the reader also
logs a warning), and ``info`` then carries
``dropped = {"count": N, "reasons": {reason: {"count": n, "examples": [ids]}}}``
(counted over the whole split, before ``limit``). The runner writes ``info`` into
``metrics.json`` under ``dataset`` and into the run identity without knowing any
corpus; ``dropped`` is absent when nothing was dropped, so identities of runs that
dropped nothing do not change.
"""

from __future__ import annotations

from typing import Any

from ..data.corpora._common import dropped_summary

__all__ = ["load_dataset", "META_KEYS"]

#: keys of a dataset node that describe it and are not loader arguments
META_KEYS = ("corpus",)


def load_dataset(node: Any, default_name: str | None = None) -> tuple[list, dict[str, Any]]:
    """``(samples, info)``: ``info`` has the dataset's name, its loader arguments
    (root, split, path, ...) except ``limit``, for the run's identity, and
    ``dropped`` when the reader left rows out (module docstring)."""
    from omegaconf import OmegaConf

    from .instantiate import instantiate

    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    name = plain.pop("corpus", None) or default_name
    samples = instantiate(plain)  # the loader's own error (file, line, column) on bad input
    args = {k: v for k, v in plain.items() if k not in ("_target_", "_convert_", "limit")}
    if "name" in args:  # a loader argument called name (hf: the hub dataset's name)
        args["loader_name"] = args.pop("name")
    info = {**args, "name": name}
    dropped = dropped_summary(getattr(samples, "dropped", None) or {})
    if dropped:
        info["dropped"] = dropped
    return list(samples), info
