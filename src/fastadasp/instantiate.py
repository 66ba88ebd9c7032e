"""Hydra's instantiate, but the caller sees the target's own error.

A bad manifest line, an unknown schedule or a missing corpus file should
reach the user as the loader's message (file, line, column), not as Hydra's
``InstantiationException`` wrapped around it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["instantiate"]

#: errors a target raises for bad input (shown as they are)
_TARGET_ERRORS = (ValueError, FileNotFoundError, RuntimeError, TypeError)


def instantiate(node: Any, **kwargs: Any) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, _TARGET_ERRORS):
            raise exc.__cause__ from exc
        raise
