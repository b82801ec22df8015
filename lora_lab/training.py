"""Next-token training on a list of sentences: the loop shared by every trained component."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import torch
from tqdm.auto import tqdm


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class Encoded:
    """Sentences as right-padded ids: each row is <bos> words <eos> <pad>..."""

    ids: torch.Tensor  # [n, L] int64
    lengths: torch.Tensor  # [n] real tokens per row

    def __len__(self) -> int:
        return self.ids.shape[0]


def encode_sentences(tokenizer, texts: Sequence[str]) -> Encoded:
    enc = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    rows = [r + [tokenizer.eos_token_id] for r in enc]
    if any(tokenizer.unk_token_id in r for r in rows):
        bad = next(t for t, r in zip(texts, rows) if tokenizer.unk_token_id in r)
        raise ValueError(f"sentence has words outside the tokenizer's vocabulary: {bad!r}")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return Encoded(ids, torch.tensor([len(r) for r in rows]))


def batches(data: Encoded, batch_size: int, steps: int, seed: int) -> Iterable[torch.Tensor]:
    """`steps` batches drawn epoch by epoch without replacement, trimmed to their longest row."""
    g = torch.Generator().manual_seed(seed)
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        while len(order) < batch_size:
            order = torch.cat([order, torch.randperm(len(data), generator=g)])
        idx, order = order[:batch_size], order[batch_size:]
        yield data.ids[idx, : int(data.lengths[idx].max())]


def lm_loss(model, ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mean next-token cross-entropy over real (non-pad) target tokens."""
    mask = ids != pad_id
    logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1]
    target = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
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


def train_lm(
    model: torch.nn.Module,
    params: List[torch.nn.Parameter],
    data: Encoded,
    *,
    pad_id: int,
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
    """Optimise `params` (AdamW) on next-token loss over `data`; everything else is frozen by
    the caller. Raises TrainingDiverged on a NaN/inf loss, before the step is applied."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, warmup_steps, min_lr_ratio))
    model.train()
    losses: List[float] = []
    t0 = time.perf_counter()
    bar = tqdm(batches(data, batch_size, steps, seed), total=steps, desc=desc, disable=not progress, leave=False)
    try:
        for step, ids in enumerate(bar):
            loss = lm_loss(model, ids, pad_id)
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
