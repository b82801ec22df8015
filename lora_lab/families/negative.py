"""`family=negative`: negative prompts ("nurse -red"), no parameters and no training. For every
prompt that names a role a target covers, the world names the attribute values the target wants
less of as a negative prompt, and the model samples with classifier-free guidance against it at
`family.guidance` (a world declared `negatives` provides `Task.negative`; the shapes world's:
`worlds/shapes/rewrite.py`). Input space: the model is left as it is. Its cost: latency (a guided
prompt runs the model twice per sampler step)."""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog import register_family
from ._input import InputFamily
from ..checks import require as _require
from ..schema import Mode


@dataclass
class NegativeFamilyConfig:
    """Negative prompts through classifier-free guidance."""

    name: str = "negative"
    guidance: float = 2.0  # guidance scale against the negative prompt (1: no effect)

    def __post_init__(self) -> None:
        _require(self.guidance >= 1.0, "family.guidance", "must be >= 1", self.guidance)


class NegativeFamily(InputFamily):
    """Needs a world declared `negatives` (a text-to-image world): the task supplies the rule."""

    name = "negative"
    needs = "negatives"
    schema = NegativeFamilyConfig
    label = "negative prompt (input)"
    color = "#CC79A7"
    modes = (Mode("negative", "guided", "latency_ms", "latency_base_ms", "costs",
                  "negative prompts cost inference time (a second pass per guided step)", label="negative guided",
                  flops="flops_per_token"),)

    def rule(self, task, fcfg, targets):
        """Each prompt with its negative (deterministic: the exact expectation is itself)."""
        return task.negative(targets, fcfg.guidance)

    def deployed(self, task, fcfg, targets, seed: int):
        return task.negative(targets, fcfg.guidance)


register_family(NegativeFamily())
