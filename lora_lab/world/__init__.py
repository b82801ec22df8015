"""Worlds: the data, the probes and the ground truth of an experiment."""

from .synthetic import BiasTarget, SyntheticWorld, Target, allocate
from .tokenizer import build_tokenizer

__all__ = ["BiasTarget", "SyntheticWorld", "Target", "allocate", "build_tokenizer", "build_world"]

_WORLDS = {"synthetic": SyntheticWorld}


def build_world(cfg):
    """The world named by `cfg.name` (a typed world config)."""
    try:
        cls = _WORLDS[cfg.name]
    except KeyError:
        raise ValueError(f"world.name: unknown world {cfg.name!r}, valid: {sorted(_WORLDS)}") from None
    return cls(cfg)
