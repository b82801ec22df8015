"""TIES-Merging (Yadav et al., 2023), per tensor:
1. trim: keep each delta's `density` share of entries with the largest magnitude, zero the rest;
2. elect: the sign of the summed trimmed deltas, per entry;
3. disjoint merge: the mean of the trimmed entries that agree with the elected sign (zeros excluded);
then scale by λ (λ_k for a schedule of k: `sum.lam_at`)."""

from __future__ import annotations

import math
from typing import Dict, List

from ..catalog import MergeMethodSpec, Param, register_merge
from . import Delta
from .sum import LAM, lam_at

DENSITY = Param("density", 0.2, "TIES: share of each delta's entries kept (largest magnitudes)", lambda v: 0 < v <= 1,
                "must be in (0, 1]")


def trim(t, density: float):
    import torch

    flat = t.flatten()
    keep = max(1, math.ceil(density * flat.numel()))
    idx = flat.abs().topk(keep, sorted=False).indices
    out = torch.zeros_like(flat)
    out[idx] = flat[idx]
    return out.view_as(t)


def merge(deltas: List[Delta], ids: List[str], p) -> Delta:
    import torch

    out = {}
    if not deltas:
        return out
    lam = lam_at(p.lam, len(deltas))
    for k in deltas[0]:
        trimmed = torch.stack([trim(d[k], p.density) for d in deltas])  # [n, ...]
        elected = torch.sign(trimmed.sum(0))
        agree = (torch.sign(trimmed) == elected) & (trimmed != 0)
        merged = (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)
        out[k] = lam * merged
    return out


class Accumulator:
    """Per entry: sums and counts of the positive and of the negative trimmed values; and k, the
    deltas added (λ is λ_k)."""

    def __init__(self, p):
        self.p, self.k = p, 0
        self.pos: Dict[str, object] = {}
        self.neg: Dict[str, object] = {}
        self.npos: Dict[str, object] = {}
        self.nneg: Dict[str, object] = {}

    def add(self, delta: Delta, ident: str) -> None:
        import torch

        for k, v in delta.items():
            t = trim(v, self.p.density)
            if k not in self.pos:
                self.pos[k], self.neg[k] = torch.zeros_like(t), torch.zeros_like(t)
                self.npos[k], self.nneg[k] = torch.zeros_like(t), torch.zeros_like(t)
            self.pos[k] += t.clamp(min=0)
            self.neg[k] += t.clamp(max=0)
            self.npos[k] += (t > 0).to(t.dtype)
            self.nneg[k] += (t < 0).to(t.dtype)
        self.k += 1

    def result(self) -> Delta:
        if not self.k:
            return {}
        lam = lam_at(self.p.lam, self.k)
        return {k: _disjoint_mean(self.pos[k], self.neg[k], self.npos[k], self.nneg[k], lam) for k in self.pos}

    def without(self, delta: Delta, ident: str) -> Delta:
        """TIES of the other deltas (signs elected among them alone) at λ_k, the λ of all k added;
        the running sums stay as they are."""
        lam = lam_at(self.p.lam, self.k)
        out = {}
        for k in self.pos:
            t = trim(delta[k], self.p.density)
            out[k] = _disjoint_mean(self.pos[k] - t.clamp(min=0), self.neg[k] - t.clamp(max=0),
                                    self.npos[k] - (t > 0).to(t.dtype), self.nneg[k] - (t < 0).to(t.dtype), lam)
        return out


def _disjoint_mean(pos, neg, npos, nneg, lam: float):
    """λ times, per entry, the mean of the trimmed values whose sign the sum elects (0 where it is 0)."""
    import torch

    elected = torch.sign(pos + neg)
    pos_mean = pos / npos.clamp(min=1)
    neg_mean = neg / nneg.clamp(min=1)
    return lam * torch.where(elected > 0, pos_mean, torch.where(elected < 0, neg_mean, torch.zeros_like(pos_mean)))


register_merge(MergeMethodSpec("ties", ("weight",), merge, Accumulator, (LAM, DENSITY),
                               help="TIES-Merging: trim, elect signs, disjoint mean"))
