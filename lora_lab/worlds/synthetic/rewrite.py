"""The synthetic world's prompt pre-processor: a neutral prompt of a targeted (role, axis) is
rewritten into an explicit one, the attribute sampled in the target proportion (`family=prompt`).
Evaluation uses the exact expectation over rewrites (a mixture), not samples."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .world import BiasTarget, SyntheticWorld

Mixture = Dict[Tuple[int, str], List[Tuple[str, float]]]  # (role, axis) -> [(prompt, weight)]


def rewrite_rules(world: SyntheticWorld, targets: Sequence[BiasTarget]) -> Dict[Tuple[int, str], np.ndarray]:
    """(role, axis) -> the attribute distribution to sample; several targets on the same
    (role, axis) are averaged."""
    acc: Dict[Tuple[int, str], List[np.ndarray]] = {}
    for t in targets:
        for r in t.roles:
            acc.setdefault((r, t.axis), []).append(np.asarray(t.dist, dtype=np.float64))
    return {k: np.mean(v, axis=0) for k, v in acc.items()}


def mixture(world: SyntheticWorld, targets: Sequence[BiasTarget]) -> Mixture:
    """The exact expectation of the rewrite: each explicit variant weighted by its probability."""
    return {
        (r, axis): [(world.explicit_prompt(r, axis, v), float(p)) for v, p in enumerate(dist) if p > 0]
        for (r, axis), dist in rewrite_rules(world, targets).items()
    }


class PromptRewriter:
    """The deployable pre-processor: rewrite(prompt) samples one explicit variant."""

    def __init__(self, world: SyntheticWorld, targets: Sequence[BiasTarget], seed: int = 0):
        self.world, self.rng = world, np.random.default_rng(seed)
        self.rules = rewrite_rules(world, targets)
        self.lookup = {world.neutral_prompt(r, axis): (r, axis) for (r, axis) in self.rules}

    def __call__(self, prompt: str) -> str:
        key = self.lookup.get(prompt)
        if key is None:
            return prompt  # not a targeted neutral prompt: left alone
        dist = self.rules[key]
        return self.world.explicit_prompt(key[0], key[1], int(self.rng.choice(len(dist), p=dist)))
