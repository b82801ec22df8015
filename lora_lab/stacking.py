"""Stacking: for M seeded orderings of the N adapters, the nested prefixes k of the schedule,
composed by each merge method and evaluated. Prefix k+1 is built from prefix k (an accumulator
per merge method), so each step costs the same whatever k is. Each row also carries the
composition's inference latency (`latency.py`): as deployed, and for LoRA unmerged in PEFT.

Each (merge, ordering) curve is cached by content once complete: a killed job, rerun, recomputes
only the curves it had not finished.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence

import numpy as np
from tqdm.auto import tqdm

from .adapters import Adapter, get_family
from .adapters.lora import unmerged
from .cache import ArtifactCache, content_key, write_json_atomic
from .config import Config, check_schedule, numbers_config
from .latency import fixed_batch, forward_ms
from .eval.metrics import METRICS
from .merges import MergeParams, accumulator

# per-row {adapter id: its own gap, or {"gap": ..., extra float fields}}; goes to target_gaps.parquet, not results
TARGET_GAPS = "_target_gaps"
# `config` is the JSON of `numbers_config`: the report reads which settings differ between rows from it.
IDENTITY = ("run_id", "world", "model", "family", "space", "merge", "ordering", "k", "adapters", "seed", "config_hash",
            "config")


def orderings(n: int, m: int, seed: int) -> List[List[int]]:
    rng = np.random.default_rng([seed, 101])
    return [rng.permutation(n).tolist() for _ in range(m)]


def config_hash(numbers: Dict[str, Any]) -> str:
    """The hash of `numbers_config`: everything that determines the numbers (not progress bars,
    cache location or logging)."""
    return content_key("config", numbers)


def merge_params(c: Config) -> MergeParams:
    k = c.compose
    return MergeParams(lam=k.lam, density=k.density, drop=k.drop, rank=k.rank, seed=c.seed)


def _add(acc, ad: Adapter) -> None:
    """LoRA factors go in as low-rank terms where the method sums them (one fused product per
    module); everything else as dense deltas."""
    if ad.factors is not None and hasattr(acc, "add_lowrank"):
        acc.add_lowrank(ad.scaled_factors(), ad.id)
    else:
        acc.add(ad.scaled(), ad.id)


def curve(c: Config, base, task, adapters: Sequence[Adapter], order: Sequence[int], merge: str,
          ref, identity: Dict[str, Any], progress: bool = False) -> List[Dict[str, Any]]:
    """One ordering, one merge method: a row per k of the schedule (with each included
    adapter's own gap under `TARGET_GAPS`)."""
    family = get_family(c.family.name)
    model, tok = base.model, base.tokenizer
    ks = set(c.compose.ks(len(adapters)))
    acc = accumulator(merge, merge_params(c)) if family.space != "input" else None
    all_targets = [a.target for a in adapters]
    lat = c.latency
    timed = lat.enabled and identity["ordering"] < lat.orderings  # see LatencyConfig.orderings
    texts = fixed_batch(task.latency_texts(), lat.batch_size)
    nan = float("nan")

    def latency(rewrite=None, settle=False) -> float:
        return forward_ms(model, tok, texts, lat, rewrite, settle=settle) if timed else nan

    rows = []
    for k in tqdm(range(max(ks) + 1), desc=f"{merge} ordering {identity['ordering']}", disable=not progress, leave=False):
        if k > 0 and acc is not None:
            _add(acc, adapters[order[k - 1]])
        if k not in ks:
            continue
        included = [adapters[i].target for i in order[:k]]
        if k == 0:
            metrics, gaps = task.evaluate(model, tok, ref, [], all_targets)
            ms = latency(settle=True)
        elif family.space == "input":
            metrics, gaps = task.evaluate(model, tok, ref, included, all_targets, task.rewrite(included))
            ms = latency(task.rewriter(included, c.seed))
        else:
            with family.apply(model, acc.result()):
                metrics, gaps = task.evaluate(model, tok, ref, included, all_targets)
                ms = latency()
        # Removed again: the base must be back exactly, so this equals the base gap on these targets.
        metrics["removal_gap"] = task.removal_gap(model, tok, included, all_targets)
        # The bare base, timed right after: each timing's paired reference (see latency.py).
        base_ms = latency()
        lora = family.name == "lora"
        rows.append({**identity, "merge": merge, "k": k, "adapters": [adapters[i].id for i in order[:k]], **metrics,
                     "collapsed": bool(metrics["axis_mass"] < c.eval.collapse_mass),  # NaN (not measured): False
                     "latency_ms": ms, "latency_base_ms": base_ms, "latency_unmerged_ms": ms if k == 0 and lora else nan,
                     "latency_unmerged_base_ms": base_ms if k == 0 and lora else nan, TARGET_GAPS: gaps})
    if family.name == "lora" and timed and max(ks) > 0:
        # Unmerged PEFT: all the curve's adapters loaded once, the first k made active at each k; the
        # paired reference is the same wrapped model with every adapter switched off.
        with unmerged(model, [adapters[i] for i in order[: max(ks)]]) as activate:
            composed = [row for row in rows if row["k"] > 0]
            for i, row in enumerate(composed):
                pm = activate(row["k"])
                row["latency_unmerged_ms"] = forward_ms(pm, tok, texts, lat, settle=i == 0)
                with pm.disable_adapter():
                    row["latency_unmerged_base_ms"] = forward_ms(pm, tok, texts, lat)
    return rows


def stack(c: Config, base, task, adapters: Sequence[Adapter], ref, cache: ArtifactCache, on_curve=None,
          progress: bool = True) -> List[Dict[str, Any]]:
    """Every (merge, ordering) curve, each loaded from cache when it was finished before."""
    family = get_family(c.family.name)
    numbers = numbers_config(c)
    chash = config_hash(numbers)
    identity = {"run_id": f"{family.name}-s{c.seed}-{chash[:8]}", "world": c.world.name, "model": c.model.name,
                "family": family.name, "space": family.space, "seed": c.seed, "config_hash": chash,
                "config": json.dumps(numbers, sort_keys=True)}
    check_schedule(c.compose, len(adapters))
    orders = orderings(len(adapters), c.compose.orderings, c.seed)
    jobs = [(m, o) for m in c.merges() for o in range(len(orders))]
    rows: List[Dict[str, Any]] = []
    for merge, o in tqdm(jobs, desc=f"stack {family.name}", disable=not progress):
        ident = {**identity, "ordering": o}

        def build(d, merge=merge, o=o, ident=ident):
            part = curve(c, base, task, adapters, orders[o], merge, ref, ident, progress)
            write_json_atomic(d / "rows.json", part)
            return {"rows": len(part)}

        # the base's key: a model loaded by path is keyed by its weights, which the config does not name
        key = content_key("curve", {"config": chash, "base": base.key, "data": task.world.fingerprint, "merge": merge,
                                    "ordering": o, "rows": 4, "columns": [*METRICS, *task.extra_metrics]})
        entry = cache.get_or_build("curve", key, build)
        part = json.loads((entry.path / "rows.json").read_text())
        rows += part
        if on_curve is not None:
            on_curve(part)
    return rows
