"""Averaging: (1/k) Σ_i Δ_i."""

from __future__ import annotations

from types import SimpleNamespace
from typing import List

from ..catalog import MergeMethodSpec, register_merge
from . import Delta
from . import sum as sum_
from .lowrank import Factors

ONE = SimpleNamespace(lam=1.0)  # the plain sum, before dividing by k


def merge(deltas: List[Delta], ids: List[str], p) -> Delta:
    total = sum_.merge(deltas, ids, ONE)
    return {k: v / len(deltas) for k, v in total.items()}


class Accumulator:
    def __init__(self, p):
        self.inner = sum_.Accumulator(ONE)  # it counts the deltas added, k

    def add(self, delta: Delta, ident: str) -> None:
        self.inner.add(delta, ident)

    def add_lowrank(self, factors: Factors, ident: str) -> None:
        self.inner.add_lowrank(factors, ident)

    def result(self) -> Delta:
        return {k: v / self.inner.k for k, v in self.inner.result().items()}

    def without(self, delta: Delta, ident: str) -> Delta:
        """(1/k) Σ over the others: the stack's own scale, 1/k of all k added."""
        return {k: v / self.inner.k for k, v in self.inner.without(delta, ident).items()}


register_merge(MergeMethodSpec("mean", ("weight", "output"), merge, Accumulator, (), lowrank=True,
                               help="the mean of the deltas"))
