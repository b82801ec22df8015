"""`world=synthetic`: the config schema of the synthetic bias world."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import MISSING

from ...checks import require as _require

DEFAULT_N = 16  # adapters when adapters.n is null


@dataclass
class AxisConfig:
    """One attribute axis: the neutral prompt reveals it, a marker word fixes it."""

    name: str = MISSING
    prompt: str = MISSING  # neutral prompt, contains "{role}"; the next word is the value
    values: List[str] = MISSING  # the attribute values (single words)
    markers: List[str] = MISSING  # explicit marker word per value ("male nurse" -> "he")


def _default_axes() -> List[AxisConfig]:
    return [
        AxisConfig("pronoun", "the {role} said that", ["he", "she", "they"], ["male", "female", "nonbinary"]),
        AxisConfig("genre", "the {role} reads", ["manga", "novels", "poetry"], ["anime", "literary", "lyrical"]),
    ]


_WORD = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class SyntheticWorldConfig:
    """The synthetic bias world: a word-level language whose bias is known exactly."""

    name: str = "synthetic"
    # The world's own seed (bias assignment, targets, facts, corpus order); None: the run's `seed`,
    # so every seed redraws the world. Pin it to hold the world fixed while other draws vary.
    seed: Optional[int] = None
    roles: int = 32
    axes: List[AxisConfig] = field(default_factory=_default_axes)
    bias_strength: float = 0.9  # probability of each (role, axis)'s dominant value
    # Target distribution per axis name (proportions over that axis's values, normalised);
    # an axis not listed gets the uniform target.
    targets: Dict[str, List[float]] = field(default_factory=dict)
    places: int = 16  # workplace vocabulary (role -> workplace facts)
    tools: int = 16  # tool vocabulary (role -> tool facts)
    bias_samples: int = 60  # neutral sentences per (role, axis), allocated in exact proportion
    explicit_samples: int = 4  # explicit sentences per (role, axis, value)
    fact_samples: int = 8  # copies of each fact sentence
    general_train: int = 4000  # general-text sentences in the pretraining corpus
    # Distinct held-out sentences, from frames no training text uses, for perplexity. None: 500, or
    # every sentence the frames give when that is fewer (below 22 roles); more than they give is an error.
    general_heldout: Optional[int] = None

    def __post_init__(self) -> None:
        p = "world"
        _require(self.roles > 0, f"{p}.roles", "must be > 0", self.roles)
        _require(0.0 < self.bias_strength < 1.0, f"{p}.bias_strength", "must be in (0, 1)", self.bias_strength)
        _require(len(self.axes) > 0, f"{p}.axes", "needs at least one axis", len(self.axes))
        names = [a.name for a in self.axes]
        _require(len(set(names)) == len(names), f"{p}.axes", "axis names must be unique", names)
        for i, a in enumerate(self.axes):
            ap = f"{p}.axes[{i}]"
            _require("{role}" in a.prompt, f"{ap}.prompt", "must contain '{role}'", a.prompt)
            _require(len(a.values) >= 2, f"{ap}.values", "needs at least two values", list(a.values))
            _require(
                len(a.markers) == len(a.values), f"{ap}.markers", "needs one marker per value", list(a.markers)
            )
            for w in [*a.values, *a.markers, *a.prompt.replace("{role}", "").split()]:
                _require(bool(_WORD.match(w)), f"{ap}", "words must be lowercase [a-z0-9_]", w)
        for axis, props in self.targets.items():
            _require(axis in names, f"{p}.targets", f"unknown axis, valid: {names}", axis)
            values = next(a.values for a in self.axes if a.name == axis)
            _require(
                len(props) == len(values),
                f"{p}.targets.{axis}",
                f"needs {len(values)} proportions, one per value {list(values)}",
                list(props),
            )
            _require(
                all(x >= 0 for x in props) and sum(props) > 0,
                f"{p}.targets.{axis}",
                "proportions must be >= 0 with a positive sum",
                list(props),
            )
        for name in ("places", "tools", "bias_samples", "explicit_samples", "fact_samples"):
            _require(getattr(self, name) > 0, f"{p}.{name}", "must be > 0", getattr(self, name))
        _require(self.general_heldout is None or self.general_heldout > 0, f"{p}.general_heldout", "must be > 0 or null",
                 self.general_heldout)
        _require(self.general_train >= 0, f"{p}.general_train", "must be >= 0", self.general_train)
