"""Sums of low-rank deltas as one matrix product per module.

A LoRA delta is B·A (rank r). Σ_i B_i A_i over k adapters is the single product
[B_1 | … | B_k] @ [A_1; …; A_k] (rank ≤ k·r): one BLAS call per module instead of k products and
k full-size additions, with the same result up to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Sequence, Tuple

from . import Delta

if TYPE_CHECKING:
    import torch

# module name -> (left [out, r], right [r, in]), delta = left @ right in the weight's own layout
Factors = Dict[str, Tuple["torch.Tensor", "torch.Tensor"]]


def fused_sum(factors: Sequence[Factors]) -> Delta:
    """Σ_i left_i @ right_i per module, as one concatenated product."""
    import torch

    if not factors:
        return {}
    names = factors[0].keys()
    if any(f.keys() != names for f in factors):
        raise ValueError("low-rank deltas target different modules")
    return {n: torch.cat([f[n][0] for f in factors], dim=1) @ torch.cat([f[n][1] for f in factors], dim=0) for n in names}


def densify(factors: Factors) -> Delta:
    """One adapter's dense delta per module (accumulated in float64, returned in float32)."""
    return {n: (left.double() @ right.double()).float().contiguous() for n, (left, right) in factors.items()}
