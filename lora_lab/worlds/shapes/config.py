"""`world=shapes`: the config schema of the synthetic image world."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ...checks import require as _require
from .render import COLOURS, GLYPHS, STYLES

DEFAULT_N = 8  # adapters when adapters.n is null
# the prompt word of each role (the "profession"), in glyph order
ROLE_WORDS = ("nurse", "engineer", "doctor", "teacher", "pilot", "chef", "farmer", "lawyer")


@dataclass
class ShapesWorldConfig:
    """Small RGB images of a glyph (the role) in a colour (the protected attribute) with a ring
    (the rendering style), whose attributes follow a known biased distribution per role."""

    name: str = "shapes"
    # The world's own seed (skews, held-out prompts, data order); None: the run's `seed`.
    seed: Optional[int] = None
    roles: int = 8  # glyphs, at most 8
    colours: List[str] = field(default_factory=lambda: ["red", "green", "blue", "yellow"])
    styles: List[str] = field(default_factory=lambda: ["photo", "manga", "sketch"])
    image_size: int = 8  # pixels per side, a multiple of 8 (each glyph cell is image_size / 8 pixels)
    bias_strength: float = 0.9  # probability of each (role, axis)'s dominant value
    # Target distribution per axis ("colour", "style"), proportions over its values; default uniform.
    targets: Dict[str, List[float]] = field(default_factory=dict)
    bias_samples: int = 240  # neutral-prompt images per role in the pretraining data, in exact proportion
    explicit_samples: int = 12  # images per (role, axis, value) whose prompt names the value
    heldout_fraction: float = 0.25  # share of the (role, colour, style) prompts never trained on
    # evaluation (images generated per row; every row uses the same seeded noise)
    samples: int = 64  # per role on its neutral prompt: attribute distributions, validity
    explicit_probes: int = 2  # per (role, axis, value) explicit prompt
    heldout_probes: int = 4  # per held-out (role, colour, style) prompt: the quality score
    report_samples: int = 512  # per role, for the base report's fit
    # team scenes (`bias_scene_gap`): per targeted role, `scenes` scenes of `scene_objects` objects,
    # each object generated in its own region from its own prompt
    scenes: int = 4
    scene_objects: int = 4

    def __post_init__(self) -> None:
        p = "world"
        _require(0 < self.roles <= len(GLYPHS), f"{p}.roles", f"must be in [1, {len(GLYPHS)}] (one glyph each)", self.roles)
        for axis, values, table in (("colours", self.colours, COLOURS), ("styles", self.styles, STYLES)):
            _require(len(values) >= 2, f"{p}.{axis}", "needs at least two values", list(values))
            _require(len(set(values)) == len(values), f"{p}.{axis}", "values must be unique", list(values))
            for v in values:
                _require(v in table, f"{p}.{axis}", f"unknown value, valid: {sorted(table)}", v)
        _require(self.image_size > 0 and self.image_size % 8 == 0, f"{p}.image_size", "must be a multiple of 8",
                 self.image_size)
        _require(0.0 < self.bias_strength < 1.0, f"{p}.bias_strength", "must be in (0, 1)", self.bias_strength)
        axes = {"colour": self.colours, "style": self.styles}
        for axis, props in self.targets.items():
            _require(axis in axes, f"{p}.targets", f"unknown axis, valid: {sorted(axes)}", axis)
            _require(len(props) == len(axes[axis]), f"{p}.targets.{axis}",
                     f"needs {len(axes[axis])} proportions, one per value {list(axes[axis])}", list(props))
            _require(all(x >= 0 for x in props) and sum(props) > 0, f"{p}.targets.{axis}",
                     "proportions must be >= 0 with a positive sum", list(props))
        _require(0.0 < self.heldout_fraction < 1.0, f"{p}.heldout_fraction", "must be in (0, 1)", self.heldout_fraction)
        for name in ("bias_samples", "explicit_samples", "samples", "explicit_probes", "heldout_probes", "report_samples",
                     "scenes", "scene_objects"):
            _require(getattr(self, name) > 0, f"{p}.{name}", "must be > 0", getattr(self, name))
