"""`lora`: PEFT LoRA on attention and MLP projections. Weight space: W = W0 + (alpha/r) B A."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from torch import nn

from ..interventions import weight_edit
from ..merges.lowrank import Factors, densify
from ..training import Objective, train
from . import Adapter

# Every attention and MLP projection, per architecture (model.config.model_type).
DEFAULT_TARGET_MODULES = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "bert": ["query", "key", "value"],  # attention projections of a sentence encoder
}
PREFIX = "base_model.model."


def lora_factors(state: Dict[str, torch.Tensor], scaling: float, fan_in_fan_out: bool) -> Factors:
    """Per-module (left, right) with scaling * B @ A == left @ right in the weight's layout
    (transposed for Conv1D layers, fan_in_fan_out). Pure tensor maths."""
    out = {}
    for key, a in state.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len(PREFIX) : -len(".lora_A.weight")] if key.startswith(PREFIX) else key[: -len(".lora_A.weight")]
        b = state[key.replace(".lora_A.", ".lora_B.")]
        out[module] = (a.T * scaling, b.T) if fan_in_fan_out else (b * scaling, a)
    return out


def lora_deltas(state: Dict[str, torch.Tensor], scaling: float, fan_in_fan_out: bool) -> Dict[str, torch.Tensor]:
    """Per-module dense weight deltas scaling * B @ A, each in its weight's layout."""
    return densify(lora_factors(state, scaling, fan_in_fan_out))


def load_lora_factors(path: Path) -> Factors:
    """Factors of a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)."""
    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    if cfg.get("use_rslora"):
        scaling = cfg["lora_alpha"] / cfg["r"] ** 0.5
    else:
        scaling = cfg["lora_alpha"] / cfg["r"]
    state = {k: v.float() for k, v in load_file(str(Path(path) / "adapter_model.safetensors")).items()}
    return lora_factors(state, scaling, cfg["fan_in_fan_out"])


@contextmanager
def unmerged(model, adapters: Sequence[Adapter]) -> Iterator[Callable[[int], nn.Module]]:
    """`model` with the adapters loaded by PEFT, unmerged, each at its stacking scale. Yields
    `activate(k)`: the first k adapters active (k >= 1), so every adapted layer computes
    W0 x + Σ_{i<k} s_i B_i A_i x. The LoRA layers are taken out on exit; base weights are never touched."""
    names = [f"a{i}" for i in range(len(adapters))]  # PEFT names are module keys: no ':' or '.'
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        pm = PeftModel.from_pretrained(model, str(adapters[0].path), adapter_name=names[0])
    try:
        for name, ad in zip(names[1:], adapters[1:]):
            pm.load_adapter(str(ad.path), adapter_name=name)
        for module in pm.modules():
            if isinstance(module, LoraLayer):
                for name, ad in zip(names, adapters):
                    module.set_scale(name, ad.scale)

        def activate(k: int) -> nn.Module:
            if not 1 <= k <= len(names):
                raise ValueError(f"k={k}: {len(names)} adapters are loaded")
            pm.base_model.set_adapter(names[:k], inference_mode=True)
            return pm

        yield activate
    finally:
        pm.unload()
        model.__dict__.pop("peft_config", None)


class LoraFamily:
    name = "lora"
    space = "weight"
    trainable = True

    def peft_config(self, model, fcfg) -> LoraConfig:
        mtype = model.config.model_type
        modules = list(fcfg.target_modules or DEFAULT_TARGET_MODULES.get(mtype, []))
        if not modules:
            raise ValueError(f"family.target_modules: no default for model type {mtype!r}; set it explicitly")
        return LoraConfig(
            r=fcfg.rank, lora_alpha=fcfg.alpha, target_modules=modules, lora_dropout=0.0, bias="none",
            fan_in_fan_out=mtype == "gpt2",  # GPT-2's Conv1D stores weights as [in, out]
        )

    def train(self, base, fcfg, objective: Objective, acfg, seed: int, out_dir: Path, progress: bool, desc: str) -> Dict[str, Any]:
        model = base.model
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # peft 0.21 calls a transformers-5 deprecated alias; harmless, and not the user's to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            torch.manual_seed(seed)  # A's init
            pm = get_peft_model(model, self.peft_config(model, fcfg))
        try:
            params = [p for p in pm.parameters() if p.requires_grad]
            res = train(pm, params, objective, steps=acfg.steps, batch_size=acfg.batch_size, lr=fcfg.lr, seed=seed,
                        desc=desc, progress=progress)
            pm.save_pretrained(str(out_dir))
        finally:
            pm.unload()  # LoRA layers out, base modules (untouched weights) back in place
            model.__dict__.pop("peft_config", None)  # left by PEFT; the next get_peft_model would warn
        return {"train_seconds": res.seconds, "final_loss": sum(res.losses[-10:]) / 10,
                "n_params": sum(p.numel() for p in params)}

    def load(self, path: Path) -> Dict[str, torch.Tensor]:
        return densify(load_lora_factors(path))

    def load_factors(self, path: Path) -> Factors:
        return load_lora_factors(path)

    def apply(self, model, tensors: Dict[str, torch.Tensor]):
        return weight_edit(model, tensors)
