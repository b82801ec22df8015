"""Task arithmetic (Ilharco et al., 2023): λ · Σ_i Δ_i. In every space: the prompt family's
composition (all rewrite rules applied together) is a sum too.

λ (`compose.lam`) is one number for every k, or a schedule of k (`lam_at`): `1/sqrt(k)`, `1/k`
(which makes the sum the mean) or a list λ_1, λ_2, …. It is shared by every method that scales a
task-arithmetic sum (ties, dare, svd)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

from ..catalog import MergeMethodSpec, Param, register_merge
from . import Delta
from .lowrank import Factors, LowRank, dense

# λ_k as a function of k, by the spelling `compose.lam` takes; aliases need no quoting on a command line
SCHEDULES = {"1/sqrt(k)": lambda k: 1.0 / math.sqrt(k), "1/k": lambda k: 1.0 / k}
ALIASES = {"inv_sqrt_k": "1/sqrt(k)", "inv_k": "1/k"}


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def lam_value(v: Any) -> Optional[Any]:
    """A `compose.lam` setting in its one stored form, or None when it is not one: a number > 0 as
    a float (1 -> 1.0, also from a string "1"), a schedule as its canonical spelling ('inv_k' ->
    '1/k'), a list as a list of floats."""
    if _positive(v):
        return float(v)
    if isinstance(v, str):
        s = "".join(v.split())
        s = ALIASES.get(s, s)
        if s in SCHEDULES:
            return s
        try:
            return float(s) if _positive(float(s)) else None
        except ValueError:
            return None
    if isinstance(v, (list, tuple)) and len(v) > 0 and all(_positive(x) for x in v):
        return [float(x) for x in v]
    return None


def lam_at(lam: Any, k: int) -> float:
    """λ_k, the scale of the task-arithmetic sum of k deltas.

    Task arithmetic (Ilharco et al., 2023, "Editing models with task arithmetic") adds the task
    vectors scaled by one scalar λ, tuned on held-out data; here λ may also depend on how many
    deltas are summed: a number is λ for every k, '1/sqrt(k)' is k^-1/2, '1/k' is k^-1 (the mean),
    a list [λ_1, λ_2, …] gives λ_k for k = 1, 2, … ."""
    if k < 1:
        raise ValueError(f"λ_k is defined for k >= 1 (got k={k})")
    v = lam_value(lam)
    if v is None:
        raise ValueError(f"not a λ or λ schedule: {lam!r}")
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        return SCHEDULES[v](k)
    if k > len(v):
        raise ValueError(f"the λ list has {len(v)} values; k={k} needs λ_{k}")
    return v[k - 1]


LAM = Param("lam", 1.0, "task-arithmetic scale λ (sum, ties, dare, svd): a number, or a schedule of k",
            lambda v: lam_value(v) is not None,
            "must be a number > 0, '1/sqrt(k)', '1/k' or a list of numbers > 0", type=Any, normalize=lam_value)


def merge(deltas: List[Delta], ids: List[str], p) -> Delta:
    out: Dict[str, object] = {}
    for d in deltas:
        for k, v in d.items():
            out[k] = out[k] + v if k in out else v.clone()
    if not out:
        return {}
    lam = lam_at(p.lam, len(deltas))
    return {k: lam * v for k, v in out.items()}


class Accumulator:
    """The running sum, and how many deltas it holds (λ is λ_k). Low-rank deltas (LoRA factors)
    stay factors: `result()` gives each module's sum of them as one unexpanded product
    (`lowrank.LowRank` of the adapters' own factors, no copy), λ_k as its scale, expanded only where
    it is added to the weight. Past a summed rank of out·in/(out + in) the product costs more
    arithmetic than adding a dense matrix would, but a dense running sum would hold one more
    full-size copy of every module it touches: memory is what limits a large model."""

    def __init__(self, p):
        self.p, self.total, self.k = p, {}, 0
        self.pending: Dict[str, Tuple[list, list]] = {}  # module -> (lefts, rights), never expanded here
        self._expanded = None  # result() expanded, for `without`; reset by every add

    def _add_dense(self, delta: Delta) -> None:
        for k, v in delta.items():
            self.total[k] = self.total[k] + v if k in self.total else v.clone()

    def add(self, delta: Delta, ident: str) -> None:
        self._add_dense(delta)
        self.k += 1
        self._expanded = None

    def add_lowrank(self, factors: Factors, ident: str) -> None:
        for n, (left, right) in factors.items():
            lefts, rights = self.pending.setdefault(n, ([], []))
            lefts.append(left)
            rights.append(right)
        self.k += 1
        self._expanded = None

    def result(self) -> Delta:
        if not self.k:
            return {}
        lam = lam_at(self.p.lam, self.k)
        out = {n: lam * v for n, v in self.total.items()}
        for n, (lefts, rights) in self.pending.items():
            pending = LowRank(tuple(lefts), tuple(rights))
            out[n] = lam * (self.total[n] + pending.dense()) if n in self.total else lam * pending
        return out

    def without(self, delta: Delta, ident: str) -> Delta:
        """The stack minus λ_k·`delta`: every other delta added, at the λ of all k (expanded; the
        stack is expanded once per k, whatever adapter is left out)."""
        lam = lam_at(self.p.lam, self.k)
        if self._expanded is None:
            self._expanded = {k: dense(v) for k, v in self.result().items()}
        return {k: v - lam * delta[k] for k, v in self._expanded.items()}


register_merge(MergeMethodSpec("sum", ("weight", "output", "input"), merge, Accumulator, (LAM,), lowrank=True,
                               help="task arithmetic: λ (or λ_k) times the sum"))
