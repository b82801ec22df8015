"""Re-compression: the task-arithmetic sum λ · Σ Δ_i, truncated per matrix to its top `rank`
singular directions (Eckart-Young: the best rank-r approximation in Frobenius norm)."""

from __future__ import annotations

from typing import List

from ..catalog import MergeMethodSpec, Param, register_merge
from . import Delta
from . import sum as sum_

RANK = Param("rank", 16, "SVD: rank cap of the re-compressed summed delta", lambda v: v > 0, "must be > 0")


def truncate(t, rank: int, name: str = "tensor"):
    """The best rank-`rank` approximation of `t`. A matrix as it is; a conv kernel [out, in, *k]
    as the matrix [out, in·prod(k)] (each output channel's filter is one row), reshaped back.
    A vector or scalar has no rank to cap: a ValueError names the tensor."""
    import torch

    if t.dim() < 2:
        raise ValueError(f"compose.merge=svd: {name} has shape {tuple(t.shape)}; a rank cap needs a matrix or a "
                         f"conv kernel (>= 2 dims)")
    m = t.reshape(t.shape[0], -1)
    if rank >= min(m.shape):
        return t
    u, s, vh = torch.linalg.svd(m.double(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(t.dtype).reshape(t.shape)


def merge(deltas: List[Delta], ids: List[str], p) -> Delta:
    return {k: truncate(v, p.rank, k) for k, v in sum_.merge(deltas, ids, p).items()}


class Accumulator:
    """Keeps the running sum; each result() costs one SVD per matrix, whatever k is."""

    def __init__(self, p):
        self.p, self.inner = p, sum_.Accumulator(p)

    def add(self, delta: Delta, ident: str) -> None:
        self.inner.add(delta, ident)

    def result(self) -> Delta:
        return {k: truncate(v, self.p.rank, k) for k, v in self.inner.result().items()}

    def without(self, delta: Delta, ident: str) -> Delta:
        """The others' sum at λ_k, truncated as the stack is."""
        return {k: truncate(v, self.p.rank, k) for k, v in self.inner.without(delta, ident).items()}


register_merge(MergeMethodSpec("svd", ("weight",), merge, Accumulator, (sum_.LAM, RANK),
                               help="task arithmetic, each tensor truncated to its top singular directions"))
