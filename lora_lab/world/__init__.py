"""Worlds: the data, the probes and the ground truth of an experiment."""

from .synthetic import BiasTarget, SyntheticWorld, Target, allocate
from .tokenizer import build_tokenizer

__all__ = ["BiasTarget", "SyntheticWorld", "Target", "allocate", "build_tokenizer"]
