"""Many adapters of one family trained together: one batched pass over the shared frozen base.

A step stacks every adapter's own batch (each drawn from its own data, in its own seeded order,
`training.batches`) into one batch of n × batch_size rows; rows of adapter i go through the base
with adapter i's parameters only, as multi-tenant LoRA serving routes requests:
- `lora_routes`: at each adapted module, rows of group i add s · B_i A_i x (the factors gathered
  per group: two batched products of rank r per module, `torch.bmm`);
- `steer_routes`: at each steering site, rows of group i add vector v_i.
The loss is the sum over adapters of each one's own mean next-token loss, so each adapter's
gradient is exactly the gradient of its own loss (their parameters are disjoint); gradients are
clipped per adapter (as `torch.nn.utils.clip_grad_norm_` clips one adapter's), and AdamW is
elementwise, so one optimiser over the stacked parameters takes each adapter's own steps. What
differs from training them one by one is floating-point summation order (padding to a common
width changes no real position: rows are right-padded and attention is causal), measured by
tests/test_batched.py at ≤ 1e-4 relative on the factors.

Parameters are stacked along dimension 0 (one slice per adapter). Pure plumbing of the training
loop lives in `training.py`; this module only routes rows and sums losses.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Mapping, Sequence, Tuple

import torch
from torch import nn
from tqdm.auto import tqdm

from .training import LMObjective, TrainingDiverged, TrainResult, cosine_lr


# Hugging Face config fields of dropout applied functionally (no nn.Dropout module: Llama's attention)
DROPOUT_FIELDS = ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout",
                  "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout")


def has_dropout(model: nn.Module) -> bool:
    """Whether training `model` draws dropout masks (a dropout module with p > 0, or a dropout rate
    > 0 in a Hugging Face config): masks drawn for a batch of n adapters are not the masks each
    would draw alone, so such models train adapters one at a time."""
    config = getattr(model, "config", None)
    rates = [getattr(config, f, 0) for f in DROPOUT_FIELDS] if config is not None else []
    return (any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())
            or any(isinstance(r, (int, float)) and r > 0 for r in rates))


def batchable(model: nn.Module, objectives: Sequence[object]) -> bool:
    """Whether these adapters can train together: next-token objectives with one padding id, on a
    model without dropout."""
    return (all(isinstance(o, LMObjective) for o in objectives) and len({o.pad_id for o in objectives}) == 1
            and not has_dropout(model))


def _grouped(x: torch.Tensor, n: int, rows: int) -> torch.Tensor:
    """[n·b, ..., d] -> [n, b·..., d]: the rows of each group contiguous (rows are group-major).
    A tensor that does not lead with the batch's `rows` rows (a module that saw its tokens
    reordered or flattened) cannot be routed: an error, never rows sent to another adapter."""
    if x.shape[0] != rows:
        raise RuntimeError(f"a routed module saw {tuple(x.shape)}, not the batch's {rows} rows first; "
                           "this model cannot train adapters together (adapters.together=1)")
    return x.reshape(n, -1, x.shape[-1])


@contextmanager
def lora_routes(model: nn.Module, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                scaling: float, rows: int) -> Iterator[nn.Module]:
    """Each named module's output gains, for the rows of group i (the batch's i-th n-th of its
    `rows` rows, group-major), scaling · B_i A_i x: `a[m]` [n, r, in] and `b[m]` [n, out, r] in
    PEFT's layout (lora_A.weight, lora_B.weight), whatever the base weight's layout (nn.Linear or
    Conv1D act on the last dimension alike). As PEFT, x is cast to the factors' dtype and the
    product back to the output's. Forward hooks, removed on exit."""

    def hook_for(name):
        def hook(module, args, out):
            fa, fb = a[name], b[name]
            n = fa.shape[0]
            xa = torch.bmm(_grouped(args[0], n, rows).to(fa.dtype), fa.transpose(1, 2))  # [n, rows, r]
            # PEFT computes base(x) + lora_B(lora_A(x)) * scaling: the same sum, fused
            summed = torch.baddbmm(_grouped(out, n, rows).to(fa.dtype), xa, fb.transpose(1, 2), alpha=scaling)
            return summed.to(out.dtype).view(out.shape)
        return hook

    with hooked(model, {name: hook_for(name) for name in a}):
        yield model


@contextmanager
def hooked(model: nn.Module, hooks: Mapping[str, Callable]) -> Iterator[nn.Module]:
    """`model` with a forward hook on each named sub-module, removed on exit (also on error, also
    when registering one of them fails)."""
    handles = []
    try:
        for name, hook in hooks.items():
            handles.append(model.get_submodule(name).register_forward_hook(hook))
        yield model
    finally:
        for h in handles:
            h.remove()


@contextmanager
def steer_routes(model: nn.Module, vectors: Mapping[str, torch.Tensor], rows: int) -> Iterator[nn.Module]:
    """Each named site's output gains, for the rows of group i (of the batch's `rows`, group-major),
    `vectors[site][i]` (broadcast over positions, as `interventions.steering` adds one adapter's
    vector). Forward hooks, removed on exit."""

    def hook_for(site):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            v = vectors[site]
            n = v.shape[0]
            if h.shape[0] != rows:
                raise RuntimeError(f"steering site {site} saw {tuple(h.shape)}, not the batch's {rows} rows first; "
                                   "this model cannot train adapters together (adapters.together=1)")
            grouped = h.reshape(n, -1, *v.shape[1:]) + v.unsqueeze(1).to(h.dtype)
            h = grouped.view(h.shape)
            return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h
        return hook

    with hooked(model, {site: hook_for(site) for site in vectors}):
        yield model


def _step_batch(streams, pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One batch from each adapter's stream, right-padded to the widest and stacked group-major."""
    parts = [next(s) for s in streams]
    width = max(ids.shape[1] for ids, _ in parts)
    pad = torch.nn.functional.pad
    ids = torch.cat([pad(i, (0, width - i.shape[1]), value=pad_id) for i, _ in parts])
    scored = torch.cat([pad(s, (0, width - s.shape[1]), value=False) for _, s in parts])
    return ids, scored


def group_losses(model: nn.Module, ids: torch.Tensor, scored: torch.Tensor, pad_id: int, n: int) -> torch.Tensor:
    """[n]: each group's mean next-token cross-entropy over its scored tokens (`training.lm_loss`
    of its rows alone)."""
    ids, scored = ids.to(model.device), scored.to(model.device)
    logits = model(input_ids=ids, attention_mask=(ids != pad_id).long()).logits[:, :-1]
    target = ids[:, 1:].masked_fill(~scored[:, 1:], -100)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
    counts = (target != -100).reshape(n, -1).sum(1)
    return ce.reshape(n, -1).sum(1) / counts


def clip_per_group(params: Sequence[torch.Tensor], max_norm: float) -> None:
    """`clip_grad_norm_(group's params, max_norm)` for each group (dimension 0) at once: the group's
    gradients scaled by min(1, max_norm / (their total L2 norm + 1e-6))."""
    sq = sum(p.grad.reshape(p.shape[0], -1).pow(2).sum(1) for p in params)
    coef = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(coef.view(-1, *([1] * (p.dim() - 1))))


def train_together(model: nn.Module, params: List[torch.Tensor], objectives: Sequence[LMObjective], seeds: Sequence[int],
                   *, steps: int, batch_size: int, lr: float, warmup_steps: int = 0, min_lr_ratio: float = 1.0,
                   weight_decay: float = 0.0, grad_clip: float = 1.0, names: Sequence[str] = (), desc: str = "train",
                   progress: bool = True) -> List[TrainResult]:
    """`training.train` for n adapters at once: `params` stacked along dimension 0 (slice i is
    adapter i's), routed by the caller (`lora_routes`, `steer_routes`); adapter i sees the batches
    `objectives[i].batches(batch_size, steps, seeds[i])` (nothing else is random: no dropout,
    `batchable`). Raises TrainingDiverged naming the first
    adapter whose loss is NaN/inf, before the step is applied. One `TrainResult` per adapter (its
    seconds: the pass's time ÷ n)."""
    n = len(objectives)
    names = list(names) or [str(i) for i in range(n)]
    pad_id = objectives[0].pad_id
    streams = [iter(o.batches(batch_size, steps, s)) for o, s in zip(objectives, seeds)]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, warmup_steps, min_lr_ratio))
    losses = torch.empty(steps, n)
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    try:
        for step in bar:
            ids, scored = _step_batch(streams, pad_id)
            per = group_losses(model, ids, scored, pad_id, n)
            bad = (~torch.isfinite(per)).nonzero()
            if len(bad):
                i = int(bad[0])
                raise TrainingDiverged(f"{names[i]}: loss is {per[i].item()} at step {step}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            per.sum().backward()
            if grad_clip:
                clip_per_group(params, grad_clip)
            opt.step()
            sched.step()
            losses[step] = per.detach().cpu()
            if step % 50 == 0:
                bar.set_postfix(loss=f"{losses[step].mean():.3f}")
    finally:
        bar.close()
        model.eval()
    seconds = (time.perf_counter() - t0) / n
    return [TrainResult(losses[:, i].tolist(), seconds) for i in range(n)]


def stack(per_adapter: Sequence[Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """{name: [n, ...]} from n {name: tensor} with the same names, as one leaf each (trainable)."""
    return {k: torch.stack([p[k] for p in per_adapter]).detach().requires_grad_() for k in per_adapter[0]}
