"""Merge methods: pure functions on deltas, in a registry, one file each.

A delta is a dict name -> tensor: per-module weight deltas (weight space) or {"vectors": [L, d]}
(output space). Every method has two forms:
- `merge(deltas, ids, params)`: the from-scratch merge of k deltas, written as the paper states it;
- an accumulator with `add(delta, id)` / `result()`: prefix k+1 from prefix k at a cost that does not
  grow with k. Tests check the two agree.
Accumulators of `sum` and `mean` also take LoRA factors (`add_lowrank`), summed as one fused
product per module (`lowrank.fused_sum`) rather than k dense additions.
`ids` name the adapters (DARE seeds each adapter's drop mask from its id, so masks do not depend on
the order or on which other adapters are present).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Protocol, Sequence

import torch

Delta = Dict[str, torch.Tensor]


@dataclass(frozen=True)
class MergeParams:
    lam: float = 1.0  # task-arithmetic scale λ (sum, ties, dare, svd)
    density: float = 0.2  # TIES: share of each delta's entries kept (largest magnitudes)
    drop: float = 0.5  # DARE: probability of dropping an entry
    rank: int = 16  # SVD: rank cap of the re-compressed summed delta
    seed: int = 0  # DARE masks


class Accumulator(Protocol):
    def add(self, delta: Delta, ident: str) -> None: ...

    def result(self) -> Delta: ...


def _registry():
    from . import dare, mean, svd, ties
    from . import sum as sum_

    return {"sum": sum_, "mean": mean, "ties": ties, "dare": dare, "svd": svd}


def _module(name: str):
    reg = _registry()
    if name not in reg:
        raise ValueError(f"compose.merge: unknown merge method {name!r}, valid: {sorted(reg)}")
    return reg[name]


def accumulator(name: str, params: MergeParams) -> Accumulator:
    return _module(name).Accumulator(params)


def merge(name: str, deltas: Sequence[Delta], ids: Sequence[str], params: MergeParams) -> Delta:
    if len(deltas) != len(ids):
        raise ValueError("one id per delta")
    return _module(name).merge(list(deltas), list(ids), params)
