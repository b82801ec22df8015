"""Config checks every schema shares: the one-line error and the seed rule. Torch-free, import-free,
so a plugin's config schema can use them without importing the root config."""

from __future__ import annotations

from typing import Any, Optional


class ConfigError(ValueError):
    """A bad config value. The message is one line and starts with the dotted field path."""


def require(ok: bool, path: str, message: str, value: Any) -> None:
    """Raise `ConfigError("path: message (got value)")` unless `ok`."""
    if not ok:
        raise ConfigError(f"{path}: {message} (got {value!r})")


def resolve_seed(own: Optional[int], run_seed: Optional[int]) -> int:
    """A world's seed: its own when set, else the run's (so a new seed redraws the world), else 0."""
    if own is not None:
        return own
    return 0 if run_seed is None else run_seed
