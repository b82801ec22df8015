"""Inference cost (H6): wall-clock latency of one forward pass over a fixed batch.

The timed region is tokenisation plus the forward pass, on `latency.threads` CPU threads: the prompt pre-processor's cost is its text
rewriting, so that must be inside it. `warmup` untimed passes run first, then the median of
`repeats` timed passes is reported in milliseconds (the median, because CPU timings have a long
right tail). Every mode of a curve is timed in the same process on the same batch as its k = 0
baseline, so ratios within a run are meaningful even when absolute numbers vary between machines.

Modes (the results columns they fill):
- `latency_ms`: the composition as deployed by its family: LoRA merged into the weights, steering
  vectors added by hooks, prompts rewritten by the pre-processor; k = 0 is the bare base model.
- `latency_unmerged_ms` (LoRA only): the same k adapters active but unmerged in PEFT, each layer
  computing W0 x + Σ_i s_i B_i A_i x.

Each has a paired reference timed right after it: `latency_base_ms`, the bare base (the
composition removed), and `latency_unmerged_base_ms`, the PEFT-wrapped model with its adapters
switched off. Another job on the machine (the default sweep runs jobs in parallel) can slow a
timing window twofold; it slows the adjacent reference window alike, so the per-row ratio keeps
what the mode costs and drops what the machine was doing.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from typing import Callable, List, Optional, Sequence

import torch

from .eval.batch import encode, position_limit

LATENCY = ("latency_ms", "latency_base_ms", "latency_unmerged_ms", "latency_unmerged_base_ms")


def fixed_batch(texts: Sequence[str], n: int) -> List[str]:
    """The first `n` texts, cycled when there are fewer."""
    return list(itertools.islice(itertools.cycle(texts), n))


def median_ms(fn: Callable[[], object], repeats: int, warmup: int, settle_s: float = 0.0) -> float:
    """Median wall time of `fn` in ms, after `warmup` untimed calls and at least `settle_s`
    seconds of them. As in `timeit`, garbage collection is off while timing, so freeing an earlier
    model cannot land inside one mode's numbers (no explicit collect: that takes ~0.2 s per call)."""
    t_end = time.perf_counter() + settle_s
    for i in itertools.count():
        if i >= warmup and time.perf_counter() >= t_end:
            break
        fn()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        if was_enabled:
            gc.enable()
    return 1000.0 * statistics.median(times)


def forward_ms(model, tok, texts: Sequence[str], cfg, rewrite: Optional[Callable[[str], str]] = None,
               settle: bool = False) -> float:
    """Median latency (ms) of tokenising `texts` (rewritten first, if given) and one forward pass;
    `settle`: the first timing after other work (warm up for `cfg.settle_s` seconds too)."""
    limit = position_limit(model)

    @torch.inference_mode()
    def step():
        batch = [rewrite(t) for t in texts] if rewrite is not None else texts
        ids, mask = encode(tok, batch, limit)
        model(input_ids=ids.to(model.device), attention_mask=mask.long().to(model.device))
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return median_ms(step, cfg.repeats, cfg.warmup, cfg.settle_s if settle else 0.0)
    finally:
        torch.set_num_threads(threads)
