"""DARE (Yu et al., 2024): drop each entry of each delta with probability `drop`, rescale the
survivors by 1/(1 - drop), then task arithmetic (λ · Σ). Each adapter's mask is seeded by
(seed, adapter id, tensor name), so it is the same whatever the order or the other adapters."""

from __future__ import annotations

import zlib
from typing import List

from ..catalog import MergeMethodSpec, Param, register_merge
from . import Delta
from . import sum as sum_

DROP = Param("drop", 0.5, "DARE: probability of dropping an entry", lambda v: 0 <= v < 1, "must be in [0, 1)")


def drop_and_rescale(t, drop: float, seed: int, ident: str, name: str):
    """The mask is drawn by a CPU generator whatever the device (the same masks on a GPU as on a
    CPU: generators of different devices draw different streams) and moved to `t`'s device."""
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{ident}:{name}".encode()))
    keep = torch.rand(t.shape, generator=g) >= drop
    return t * keep.to(device=t.device, dtype=t.dtype) / (1.0 - drop)


def _sparsify(delta: Delta, ident: str, p) -> Delta:
    return {k: drop_and_rescale(v, p.drop, p.seed, ident, k) for k, v in delta.items()}


def merge(deltas: List[Delta], ids: List[str], p) -> Delta:
    return sum_.merge([_sparsify(d, i, p) for d, i in zip(deltas, ids)], ids, p)


class Accumulator:
    def __init__(self, p):
        self.p, self.inner = p, sum_.Accumulator(p)

    def add(self, delta: Delta, ident: str) -> None:
        self.inner.add(_sparsify(delta, ident, self.p), ident)

    def result(self) -> Delta:
        return self.inner.result()

    def without(self, delta: Delta, ident: str) -> Delta:
        """The stack minus λ_k times `delta`'s own sparsified copy (the mask it was added with)."""
        return self.inner.without(_sparsify(delta, ident, self.p), ident)


register_merge(MergeMethodSpec("dare", ("weight",), merge, Accumulator, (sum_.LAM, DROP),
                               help="drop and rescale each delta's entries, then task arithmetic"))
