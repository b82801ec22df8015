"""Matched strength: the scale at which one adapter alone reaches a given gap reduction.

`reduction(s)` = 1 - gap(s) / gap(0) for the adapter applied at strength s. It rises from 0 but
need not be monotone (a strong adapter overshoots past the target distribution), so the search
scans a geometric grid for the first bracket that crosses the goal, then bisects inside it. The
grid spans five octaves below `max_scale` (0.25 to 8 by default); a goal already reached at its
lowest point is bisected for between 0 and that point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Calibration:
    scale: float
    reduction: float  # achieved at `scale`
    reachable: bool  # False: no scale in [0, max_scale] reaches the goal; scale is the best found


def calibrate(reduction: Callable[[float], float], goal: float, max_scale: float, tol: float = 0.005,
              octaves: int = 5, steps_per_octave: int = 2, max_bisections: int = 30,
              width: float = 1e-3) -> Calibration:
    """Bisection stops once the reduction at the bracket's top is within `tol` above the goal, or
    the bracket is narrower than `width` × its top: a reduction measured on sampled images is a
    step function of the scale, whose steps can be wider than `tol`."""
    n = octaves * steps_per_octave + 1  # max * 2^-octaves ... max, factor 2^(1/steps_per_octave) apart
    grid = [max_scale * 2.0 ** (-(n - 1 - i) / steps_per_octave) for i in range(n)]
    lo = 0.0
    best = (0.0, 0.0)
    for s in grid:
        r = reduction(s)
        if r > best[1]:
            best = (s, r)
        if r >= goal:
            hi, r_hi = s, r
            break
        lo = s
    else:
        return Calibration(best[0], best[1], reachable=False)
    for _ in range(max_bisections):
        if r_hi - goal <= tol or hi - lo <= width * hi:
            break
        mid = 0.5 * (lo + hi)
        r = reduction(mid)
        if r >= goal:
            hi, r_hi = mid, r
        else:
            lo = mid
    return Calibration(hi, r_hi, reachable=True)
