"""Sums of low-rank deltas as one matrix product per module, expanded only where they are used.

A LoRA delta is B·A (rank r). Σ_i B_i A_i over k adapters is the single product
[B_1 | … | B_k] @ [A_1; …; A_k] (rank ≤ k·r): one BLAS call per module instead of k products and
k full-size additions, with the same result up to float rounding. `LowRank` keeps that product
unexpanded: `interventions.weight_edit` adds it into the weight in place (`addmm_`), so composing
k adapters into a model needs no full-size delta, and an adapter's dense deltas (`DenseView`) are
computed when read, never stored beside its factors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterator, Sequence, Tuple

from . import Delta

if TYPE_CHECKING:
    import torch

# module name -> (left [out, r], right [r, in]), delta = left @ right in the weight's own layout
Factors = Dict[str, Tuple["torch.Tensor", "torch.Tensor"]]


def fused_sum(factors: Sequence[Factors]) -> Delta:
    """Σ_i left_i @ right_i per module, as one concatenated product, expanded."""
    return {n: t.dense() for n, t in stacked(factors).items()}


def densify(factors: Factors) -> Delta:
    """One adapter's dense delta per module (accumulated in float64, returned in float32)."""
    return dict(DenseView(factors))


@dataclass(frozen=True)
class LowRank:
    """One module's delta scale · Σ_i left_i @ right_i (each [out, r_i] @ [r_i, in], in the weight's
    own layout), not expanded: the terms are the adapters' own factors (no copy), concatenated only
    when the product is taken, one module at a time (`product`, `dense`)."""

    lefts: Tuple["torch.Tensor", ...]
    rights: Tuple["torch.Tensor", ...]
    scale: float = 1.0

    @property
    def shape(self) -> Tuple[int, int]:
        return (self.lefts[0].shape[0], self.rights[0].shape[1])

    def product(self) -> Tuple["torch.Tensor", "torch.Tensor"]:
        """([left_1 | … | left_k], [right_1; …; right_k]): their product is the sum (before `scale`)."""
        import torch

        return torch.cat(self.lefts, dim=1), torch.cat(self.rights, dim=0)

    def dense(self) -> "torch.Tensor":
        left, right = self.product()
        return self.scale * (left @ right)

    def __mul__(self, scale: float) -> "LowRank":
        return LowRank(self.lefts, self.rights, self.scale * scale)

    __rmul__ = __mul__

    def __truediv__(self, d: float) -> "LowRank":
        return LowRank(self.lefts, self.rights, self.scale / d)

    def detach(self) -> "LowRank":
        return LowRank(tuple(t.detach() for t in self.lefts), tuple(t.detach() for t in self.rights), self.scale)

    def clone(self) -> "LowRank":
        return LowRank(tuple(t.clone() for t in self.lefts), tuple(t.clone() for t in self.rights), self.scale)


def dense(t):
    """A delta's tensor, expanded if it is a `LowRank`."""
    return t.dense() if isinstance(t, LowRank) else t


def stacked(factors: Sequence[Factors]) -> Dict[str, LowRank]:
    """Σ_i left_i @ right_i per module as one unexpanded `LowRank` of the factors themselves."""
    if not factors:
        return {}
    names = factors[0].keys()
    if any(f.keys() != names for f in factors):
        raise ValueError("low-rank deltas target different modules")
    return {n: LowRank(tuple(f[n][0] for f in factors), tuple(f[n][1] for f in factors)) for n in names}


class DenseView(Mapping):
    """One adapter's dense deltas, {module: left @ right} as `densify` computes them, each computed
    when read and not kept: N adapters hold N sets of factors, not N full-size copies of the
    weights they touch."""

    def __init__(self, factors: Factors):
        self.factors = factors

    def __getitem__(self, name: str) -> "torch.Tensor":
        left, right = self.factors[name]
        return (left.double() @ right.double()).float()  # accumulated in float64

    def __iter__(self) -> Iterator[str]:
        return iter(self.factors)

    def __len__(self) -> int:
        return len(self.factors)
