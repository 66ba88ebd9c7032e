"""Hydra's instantiate, but the caller sees the target's own error.

A bad manifest line, an unknown schedule or a missing corpus file should
reach the user as the loader's message (file, line, column), not as Hydra's
``InstantiationException`` wrapped around it. Every object of a run is built
here, so this is the one place that unwraps:

- an error raised *by the target* (the loader, the constructor) reaches the
  caller as itself, with its own traceback and cause, never chained under
  Hydra's wrapper;
- Hydra's own errors (a ``_target_`` that cannot be located, a malformed node)
  become a :class:`~fastadasp.run.config.ConfigError` with Hydra's message.

:func:`check_arguments` compares a node's keys with its target's signature
before anything is called (``+method.shedule=decay`` is refused naming the
accepted keys), and :func:`build` builds a settings object (method, budget):
a value its constructor rejects with a ``ValueError`` is a settings error.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterable

from .config import ConfigError

__all__ = ["instantiate", "check_arguments", "check_tree", "build"]

#: keys of a node that Hydra reads itself
_HYDRA_KEYS = {"_target_", "_convert_", "_recursive_", "_partial_", "_args_"}


def instantiate(node: Any, **kwargs: Any) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as exc:
        wrapper = exc
    # outside the except block: the target's error is raised as it was (its traceback and its own cause),
    # not as the context of Hydra's wrapper, which is itself chained to it
    cause = wrapper.__cause__
    if cause is not None and str(wrapper).startswith("Error in call to target"):
        raise cause
    lines = [line.strip() for line in str(wrapper).splitlines() if line.strip()]
    head = lines[0].split(", set env var HYDRA_FULL_ERROR")[0].rstrip(".")
    where = [line for line in lines[1:] if line.startswith("full_key:")]
    raise ConfigError(f"{head}{f' ({where[0]})' if where else ''}: check its _target_ and keys") from wrapper


def _target(node: Any) -> Any:
    from hydra._internal.utils import _locate  # what instantiate uses (get_object also logs an error)

    return _locate(str(node["_target_"]))


def _short(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def check_arguments(node: Any, key: str, ignore: Iterable[str] = ()) -> None:
    """Refuse keys of ``node`` (config group ``key``) that its ``_target_`` does not
    take, and arguments it needs that the node lacks, before anything is called.
    Nested nodes are not checked; a target taking ``**kwargs`` accepts any key."""
    if not hasattr(node, "keys") or "_target_" not in node:
        return
    try:
        target = _target(node)
    except ImportError as exc:  # _locate's error for a module or attribute that is not there
        raise ConfigError(f"{key}._target_={node['_target_']!r} cannot be imported: "
                          f"{' '.join(str(exc).split())}") from exc
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to compare
        return
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [name for name, p in params.items()
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    skip = _HYDRA_KEYS | set(ignore)
    given = [k for k in node.keys() if k not in skip]
    unknown = [k for k in given if k not in accepted]
    target_name = _short(str(node["_target_"]))
    if unknown:
        keys = ", ".join(f"{key}.{k}" for k in unknown)
        raise ConfigError(
            f"{keys} {'is not a setting' if len(unknown) == 1 else 'are not settings'} of {key} {target_name}; "
            f"its settings are: {', '.join(accepted) or '(none)'} (fix the spelling, or drop the override)")
    partial = str(node.get("_partial_", False)).lower() == "true"  # the caller passes the rest later
    missing = [name for name in accepted
               if params[name].default is inspect.Parameter.empty and name not in given and name not in skip]
    if missing and not partial:
        raise ConfigError(f"{key} {target_name} needs {', '.join(f'{key}.{m}' for m in missing)}: "
                          f"add {' '.join(f'{key}.{m}=...' for m in missing)}")


def check_tree(node: Any, key: str, ignore: Iterable[str] = ()) -> None:
    """:func:`check_arguments` for ``node`` and every node with a ``_target_`` inside
    it (a task's metric and parser), each named by its key path; nothing is resolved
    (a missing mandatory value is its loader's error, with its own message)."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node

    def walk(value: Any, path: str, skip: Iterable[str] = ()) -> None:
        if isinstance(value, dict):
            check_arguments(value, path, skip)
            for k, v in value.items():
                if not str(k).startswith("_"):
                    walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(plain, key, ignore)


def build(node: Any, key: str) -> Any:
    """Instantiate a settings object (config group ``key``: ``method``, ``budget``):
    its keys are checked against the target's signature first, and a plain
    ``ValueError`` its constructor raises (a value it does not take) becomes a
    ConfigError that names the group; typed errors keep their type."""
    check_tree(node, key)
    try:
        return instantiate(node)
    except ValueError as exc:
        if type(exc) is not ValueError:  # a typed error (MethodSettingsError, BudgetError, ...) keeps its type
            raise
        message = str(exc)
        raise ConfigError(message if f"{key}." in message or f"({key}." in message else f"{key}: {message}") from exc
