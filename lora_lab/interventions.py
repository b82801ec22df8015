"""Applying interventions to a live model, each as a context manager that undoes itself.

- `weight_edit(model, deltas)`: W <- W0 + delta for named Linear/Conv1D weights; on exit every
  touched weight is restored from a pristine copy (bit-exact; never by subtracting the delta back,
  which drifts in floating point). The copy is taken on entry, or once for many edits inside
  `pristine(model)` (a curve's compositions: one copy of the touched weights per curve, kept on the
  host when the model is on a GPU). A delta may be a `merges.lowrank.LowRank`, added in place
  (`addmm_`) without expanding it.
- `routed_edit(model, routed, step_of)`: a composition at sampling time (`merges/routed.py`) on a
  denoiser: each forward pass with the switch's active adapter edited in, or once per adapter
  with the predictions averaged (composite); weights restored after every pass.
- `steering(model, vectors)`: adds `vectors[site]` to the output of each named sub-module (a
  steering site, `ModelHandle.steer_sites`) through forward hooks; the hooks are removed in
  `finally`, also when the body raises.

Deltas are in each module's own weight layout ([out, in] for nn.Linear, [in, out] for GPT-2's
Conv1D, [out, in, *kernel] for a convolution), so adding them is layout-agnostic. A convolution's
delta may also come as the matrix [out, in·prod(kernel)] (a product of LoRA factors): it is the
kernel flattened row-major, and is reshaped to it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Mapping

import torch
from torch import nn

from .merges.lowrank import LowRank


STORE = "_lora_lab_pristine"  # the model's attribute holding `pristine`'s copies


def _weight(model: nn.Module, module_name: str) -> torch.Tensor:
    return model.get_submodule(module_name).weight


class _Copies(dict):
    """`pristine`'s store: weight name -> its pristine copy; `editing`: the names an edit holds now."""

    def __init__(self):
        super().__init__()
        self.editing = set()


@contextmanager
def pristine(model: nn.Module) -> Iterator[Dict[str, torch.Tensor]]:
    """Inside: `weight_edit` copies each weight it touches once (the first time), into host memory
    when the weight is on a GPU, and restores from that copy, instead of copying at every edit. An
    edit nested in another on the same weight takes its own copy (it restores the outer edit's
    weight); `add_into` changes weights for good and drops their copies. Nested uses share the
    outermost copies."""
    if STORE in model.__dict__:
        yield model.__dict__[STORE]
        return
    model.__dict__[STORE] = _Copies()
    try:
        yield model.__dict__[STORE]
    finally:
        del model.__dict__[STORE]


def _add(w: torch.Tensor, delta) -> None:
    """w += delta in place: a `LowRank` as one addmm_ on the weight (a conv kernel's as [out, in·prod(kernel)]),
    its factors concatenated for this module only."""
    if isinstance(delta, LowRank):
        left, right = delta.product()
        w.view(w.shape[0], -1).addmm_(left.to(device=w.device, dtype=w.dtype), right.to(device=w.device, dtype=w.dtype),
                                      alpha=delta.scale)
    else:
        w.add_(delta.to(device=w.device, dtype=w.dtype))


def add_into(model: nn.Module, deltas: Mapping[str, torch.Tensor]) -> None:
    """W <- W + delta for each named module, in place and for good (a merge into the model, as
    PEFT's merge_and_unload): no copy of anything, a `LowRank` never expanded to a full-size delta."""
    store = model.__dict__.get(STORE)
    with torch.no_grad():
        for name, delta in deltas.items():
            _add(_weight(model, name), _fitted(_weight(model, name), name, delta))
            if store is not None:
                store.pop(name, None)  # no longer the weight as it is


def _fitted(w: torch.Tensor, name: str, delta):
    """`delta` as it adds to `w`: a conv kernel's dense delta given as [out, in·prod(kernel)] reshaped
    to the kernel (a `LowRank` of that shape is added to the kernel's matrix view); a ValueError
    naming the module on any other shape mismatch."""
    as_matrix = w.dim() > 2 and len(delta.shape) == 2 and tuple(delta.shape) == (w.shape[0], w[0].numel())
    if as_matrix:
        return delta if isinstance(delta, LowRank) else delta.reshape(w.shape)
    if tuple(w.shape) != tuple(delta.shape):
        raise ValueError(f"delta for {name} has shape {tuple(delta.shape)}, weight is {tuple(w.shape)}")
    return delta


@contextmanager
def weight_edit(model: nn.Module, deltas: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Temporarily add `deltas[module_name]` to each named module's weight."""
    store = model.__dict__.get(STORE)
    copies: Dict[str, torch.Tensor] = {}
    held = []  # names this edit holds in the store
    try:
        with torch.no_grad():
            for name, delta in deltas.items():
                w = _weight(model, name)
                delta = _fitted(w, name, delta)
                if store is None or name in store.editing:
                    copies[name] = w.detach().clone()
                else:
                    if name not in store:
                        store[name] = w.detach().to("cpu" if w.is_cuda else w.device, copy=True)
                    copies[name] = store[name]
                    store.editing.add(name)
                    held.append(name)
                _add(w, delta)
        yield model
    finally:
        with torch.no_grad():
            for name, w0 in copies.items():
                _weight(model, name).copy_(w0)
        for name in held:
            store.editing.discard(name)


@contextmanager
def routed_edit(model: nn.Module, routed, step_of: Callable[[int], int]) -> Iterator[nn.Module]:
    """`model` (a denoiser: its forward takes `timestep`) composing `routed` at sampling time: a
    switch edits in, for each forward pass, the delta of the adapter active at the sampler step
    `step_of(timestep)`; a composite runs each forward pass once per adapter, that adapter's delta
    edited in, and returns the mean prediction. Each edit is a `weight_edit`, undone after the pass;
    on exit the model's own forward is back."""
    plain = model.forward

    def forward(*args, timestep, **kwargs):
        if routed.rule == "switch":
            steps = {step_of(int(t)) for t in torch.as_tensor(timestep).reshape(-1).unique().tolist()}
            if len(steps) != 1:
                raise ValueError(f"a switch takes one sampler step per forward pass, got steps {sorted(steps)}")
            with weight_edit(model, routed.deltas[routed.active(steps.pop())]):
                return plain(*args, timestep=timestep, **kwargs)
        outs = []
        for delta in routed.deltas:
            with weight_edit(model, delta):
                outs.append(plain(*args, timestep=timestep, **kwargs))
        return torch.stack(outs).mean(0)

    model.forward = forward  # the instance attribute shadows the class's forward; nn.Module.__call__ calls it
    try:
        yield model
    finally:
        del model.forward


def _add_to_output(vector: torch.Tensor):
    def hook(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + vector.to(device=output[0].device, dtype=output[0].dtype),) + output[1:]
        return output + vector.to(device=output.device, dtype=output.dtype)

    return hook


@contextmanager
def steering(model: nn.Module, vectors: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Temporarily add `vectors[site]` to the output of sub-module `site` (broadcast: a block's
    [hidden] vector at every position). The vectors may require grad, or be views of one tensor
    that does: the hooks are differentiable, which is how steering is trained."""
    handles = []
    try:
        for site, vector in vectors.items():
            handles.append(model.get_submodule(site).register_forward_hook(_add_to_output(vector)))
        yield model
    finally:
        for h in handles:
            h.remove()
