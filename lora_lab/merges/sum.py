"""Task arithmetic (Ilharco et al., 2023): λ · Σ_i Δ_i."""

from __future__ import annotations

from typing import Dict, List

import torch

from . import Delta, MergeParams


def merge(deltas: List[Delta], ids: List[str], p: MergeParams) -> Delta:
    out: Dict[str, torch.Tensor] = {}
    for d in deltas:
        for k, v in d.items():
            out[k] = out[k] + v if k in out else v.clone()
    return {k: p.lam * v for k, v in out.items()}


class Accumulator:
    def __init__(self, p: MergeParams):
        self.p, self.total = p, {}

    def add(self, delta: Delta, ident: str) -> None:
        for k, v in delta.items():
            self.total[k] = self.total[k] + v if k in self.total else v.clone()

    def result(self) -> Delta:
        return {k: self.p.lam * v for k, v in self.total.items()}
