"""Re-compression: the task-arithmetic sum λ · Σ Δ_i, truncated per matrix to its top `rank`
singular directions (Eckart-Young: the best rank-r approximation in Frobenius norm)."""

from __future__ import annotations

from typing import List

import torch

from . import Delta, MergeParams
from . import sum as sum_


def truncate(t: torch.Tensor, rank: int) -> torch.Tensor:
    if t.dim() != 2 or rank >= min(t.shape):
        return t
    u, s, vh = torch.linalg.svd(t.double(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(t.dtype)


def merge(deltas: List[Delta], ids: List[str], p: MergeParams) -> Delta:
    return {k: truncate(v, p.rank) for k, v in sum_.merge(deltas, ids, p).items()}


class Accumulator:
    """Keeps the running sum; each result() costs one SVD per matrix, whatever k is."""

    def __init__(self, p: MergeParams):
        self.p, self.inner = p, sum_.Accumulator(p)

    def add(self, delta: Delta, ident: str) -> None:
        self.inner.add(delta, ident)

    def result(self) -> Delta:
        return {k: truncate(v, self.p.rank) for k, v in self.inner.result().items()}
