"""The metric columns of one evaluated composition (DESIGN.md, "Metrics").

`evaluate` is called with the composition applied (or, for the prompt family, with its rewrite
mixture); `removal_gap` after it has been removed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from ..world import BiasTarget, SyntheticWorld
from .probes import attribute_distributions, explicit_accuracy, fact_accuracy, normalised_entropy, perplexity, tv_distance

METRICS = (
    "quality_ppl_ratio",
    "quality_fact_acc",
    "bias_target_gap",
    "bias_offtarget_drift",
    "control_explicit_acc",
    "diversity_entropy",
    "removal_gap",
)


@dataclass
class Reference:
    """What compositions are compared against: the base model's numbers, computed once."""

    ppl: float
    dists: Dict[str, np.ndarray]  # axis -> [roles, values] on neutral prompts
    heldout: Sequence[str]


def reference(model, tok, world: SyntheticWorld) -> Reference:
    held = world.heldout_text()
    return Reference(perplexity(model, tok, held), attribute_distributions(model, tok, world), held)


def covered(targets: Sequence[BiasTarget]) -> Set[Tuple[int, str]]:
    return {(r, t.axis) for t in targets for r in t.roles}


def target_gap_of(dists: Mapping[str, np.ndarray], targets: Sequence[BiasTarget]) -> float:
    """Mean over targets of each target's mean TV distance to its wanted distribution."""
    return float(np.mean(list(per_target_gaps(dists, targets).values())))


def per_target_gaps(dists: Mapping[str, np.ndarray], targets: Sequence[BiasTarget]) -> Dict[str, float]:
    return {t.id: float(tv_distance(dists[t.axis][list(t.roles)], np.asarray(t.dist)).mean()) for t in targets}


def evaluate(model, tok, world: SyntheticWorld, ref: Reference, included: Sequence[BiasTarget],
             all_targets: Sequence[BiasTarget], mixture: Optional[Mapping] = None) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Every metric but `removal_gap`, for the model as it is now (composition applied), and each
    included target's own gap.

    `bias_target_gap` is over the included targets (k = 0: over all targets, the base gap);
    `bias_offtarget_drift` over every (role, axis) of the world that no included target covers
    (NaN when the composition covers them all).
    """
    dists = attribute_distributions(model, tok, world, mixture)
    cov = covered(included)
    drift = [
        tv_distance(dists[ax.name][r], ref.dists[ax.name][r])
        for ax in world.axes
        for r in range(len(world.roles))
        if (r, ax.name) not in cov
    ]
    metrics = {
        "quality_ppl_ratio": perplexity(model, tok, ref.heldout) / ref.ppl,
        "quality_fact_acc": fact_accuracy(model, tok, world),
        "bias_target_gap": target_gap_of(dists, included or all_targets),
        "bias_offtarget_drift": float(np.mean(drift)) if drift else float("nan"),
        "control_explicit_acc": explicit_accuracy(model, tok, world),
        "diversity_entropy": float(np.mean([normalised_entropy(dists[ax.name]).mean() for ax in world.axes])),
    }
    return metrics, per_target_gaps(dists, included)
