"""Task arithmetic (Ilharco et al., 2023): λ · Σ_i Δ_i."""

from __future__ import annotations

from typing import Dict, List

import torch

from . import Delta, MergeParams
from .lowrank import Factors, fused_sum


def merge(deltas: List[Delta], ids: List[str], p: MergeParams) -> Delta:
    out: Dict[str, torch.Tensor] = {}
    for d in deltas:
        for k, v in d.items():
            out[k] = out[k] + v if k in out else v.clone()
    return {k: p.lam * v for k, v in out.items()}


class Accumulator:
    """The running sum. Low-rank deltas (LoRA factors) wait until `result()`, which adds all of
    them since the last call as one fused product per module."""

    def __init__(self, p: MergeParams):
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
