"""Model handles (`contracts.ModelHandle`): the module under study, how its inputs are encoded,
where LoRA and steering act on it, and one timed inference step.

`HFTextModel` serves every Hugging Face text model lora_lab loads or builds (GPT-2 and Llama
causal LMs, BERT-style encoders). Another kind of model (an image denoiser, a model outside
Hugging Face) plugs in with its own handle; families and merge methods only use this interface.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..eval.batch import encode, position_limit

# Every attention and MLP projection, per architecture (config.model_type); encoders: attention.
LORA_TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "bert": ["query", "key", "value"],
}
FAN_IN_FAN_OUT = ("gpt2",)  # GPT-2's Conv1D stores weights as [in, out]


def block_list(module: nn.Module) -> Tuple[str, nn.ModuleList]:
    """(name, list) of the transformer blocks: the ModuleList with `num_hidden_layers` entries
    (GPT-2 `transformer.h`, Llama `model.layers`, BERT `encoder.layer`)."""
    n = module.config.num_hidden_layers
    for name, mod in module.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return name, mod
    raise ValueError(f"no ModuleList of {n} blocks found in {type(module).__name__}")


class HFTextModel:
    """A Hugging Face text model and its tokenizer."""

    def __init__(self, module: nn.Module, tokenizer: Any):
        self.module, self.tokenizer = module, tokenizer

    @property
    def device(self) -> torch.device:
        return self.module.device

    def encode(self, inputs: Sequence[str], module: Optional[nn.Module] = None) -> Dict[str, torch.Tensor]:
        ids, mask = encode(self.tokenizer, inputs, position_limit(module or self.module))
        return {"input_ids": ids.to(self.device), "attention_mask": mask.long().to(self.device)}

    @torch.inference_mode()
    def hidden(self, inputs: Sequence[str]) -> torch.Tensor:
        """The last hidden state (what the LM head reads; an encoder's output) at every real position."""
        enc = self.encode(inputs)
        out = self.module(**enc, output_hidden_states=True)
        return out.hidden_states[-1][enc["attention_mask"].bool()].float()

    def tokens(self, inputs: Sequence[str]) -> int:
        """The inputs' tokens as the model sees them (the start token included, padding not)."""
        return int(self.encode(inputs)["attention_mask"].sum())

    def lora_targets(self) -> Tuple[List[str], bool]:
        """Every attention and MLP projection of a known architecture (none for another one: the
        family then needs `family.target_modules`), and whether they are stored [in, out]."""
        mtype = self.module.config.model_type
        return list(LORA_TARGETS.get(mtype, [])), mtype in FAN_IN_FAN_OUT

    def steer_sites(self) -> Dict[str, Tuple[int, ...]]:
        """Every transformer block's output, one vector of `hidden_size` each."""
        name, blocks = block_list(self.module)
        return {f"{name}.{i}": (self.module.config.hidden_size,) for i in range(len(blocks))}

    def latency_step(self, inputs: Sequence[str], rewrite: Optional[Callable[[str], str]] = None,
                     module: Optional[nn.Module] = None) -> Callable[[], Any]:
        """Tokenising `inputs` (rewritten first, if given) and one forward pass of `module` (default:
        this handle's; the LoRA unmerged mode times a PEFT wrapper around it)."""
        model = module if module is not None else self.module

        @torch.inference_mode()
        def step():
            batch = [rewrite(t) for t in inputs] if rewrite is not None else inputs
            model(**self.encode(batch, model))
            if self.device.type == "cuda":
                torch.cuda.synchronize()

        return step
