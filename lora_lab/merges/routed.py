"""Compositions at sampling time, which the multi-LoRA composition literature compares with merging
(Zhong et al. 2024, "Multi-LoRA Composition for Image Generation", §3.2-3.3): the k LoRA adapters
are not summed into one weight delta; every denoising prediction uses one of them in turn
(`switch.py`) or each of them separately, the predictions averaged (`composite.py`).

A `Routed` composition is the k deltas, each whole, and the rule that picks among them; this module
is its pure bookkeeping (which adapter at which sampler step; a prefix built from the last), and
`interventions.routed_edit` applies one to a denoiser. Neither method has parameters: λ of the
sums does not apply, and the switch rotates every sampler step (the paper rotates every τ steps
of 50; with the 10 steps of `model=tiny_unet`, one step is the finest rotation, each of 8 adapters
active for one or two steps).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List

from ..catalog import MergeMethodSpec, register_merge
from . import Delta

RULES = ("switch", "composite")


@dataclass(frozen=True)
class Routed:
    rule: str  # "switch": adapter (step mod k) at sampler step `step`; "composite": all k, predictions averaged
    deltas: List[Delta]  # each adapter's whole delta, in the order added
    ids: List[str]

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown routing rule {self.rule!r}, valid: {list(RULES)}")
        if len(self.deltas) != len(self.ids) or not self.deltas:
            raise ValueError("a routed composition needs k >= 1 deltas, one id each")

    @property
    def k(self) -> int:
        return len(self.deltas)

    def active(self, step: int) -> int:
        """The switch's adapter at sampler step `step` (0: the first, from pure noise)."""
        return step % self.k

    def without(self, ident: str) -> "Routed":
        """The others, in their order (leave-one-out)."""
        keep = [i for i, x in enumerate(self.ids) if x != ident]
        if len(keep) == len(self.ids):
            raise KeyError(f"{ident} is not in this composition")
        return Routed(self.rule, [self.deltas[i] for i in keep], [self.ids[i] for i in keep])


class Accumulator:
    """Prefix k + 1 from prefix k: the deltas so far, kept whole (nothing to sum)."""

    def __init__(self, rule: str, p):
        self.rule = rule
        self.deltas: List[Delta] = []
        self.ids: List[str] = []

    def add(self, delta: Delta, ident: str) -> None:
        # expanded once where an adapter's deltas are computed when read (`lowrank.DenseView`)
        self.deltas.append(delta if isinstance(delta, dict) else dict(delta))
        self.ids.append(ident)

    def result(self) -> Routed:
        return Routed(self.rule, list(self.deltas), list(self.ids))

    def without(self, delta: Delta, ident: str) -> Routed:
        return self.result().without(ident)


def register(rule: str, help: str) -> None:
    """Register the operator `rule` as a weight-space merge method composing at sampling time."""
    register_merge(MergeMethodSpec(rule, ("weight",), lambda deltas, ids, p: Routed(rule, list(deltas), list(ids)),
                                   functools.partial(Accumulator, rule), sampler=True, help=help))
