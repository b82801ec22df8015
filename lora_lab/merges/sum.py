"""Task arithmetic (Ilharco et al., 2023): λ · Σ_i Δ_i. In every space: the prompt family's
composition (all rewrite rules applied together) is a sum too."""

from __future__ import annotations

from typing import Dict, List

from ..catalog import MergeMethodSpec, Param, register_merge
from . import Delta
from .lowrank import Factors, fused_sum

LAM = Param("lam", 1.0, "task-arithmetic scale λ (sum, ties, dare, svd)", lambda v: v > 0, "must be > 0")


def merge(deltas: List[Delta], ids: List[str], p) -> Delta:
    out: Dict[str, object] = {}
    for d in deltas:
        for k, v in d.items():
            out[k] = out[k] + v if k in out else v.clone()
    return {k: p.lam * v for k, v in out.items()}


class Accumulator:
    """The running sum. Low-rank deltas (LoRA factors) wait until `result()`, which adds all of
    them since the last call as one fused product per module."""

    def __init__(self, p):
        self.p, self.total, self.pending = p, {}, []

    def add(self, delta: Delta, ident: str) -> None:
        for k, v in delta.items():
            self.total[k] = self.total[k] + v if k in self.total else v.clone()

    def add_lowrank(self, factors: Factors, ident: str) -> None:
        self.pending.append(factors)

    def result(self) -> Delta:
        if self.pending:
            self.add(fused_sum(self.pending), "pending")
            self.pending = []
        return {k: self.p.lam * v for k, v in self.total.items()}


register_merge(MergeMethodSpec("sum", ("weight", "output", "input"), merge, Accumulator, (LAM,), lowrank=True,
                               help="task arithmetic: λ times the sum"))
