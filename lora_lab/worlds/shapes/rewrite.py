"""The shapes world's input-space rules: the prompt pre-processor (`family=prompt`) and negative
prompts (`family=negative`), each as deployed (it sees every prompt) and as its exact expectation.

Pre-processor: a prompt that names a role a target covers on an axis, and no value of that axis,
gets one value of the axis drawn from the target distribution (several targets on one (role, axis):
their mean), in the grammar's order ("nurse" -> "green nurse"; "manga nurse" -> "green manga nurse").

Negative prompt ("nurse -red"): for a prompt naming a covered role, the values a target wants less
of than the base has (for a rebalancing target, those whose base probability exceeds the target's;
for "everything is manga", every other style) that the prompt does not name itself, as a negative
prompt in the same grammar ("red" or "red sketch"), sampled with classifier-free guidance against
it at the family's guidance scale (Ho & Salimans 2022, eq. 6, with the negative prompt in place of
the empty one, as Stable Diffusion pipelines do). A prompt with nothing to negate is left as it is.

`variants(prompt)` -> [(conditioning, probability)]: what evaluation generates (images split
between the variants in exact proportion); the rewriters sample one variant per prompt (timed).
`scene(prompt, objects, rng)` -> one conditioning per object of a team scene, each generated in its
own region: the pre-processor assigns each object's values so that the scene holds every targeted
axis in the target proportion (largest-remainder counts per axis, shuffled over the objects), as an
LLM pre-processor prompting a region model for "a team of nurses" would.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..synthetic.rewrite import rewrite_rules
from ..synthetic.world import BiasTarget, allocate
from .world import ShapesWorld


class Rewrite:
    """The pre-processor's rule for these targets."""

    def __init__(self, world: ShapesWorld, targets: Sequence[BiasTarget]):
        self.world, self.rules = world, rewrite_rules(world, targets)

    def slots(self, prompt: str) -> List[Tuple[str, np.ndarray]]:
        said = self.world.parse(prompt)
        r = said["role"]
        if r is None:
            return []
        return [(ax.name, self.rules[(r, ax.name)]) for ax in self.world.axes
                if said[ax.name] is None and (r, ax.name) in self.rules]

    def apply(self, prompt: str, values: Dict[str, int]) -> str:
        said = {**self.world.parse(prompt), **values}
        return self.world.prompt(said["role"], said["colour"], said["style"])

    def variants(self, prompt: str) -> List[Tuple[str, float]]:
        slots = self.slots(prompt)
        if not slots:
            return [(prompt, 1.0)]
        choices = [[(axis, v, float(p)) for v, p in enumerate(dist) if p > 0] for axis, dist in slots]
        return [(self.apply(prompt, {a: v for a, v, _ in combo}), float(np.prod([p for *_, p in combo])))
                for combo in itertools.product(*choices)]

    def sample(self, prompt: str, rng: np.random.Generator) -> str:
        return self.apply(prompt, {axis: int(rng.choice(len(d), p=d)) for axis, d in self.slots(prompt)})

    def scene(self, prompt: str, objects: int, rng: np.random.Generator) -> List[str]:
        per_axis = {axis: rng.permutation(np.repeat(np.arange(len(d)), allocate(objects, d))) for axis, d in self.slots(prompt)}
        return [self.apply(prompt, {axis: int(v[i]) for axis, v in per_axis.items()}) for i in range(objects)]


class Negative:
    """Negative prompts for these targets (deterministic: its one variant has probability 1)."""

    def __init__(self, world: ShapesWorld, targets: Sequence[BiasTarget], guidance: float):
        self.world, self.guidance = world, guidance
        self.unwanted: Dict[Tuple[int, str], set] = {}
        for t in targets:
            for r in t.roles:
                base = world.base_dist[t.axis][r]
                less = {v for v, (b, want) in enumerate(zip(base, t.dist)) if want < b}
                self.unwanted.setdefault((r, t.axis), set()).update(less)

    def negative(self, prompt: str) -> str:
        said = self.world.parse(prompt)
        r = said["role"]
        words = []
        for ax in self.world.axes:
            if r is not None and said[ax.name] is None:
                words += [ax.values[v] for v in sorted(self.unwanted.get((r, ax.name), ()))]
        return " ".join(words)

    def __call__(self, prompt):
        neg = self.negative(prompt)
        return (prompt, neg, self.guidance) if neg else prompt

    def variants(self, prompt: str) -> List[Tuple[object, float]]:
        return [(self(prompt), 1.0)]

    def scene(self, prompt: str, objects: int, rng: np.random.Generator) -> List[object]:
        return [self(prompt)] * objects


class PromptRewriter:
    """The deployable pre-processor: one sampled rewrite per prompt."""

    def __init__(self, world: ShapesWorld, targets: Sequence[BiasTarget], seed: int = 0):
        self.rewrite, self.rng = Rewrite(world, targets), np.random.default_rng(seed)

    def __call__(self, prompt: str) -> str:
        return self.rewrite.sample(prompt, self.rng)
