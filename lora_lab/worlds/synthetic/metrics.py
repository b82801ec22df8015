"""The synthetic world's metric columns of one evaluated composition (declared, with their labels,
units and directions, in this package's `__init__.py`).

`evaluate` is called with the composition applied (or, for the prompt family, with its rewrite:
every input it evaluates, attribute prompts, explicit prompts, fact probes and held-out text, is
replaced by the rewrite's exact expectation); `removal_gap` after it has been removed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Set, Tuple

import numpy as np

from .world import BiasTarget, SyntheticWorld
from ...training import Encoded
from .probes import (attribute_distributions, attribute_probes, encode_heldout, explicit_probes, fact_accuracy, mean_nll,
                     normalised_entropy, tv_distance)


@dataclass
class Reference:
    """What compositions are compared against: the base model's numbers, computed once."""

    nll: float  # mean held-out NLL per scored token (`encode_heldout`), nats
    dists: Dict[str, np.ndarray]  # axis -> [roles, values] on neutral prompts
    heldout: Encoded  # the held-out text, tokenised once
    heldout_weights: np.ndarray  # each held-out row's weight (1 each: the text as written)


def reference(model, tok, world: SyntheticWorld) -> Reference:
    held, weights = encode_heldout(tok, world)
    return Reference(mean_nll(model, tok, held, weights), attribute_distributions(model, tok, world), held, weights)


def covered(targets: Sequence[BiasTarget]) -> Set[Tuple[int, str]]:
    return {(r, t.axis) for t in targets for r in t.roles}


def target_gap_of(dists: Mapping[str, np.ndarray], targets: Sequence[BiasTarget]) -> float:
    """Mean over targets of each target's mean TV distance to its wanted distribution."""
    return float(np.mean(list(per_target_gaps(dists, targets).values())))


def per_target_gaps(dists: Mapping[str, np.ndarray], targets: Sequence[BiasTarget]) -> Dict[str, float]:
    return {t.id: float(tv_distance(dists[t.axis][list(t.roles)], np.asarray(t.dist)).mean()) for t in targets}


def evaluate(model, tok, world: SyntheticWorld, ref: Reference, included: Sequence[BiasTarget],
             all_targets: Sequence[BiasTarget], rewrite: Optional[Any] = None) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Every metric but `removal_gap`, for the model as it is now (composition applied), and each
    included target's own gap. With a `rewrite` (the prompt pre-processor's exact expectation,
    `rewrite.Rewrite`), every probe is scored on its rewrites: the held-out NLL on the original
    sentence's tokens in the rewritten context (`encode_heldout`), fact and explicit accuracy as
    expectations over the rewritten prompts.

    `bias_target_gap` is over the included targets (k = 0: over all targets, the base gap), and
    `bias_base_gap` is the base model's gap over the same targets (what the composition reduced);
    `bias_offtarget_drift` over every (role, axis) of the world that no included target covers
    (NaN when the composition covers them all).
    """
    dists, masses = attribute_probes(model, tok, world, rewrite)
    explicit_acc, explicit_mass = explicit_probes(model, tok, world, rewrite)
    held = (ref.heldout, ref.heldout_weights) if rewrite is None else encode_heldout(tok, world, rewrite)
    nll_delta = mean_nll(model, tok, *held) - ref.nll
    cov = covered(included)
    untargeted = [(r, ax.name) for ax in world.axes for r in range(len(world.roles)) if (r, ax.name) not in cov]
    drift = [tv_distance(dists[ax][r], ref.dists[ax][r]) for r, ax in untargeted]
    # diversity where no included adapter aims: a rebalancing adapter pushes its own pairs towards its
    # target (uniform by default), so their entropy rises by design; the question is the others
    spread = [normalised_entropy(dists[ax][r]) for r, ax in untargeted]
    metrics = {
        "quality_nll_delta": nll_delta,
        "quality_ppl_ratio": float(np.exp(nll_delta)),
        "quality_fact_acc": fact_accuracy(model, tok, world, rewrite),
        "bias_target_gap": target_gap_of(dists, included or all_targets),
        "bias_base_gap": target_gap_of(ref.dists, included or all_targets),  # the base's gap on the same targets
        "bias_offtarget_drift": float(np.mean(drift)) if drift else float("nan"),
        "control_explicit_acc": explicit_acc,
        "diversity_entropy": float(np.mean([normalised_entropy(dists[ax.name]).mean() for ax in world.axes])),
        "diversity_offtarget": float(np.mean(spread)) if spread else float("nan"),
        # every attribute probe of this row, neutral and explicit, weighted alike
        "axis_mass": float(np.concatenate([*masses.values(), explicit_mass]).mean()),
    }
    return metrics, per_target_gaps(dists, included)
