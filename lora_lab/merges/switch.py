"""LoRA Switch (Zhong et al. 2024, "Multi-LoRA Composition for Image Generation", §3.2): one adapter
active at each denoising step, in turn: adapter (step mod k) at sampler step `step` (`routed.py`)."""

from __future__ import annotations

from typing import List

from ..catalog import MergeMethodSpec, register_merge
from . import Delta, routed


def merge(deltas: List[Delta], ids: List[str], p) -> routed.Routed:
    return routed.merge("switch", deltas, ids)


class Accumulator(routed.Accumulator):
    rule = "switch"


register_merge(MergeMethodSpec("switch", ("weight",), merge, Accumulator, sampler=True,
                               help="LoRA switch: one adapter per denoising step, in turn (a denoiser's sampler)"))
