"""Averaging: (1/k) Σ_i Δ_i."""

from __future__ import annotations

from typing import List

from . import Delta, MergeParams
from . import sum as sum_
from .lowrank import Factors


def merge(deltas: List[Delta], ids: List[str], p: MergeParams) -> Delta:
    total = sum_.merge(deltas, ids, MergeParams(lam=1.0))
    return {k: v / len(deltas) for k, v in total.items()}


class Accumulator:
    def __init__(self, p: MergeParams):
        self.inner, self.k = sum_.Accumulator(MergeParams(lam=1.0)), 0

    def add(self, delta: Delta, ident: str) -> None:
        self.inner.add(delta, ident)
        self.k += 1

    def add_lowrank(self, factors: Factors, ident: str) -> None:
        self.inner.add_lowrank(factors, ident)
        self.k += 1

    def result(self) -> Delta:
        return {k: v / self.k for k, v in self.inner.result().items()}
