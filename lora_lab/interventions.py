"""Applying interventions to a live model, each as a context manager that undoes itself.

- `weight_edit(model, deltas)`: W <- W0 + delta for named Linear/Conv1D weights; on exit every
  touched weight is restored from a pristine copy taken on entry (bit-exact; never by
  subtracting the delta back, which drifts in floating point).
- `steering(model, vectors)`: adds vectors[l] to the output of transformer block l through
  forward hooks; the hooks are removed in `finally`, also when the body raises.

Deltas are in each module's own weight layout ([out, in] for nn.Linear, [in, out] for GPT-2's
Conv1D), so adding them is layout-agnostic.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, Mapping

import torch
from torch import nn


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks (GPT-2 `transformer.h`, Llama `model.layers`, ...)."""
    n = model.config.num_hidden_layers
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n:
            return mod
    raise ValueError(f"no ModuleList of {n} blocks found in {type(model).__name__}")


def _weight(model: nn.Module, module_name: str) -> torch.Tensor:
    return model.get_submodule(module_name).weight


@contextmanager
def weight_edit(model: nn.Module, deltas: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Temporarily add `deltas[module_name]` to each named module's weight."""
    pristine: Dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for name, delta in deltas.items():
                w = _weight(model, name)
                if w.shape != delta.shape:
                    raise ValueError(f"delta for {name} has shape {tuple(delta.shape)}, weight is {tuple(w.shape)}")
                pristine[name] = w.detach().clone()
                w.add_(delta.to(device=w.device, dtype=w.dtype))
        yield model
    finally:
        with torch.no_grad():
            for name, w0 in pristine.items():
                _weight(model, name).copy_(w0)


def _add_to_output(vectors: torch.Tensor, layer: int):
    def hook(module, args, output):
        vector = vectors[layer]  # indexed per call: the optimiser updates `vectors` in place
        if isinstance(output, tuple):
            return (output[0] + vector.to(device=output[0].device, dtype=output[0].dtype),) + output[1:]
        return output + vector.to(device=output.device, dtype=output.dtype)

    return hook


@contextmanager
def steering(model: nn.Module, vectors: torch.Tensor) -> Iterator[nn.Module]:
    """Temporarily add `vectors[l]` ([n_layer, d_model]) to block l's output at every position.

    `vectors` may require grad: the hooks are differentiable, which is how steering is trained.
    """
    blocks = transformer_blocks(model)
    if vectors.shape[0] != len(blocks):
        raise ValueError(f"{vectors.shape[0]} steering vectors for {len(blocks)} blocks")
    handles = []
    try:
        for layer, block in enumerate(blocks):
            handles.append(block.register_forward_hook(_add_to_output(vectors, layer)))
        yield model
    finally:
        for h in handles:
            h.remove()
