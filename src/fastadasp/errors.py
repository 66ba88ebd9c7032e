"""Errors that every layer may raise and the entry points turn into one line (exit 2)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent."""
