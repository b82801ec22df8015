"""`family=prompt`: the pre-processor baseline. No parameters, no training: the world rewrites
every input the deployed model would see (a world declared `rewrites` provides `Task.rewrite` and
`Task.rewriter`; the synthetic world's: `worlds/synthetic/rewrite.py`), and the model is left as it
is. Its costs: latency (the rewriting is inside the timed step) and `cost_prompt_tokens`, the
tokens the rewrite adds per input."""

from __future__ import annotations

from dataclasses import dataclass
from ..catalog import register_family
from ._input import InputFamily
from ..schema import Mode

@dataclass
class PromptFamilyConfig:
    """No parameters: every input that mentions a targeted role gets the target's attribute marker,
    its value drawn in the target proportion."""

    name: str = "prompt"


class PromptFamily(InputFamily):
    """Needs a world declared `rewrites`: the task supplies the rules (`rewrite`, `rewriter`)."""

    name = "prompt"
    needs = "rewrites"  # the WorldSpec flag of the worlds it runs on
    schema = PromptFamilyConfig
    label = "prompt rewrite (input)"
    color = "#009E73"
    modes = (Mode("prompt", "rewrite", "latency_ms", "latency_base_ms", "costs",
                  "the prompt pre-processor costs inference time", label="prompt rewrite", flops="flops_per_token",
                  tokens="cost_prompt_tokens"),)

    def rule(self, task, fcfg, targets):
        """The rewrite's exact expectation for these targets (what evaluation scores)."""
        return task.rewrite(targets)

    def deployed(self, task, fcfg, targets, seed: int):
        """The rewrite as deployed: one sampled rewrite per input (timed)."""
        return task.rewriter(targets, seed)


register_family(PromptFamily())
