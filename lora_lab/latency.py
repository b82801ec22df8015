"""Inference cost (H6): wall-clock latency of one forward pass over a fixed batch.

The timed region is the model handle's `latency_step` (encoding the inputs plus the forward
pass), on `latency.threads` CPU threads: the prompt pre-processor's cost is its text rewriting,
so that must be inside it. `warmup` untimed passes run first, then the median of
`repeats` timed passes is reported in milliseconds (the median, because CPU timings have a long
right tail). Every mode of a curve is timed in the same process on the same batch as its k = 0
baseline, so ratios within a run are meaningful even when absolute numbers vary between machines.

Modes are declared by each family (`Family.modes`, the results columns they fill): the first is
the composition as deployed (`latency_ms`: LoRA merged into the weights, steering vectors added by
hooks, prompts rewritten by the pre-processor; k = 0 is the bare base model); LoRA also declares
`unmerged` (`latency_unmerged_ms`: the same k adapters active but unmerged in PEFT, each layer
computing W0 x + Σ_i s_i B_i A_i x), timed by the family itself (`Family.time_modes`).

Beside each timing, the mode's forward FLOPs per input token (`Mode.flops`): the matrix-product
FLOPs torch's `FlopCounterMode` counts in one step, divided by the tokens of the inputs before
any rewriting (so a longer rewritten prompt shows as more FLOPs per token of what the user typed).
Element-wise work (a steering vector's addition, activations, norms) is not counted, nor, on CPU,
attention's score products (torch counts no FLOPs for its CPU attention kernel): the count is the
layers' weight products, the part the modes differ in. A deterministic count, unlike time.

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
from typing import Callable, List, Sequence

import torch


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


def flops(step: Callable[[], object]) -> float:
    """The FLOPs torch's FlopCounterMode counts in one call of `step` (see the module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def forward_ms(step: Callable[[], object], cfg, settle: bool = False) -> float:
    """Median latency (ms) of one inference step (`ModelHandle.latency_step`); `settle`: the first
    timing after other work (warm up for `cfg.settle_s` seconds too)."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return median_ms(step, cfg.repeats, cfg.warmup, cfg.settle_s if settle else 0.0)
    finally:
        torch.set_num_threads(threads)
