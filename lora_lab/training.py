"""Next-token training on text: the loop shared by every trained component."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Protocol, Sequence, Tuple

import torch
from tqdm.auto import tqdm


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class Encoded:
    """Right-padded rows <bos> prompt completion <eos> <pad>...; `scored` marks the tokens the
    loss predicts (the completion and <eos>; every token of a row with an empty prompt)."""

    ids: torch.Tensor  # [n, L] int64
    scored: torch.Tensor  # [n, L] bool
    lengths: torch.Tensor  # [n] real tokens per row

    def __len__(self) -> int:
        return self.ids.shape[0]


def encode_pairs(tokenizer, pairs: Sequence[Tuple[str, str]]) -> Encoded:
    """(prompt, completion) pairs; the loss sees only the completion (and <eos>)."""
    rows, starts = [], []
    for prompt, completion in pairs:
        p = tokenizer(prompt, add_special_tokens=True)["input_ids"]  # <bos> + prompt words
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] if completion else []
        row = p + c + [tokenizer.eos_token_id]
        if tokenizer.unk_token_id in row:
            raise ValueError(f"text has words outside the tokenizer's vocabulary: {prompt!r} {completion!r}")
        rows.append(row)
        starts.append(max(len(p), 1))  # position 0 (<bos>) is never predicted
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    scored = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (r, s) in enumerate(zip(rows, starts)):
        ids[i, : len(r)] = torch.tensor(r)
        scored[i, s : len(r)] = True
    return Encoded(ids, scored, torch.tensor([len(r) for r in rows]))


def encode_sentences(tokenizer, texts: Sequence[str]) -> Encoded:
    """Plain sentences: every token after <bos> is scored."""
    return encode_pairs(tokenizer, [("", t) for t in texts])


def batches(data: Encoded, batch_size: int, steps: int, seed: int) -> Iterable[torch.Tensor]:
    """`steps` batches drawn epoch by epoch without replacement, trimmed to their longest row."""
    g = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(len(data), generator=g)])
        idx, order = order[:batch_size], order[batch_size:]
        width = int(data.lengths[idx].max())
        yield data.ids[idx, :width], data.scored[idx, :width]


def lm_loss(model, ids: torch.Tensor, scored: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mean next-token cross-entropy over the scored tokens."""
    ids, scored = ids.to(model.device), scored.to(model.device)
    logits = model(input_ids=ids, attention_mask=(ids != pad_id).long()).logits[:, :-1]
    target = ids[:, 1:].masked_fill(~scored[:, 1:], -100)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def cosine_lr(step: int, steps: int, warmup: int, min_ratio: float) -> float:
    """Multiplier on the peak learning rate: linear warm-up, then cosine down to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass
class TrainResult:
    losses: List[float]  # per step
    seconds: float


class Objective(Protocol):
    """What a trainer optimises: batches of some data and a scalar loss on each."""

    def batches(self, batch_size: int, steps: int, seed: int) -> Iterable[Any]: ...

    def loss(self, model, batch) -> torch.Tensor: ...


@dataclass
class LMObjective:
    """Next-token cross-entropy on the scored tokens of `data`."""

    data: Encoded
    pad_id: int

    def batches(self, batch_size: int, steps: int, seed: int) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
        return batches(self.data, batch_size, steps, seed)

    def loss(self, model, batch) -> torch.Tensor:
        ids, scored = batch
        return lm_loss(model, ids, scored, self.pad_id)


def concat(parts: Sequence[Encoded], pad_id: int) -> Encoded:
    """The rows of every part, in order, padded to the widest (batches trim to their longest row)."""
    width = max(p.ids.shape[1] for p in parts)
    ids = torch.cat([torch.nn.functional.pad(p.ids, (0, width - p.ids.shape[1]), value=pad_id) for p in parts])
    scored = torch.cat([torch.nn.functional.pad(p.scored, (0, width - p.scored.shape[1]), value=False) for p in parts])
    return Encoded(ids, scored, torch.cat([p.lengths for p in parts]))


@dataclass
class Interleaved:
    """The union of objectives that are not plain text (a world's own loss): step i draws a batch
    from part i mod k, each part from its own stream, so over k × s steps every part sees the s
    batches it would see alone."""

    parts: Sequence[Any]

    def batches(self, batch_size: int, steps: int, seed: int) -> Iterable[Tuple[int, Any]]:
        k = len(self.parts)
        streams = [iter(p.batches(batch_size, -(-steps // k), seed + i)) for i, p in enumerate(self.parts)]
        for step in range(steps):
            yield step % k, next(streams[step % k])

    def loss(self, model, batch) -> torch.Tensor:
        i, inner = batch
        return self.parts[i].loss(model, inner)


def union(objectives: Sequence[Any]) -> Any:
    """One objective over the union of several targets' data (a joint adapter's): next-token
    objectives become one, on their corpora concatenated in order (batches drawn without
    replacement from the whole, so k × s steps show each corpus as often as s steps show it
    alone); other objectives are interleaved step by step. One objective is itself."""
    if len(objectives) == 1:
        return objectives[0]
    if all(isinstance(o, LMObjective) for o in objectives):
        pads = {o.pad_id for o in objectives}
        if len(pads) != 1:
            raise ValueError(f"objectives with different padding ids {sorted(pads)} cannot be concatenated")
        return LMObjective(concat([o.data for o in objectives], objectives[0].pad_id), objectives[0].pad_id)
    return Interleaved(list(objectives))


def train(
    model: torch.nn.Module,
    params: List[torch.nn.Parameter],
    objective: Objective,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 1.0,
    weight_decay: float = 0.0,
    grad_clip: Optional[float] = 1.0,
    desc: str = "train",
    progress: bool = True,
) -> TrainResult:
    """Optimise `params` (AdamW) on `objective`; everything else is frozen by the caller.
    Raises TrainingDiverged on a NaN/inf loss, before the step is applied. Torch's random streams
    (dropout masks, where a model has dropout) are seeded from `seed` inside and restored after: the
    same config and seed train the same weights in any process, whatever ran in it before."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _train(model, params, objective, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                      warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio, weight_decay=weight_decay,
                      grad_clip=grad_clip, desc=desc, progress=progress)


def _train(model, params, objective, *, steps, batch_size, lr, seed, warmup_steps, min_lr_ratio, weight_decay,
           grad_clip, desc, progress) -> TrainResult:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, warmup_steps, min_lr_ratio))
    model.train()
    losses: List[float] = []
    t0 = time.perf_counter()
    bar = tqdm(objective.batches(batch_size, steps, seed), total=steps, desc=desc, disable=not progress, leave=False)
    try:
        for step, batch in enumerate(bar):
            loss = objective.loss(model, batch)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{desc}: loss is {loss.item()} at step {step}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if step % 50 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
    finally:
        bar.close()
        model.eval()
    return TrainResult(losses, time.perf_counter() - t0)
