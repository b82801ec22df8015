"""DARE (Yu et al., 2024): drop each entry of each delta with probability `drop`, rescale the
survivors by 1/(1 - drop), then task arithmetic (λ · Σ). Each adapter's mask is seeded by
(seed, adapter id, tensor name), so it is the same whatever the order or the other adapters."""

from __future__ import annotations

import zlib
from typing import List

import torch

from . import Delta, MergeParams
from . import sum as sum_


def drop_and_rescale(t: torch.Tensor, drop: float, seed: int, ident: str, name: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{ident}:{name}".encode()))
    keep = torch.rand(t.shape, generator=g) >= drop
    return t * keep.to(t.dtype) / (1.0 - drop)


def _sparsify(delta: Delta, ident: str, p: MergeParams) -> Delta:
    return {k: drop_and_rescale(v, p.drop, p.seed, ident, k) for k, v in delta.items()}


def merge(deltas: List[Delta], ids: List[str], p: MergeParams) -> Delta:
    return sum_.merge([_sparsify(d, i, p) for d, i in zip(deltas, ids)], ids, p)


class Accumulator:
    def __init__(self, p: MergeParams):
        self.p, self.inner = p, sum_.Accumulator(p)

    def add(self, delta: Delta, ident: str) -> None:
        self.inner.add(_sparsify(delta, ident, self.p), ident)

    def result(self) -> Delta:
        return self.inner.result()
