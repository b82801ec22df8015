"""The synthetic world's prompt pre-processor (`family=prompt`), as deployed: it sees every input,
not only the attribute prompts.

One rule decides what any text becomes (`Rewrite.slots`, `Rewrite.apply`): for each axis, a text
that names no attribute of that axis (none of the axis's marker words or values) gets one marker
of that axis before the first mention of each role an included target covers on that axis, its
value drawn from the target distribution (several targets on one (role, axis): their mean). On a
neutral prompt that is exactly `world.explicit_prompt` ("the nurse said that" -> "the female
nurse said that"); on held-out text and fact probes it is the same insertion ("the nurse works at
the" -> "the female nurse works at the"). Markers of several axes before one role follow the
world's axis order. A text that mentions no targeted role is left as it is.

`PromptRewriter` samples one rewrite per text (the deployable pre-processor, timed);
`Rewrite.variants` is its exact expectation, every variant weighted by its probability, which
evaluation scores instead of samples.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .world import BiasTarget, SyntheticWorld

Slot = Tuple[int, str, np.ndarray]  # (index of the role word in the text, axis, distribution of its marker's value)
Variant = Tuple[str, float, Tuple[int, ...]]  # (text, probability, word indices of the inserted markers in it)


def rewrite_rules(world: SyntheticWorld, targets: Sequence[BiasTarget]) -> Dict[Tuple[int, str], np.ndarray]:
    """(role, axis) -> the attribute distribution to sample; several targets on the same
    (role, axis) are averaged."""
    acc: Dict[Tuple[int, str], List[np.ndarray]] = {}
    for t in targets:
        for r in t.roles:
            acc.setdefault((r, t.axis), []).append(np.asarray(t.dist, dtype=np.float64))
    return {k: np.mean(v, axis=0) for k, v in acc.items()}


class Rewrite:
    """The rewrite of these targets, on any text: where markers go (`slots`), what a text becomes
    for given values (`apply`), and the exact expectation over values (`variants`)."""

    def __init__(self, world: SyntheticWorld, targets: Sequence[BiasTarget]):
        self.world = world
        self.rules = rewrite_rules(world, targets)
        self.role_of = {name: r for r, name in enumerate(world.roles)}
        # the words that name an attribute of each axis: its markers and its values
        self.names = {ax.name: set(ax.markers) | set(ax.values) for ax in world.axes}

    def slots(self, text: str) -> List[Slot]:
        """Where the markers go, axis by axis in the world's order: before the first mention of
        each role a target covers on an axis the text names no attribute of."""
        words = text.split()
        out: List[Slot] = []
        for ax in self.world.axes:
            if self.names[ax.name].intersection(words):
                continue  # the text already names an attribute of this axis
            seen = set()
            for i, w in enumerate(words):
                r = self.role_of.get(w)
                if r is not None and r not in seen and (r, ax.name) in self.rules:
                    seen.add(r)
                    out.append((i, ax.name, self.rules[(r, ax.name)]))
        return out

    def apply(self, text: str, slots: Sequence[Slot], values: Sequence[int]) -> Tuple[str, Tuple[int, ...]]:
        """The text with each slot's marker (value `values[i]`) right before its role word, and the
        word indices of the inserted markers in the new text."""
        before: Dict[int, List[str]] = {}
        for (i, axis, _), v in zip(slots, values):
            before.setdefault(i, []).append(self.world.axis(axis).markers[v])
        out: List[str] = []
        inserted: List[int] = []
        for i, w in enumerate(text.split()):
            for marker in before.get(i, ()):
                inserted.append(len(out))
                out.append(marker)
            out.append(w)
        return " ".join(out), tuple(inserted)

    def variants(self, text: str) -> List[Variant]:
        """Every text the rewrite can make of `text`, with its probability (the slots' values drawn
        independently; values of probability 0 left out); `text` itself, weight 1, when it has no slot."""
        slots = self.slots(text)
        choices = [[(v, float(p)) for v, p in enumerate(dist) if p > 0] for _, _, dist in slots]
        out: List[Variant] = []
        for combo in itertools.product(*choices):
            new, inserted = self.apply(text, slots, [v for v, _ in combo])
            out.append((new, float(np.prod([p for _, p in combo])), inserted))
        return out

    def sample(self, text: str, rng: np.random.Generator) -> str:
        """One rewrite of `text`, each slot's value drawn from its distribution."""
        slots = self.slots(text)
        return self.apply(text, slots, [int(rng.choice(len(dist), p=dist)) for _, _, dist in slots])[0]


def mixture(world: SyntheticWorld, targets: Sequence[BiasTarget]) -> Rewrite:
    """The exact expectation of the rewrite (what evaluation scores): `Rewrite.variants` of any text."""
    return Rewrite(world, targets)


class PromptRewriter:
    """The deployable pre-processor: rewrite(text) samples one variant of `Rewrite`."""

    def __init__(self, world: SyntheticWorld, targets: Sequence[BiasTarget], seed: int = 0):
        self.rewrite, self.rng = Rewrite(world, targets), np.random.default_rng(seed)

    def __call__(self, text: str) -> str:
        return self.rewrite.sample(text, self.rng)
