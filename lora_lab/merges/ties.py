"""TIES-Merging (Yadav et al., 2023), per tensor:
1. trim: keep each delta's `density` share of entries with the largest magnitude, zero the rest;
2. elect: the sign of the summed trimmed deltas, per entry;
3. disjoint merge: the mean of the trimmed entries that agree with the elected sign (zeros excluded);
then scale by λ."""

from __future__ import annotations

import math
from typing import Dict, List

import torch

from . import Delta, MergeParams


def trim(t: torch.Tensor, density: float) -> torch.Tensor:
    flat = t.flatten()
    keep = max(1, math.ceil(density * flat.numel()))
    idx = flat.abs().topk(keep, sorted=False).indices
    out = torch.zeros_like(flat)
    out[idx] = flat[idx]
    return out.view_as(t)


def merge(deltas: List[Delta], ids: List[str], p: MergeParams) -> Delta:
    out = {}
    for k in deltas[0]:
        trimmed = torch.stack([trim(d[k], p.density) for d in deltas])  # [n, ...]
        elected = torch.sign(trimmed.sum(0))
        agree = (torch.sign(trimmed) == elected) & (trimmed != 0)
        merged = (trimmed * agree).sum(0) / agree.sum(0).clamp(min=1)
        out[k] = p.lam * merged
    return out


class Accumulator:
    """Per entry: sums and counts of the positive and of the negative trimmed values."""

    def __init__(self, p: MergeParams):
        self.p = p
        self.pos: Dict[str, torch.Tensor] = {}
        self.neg: Dict[str, torch.Tensor] = {}
        self.npos: Dict[str, torch.Tensor] = {}
        self.nneg: Dict[str, torch.Tensor] = {}

    def add(self, delta: Delta, ident: str) -> None:
        for k, v in delta.items():
            t = trim(v, self.p.density)
            if k not in self.pos:
                self.pos[k], self.neg[k] = torch.zeros_like(t), torch.zeros_like(t)
                self.npos[k], self.nneg[k] = torch.zeros_like(t), torch.zeros_like(t)
            self.pos[k] += t.clamp(min=0)
            self.neg[k] += t.clamp(max=0)
            self.npos[k] += (t > 0).to(t.dtype)
            self.nneg[k] += (t < 0).to(t.dtype)

    def result(self) -> Delta:
        out = {}
        for k in self.pos:
            elected = torch.sign(self.pos[k] + self.neg[k])
            pos_mean = self.pos[k] / self.npos[k].clamp(min=1)
            neg_mean = self.neg[k] / self.nneg[k].clamp(min=1)
            merged = torch.where(elected > 0, pos_mean, torch.where(elected < 0, neg_mean, torch.zeros_like(pos_mean)))
            out[k] = self.p.lam * merged
        return out
