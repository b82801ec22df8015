"""Tasks: a world (data, probes, ground truth) plus how to train and measure adapters on it.

Every stage of the pipeline talks to a task through these methods, so a new world adds a task,
not a second pipeline:

    bias_targets(kind, n)                 -> targets, one adapter each (each has .id and .kind)
    objective(target, tokenizer, adapters_cfg, seed) -> training.Objective for that adapter
    target_gap(model, tok, target, rewrite=None)     -> float, 0 = target reached
    reference(model, tok)                 -> the base's numbers, computed once; what everything is compared with
    quality(model, tok, ref)              -> {name: float}, measured for each adapter alone
    evaluate(model, tok, ref, included, all_targets, rewrite=None) -> (metric columns, per-target gaps: {id: gap}
                                          or {id: {"gap": gap, more float fields}}, columns of target_gaps.parquet)
    removal_gap(model, tok, included, all_targets)   -> float, after the composition is removed
    base_report(model, tok)               -> dict for base_report.json
    rewrite(targets)                      -> prompt-family rewrite rules (tasks that support it)
    extra_metrics                         -> columns the task adds beside the shared metric columns (eval/metrics.py)

and `task.world.fingerprint` is the hash of the world's data (files, split parameters, splits; see
world/io.py), which every adapter and curve cache key includes.
"""

from __future__ import annotations

from typing import Optional


def build_world(world_cfg, seed: Optional[int] = None):
    """The world for a typed world config: its data read, checked and split. Imports no torch, so
    bad data stops a run before torch loads. `seed` is the run's, which the world follows unless
    its own `world.seed` is set. Unknown worlds list the valid ones."""
    from ..world import SyntheticWorld
    from ..world.crows import CrowsWorld
    from ..world.seat import SeatWorld

    worlds = {"synthetic": SyntheticWorld, "crows": CrowsWorld, "seat": SeatWorld}
    if world_cfg.name not in worlds:
        raise ValueError(f"world.name: unknown world {world_cfg.name!r}, valid: {sorted(worlds)}")
    return worlds[world_cfg.name](world_cfg, seed)


def build_task(world_cfg, seed: Optional[int] = None, world=None):
    """The task around `world` (built from the config when not given)."""
    from .crows import CrowsTask
    from .seat import SeatTask
    from .synthetic import SyntheticTask

    world = world if world is not None else build_world(world_cfg, seed)
    return {"synthetic": SyntheticTask, "crows": CrowsTask, "seat": SeatTask}[world_cfg.name](world)
