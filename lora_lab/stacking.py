"""Stacking: for M seeded orderings of the N adapters, the nested prefixes k of the schedule,
composed by each merge method and evaluated. Prefix k+1 is built from prefix k (an accumulator
per merge method), so each step costs the same whatever k is. Each row also carries the
composition's inference latency (`latency.py`) in every inference mode its family declares, and,
at the k `eval.after_use` names, removal after use (`after_use`): the composition applied, the
model trained further on general text, the composition removed, the bias and quality measured.

Each (merge, ordering) curve is cached by content once complete: a killed job, rerun, recomputes
only the curves it had not finished.
"""

from __future__ import annotations

import functools
import json
import shutil
import zlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import catalog
from .adapters import Adapter
from .cache import ArtifactCache, content_key, write_json_atomic
from .config import Config, check_schedule, numbers_config
from .adapters.joint import joint_target
from .families.joint import joint_ks
from .latency import fixed_batch, flops, forward_ms
from .samples import write_png
from .schema import AFTER_USE, AFTER_USE_GAP, COLLAPSED, REMOVED_AFTER_USE_GAP, REMOVED_AFTER_USE_QUALITY, SHIFT, TRAINED, sample_file

# per-row {adapter id: its own gap, or {"gap": ..., extra float fields}}; goes to target_gaps.parquet, not results
TARGET_GAPS = "_target_gaps"
# per-row sample images of an image world (`samples.py`): written as PNG beside the curve, not into rows.json
SAMPLES = "_samples"


def orderings(n: int, m: int, seed: int) -> List[List[int]]:
    rng = np.random.default_rng([seed, 101])
    return [rng.permutation(n).tolist() for _ in range(m)]


def config_hash(numbers: Dict[str, Any]) -> str:
    """The hash of `numbers_config`: everything that determines the numbers (not progress bars,
    cache location or logging)."""
    return content_key("config", numbers)


def run_identity(c: Config) -> Dict[str, Any]:
    """The identity columns every row of a job carries (results and frontier tables alike)."""
    family = catalog.family(c.family.name)
    numbers = numbers_config(c)
    chash = config_hash(numbers)
    return {"run_id": f"{family.name}-s{c.seed}-{chash[:8]}", "world": c.world.name, "model": c.model.name,
            "family": family.name, "space": family.space, "seed": c.seed, "config_hash": chash,
            "config": json.dumps(numbers, sort_keys=True)}


def _add(acc, ad: Adapter, lowrank: bool) -> None:
    """LoRA factors go in as low-rank terms where the method sums them (one fused product per
    module); everything else as dense deltas."""
    if lowrank:
        acc.add_lowrank(ad.scaled_factors(), ad.id)
    else:
        acc.add(ad.scaled(), ad.id)


def checked(metrics: Dict[str, float], declared: Sequence[str], world: str) -> Dict[str, float]:
    """A task's metric columns, exactly those its world declares (the contract of `Task.evaluate`)."""
    missing = [c for c in declared if c not in metrics]
    extra = [c for c in metrics if c not in declared]
    if missing or extra:
        raise ValueError(f"world {world}: evaluate returned {sorted(metrics)}; declared {list(declared)} "
                         f"(missing {missing}, undeclared {extra})")
    return metrics


def evaluate_base(task, model, tok, ref, all_targets):
    """The k = 0 row's metrics (the bare base's, `removal_gap` included) and its gaps (none)."""
    metrics, gaps = task.evaluate(model, tok, ref, [], all_targets)
    return {**metrics, "removal_gap": task.removal_gap(model, tok, [], all_targets)}, gaps


def leave_one_out(family, handle, task, model, tok, acc, stacked: Sequence[Adapter],
                  gaps: Dict[str, Any]) -> Dict[str, Any]:
    """`gaps` (each stacked adapter's own gap in the k-stack) with, per adapter i, `loo_gap`: target
    i's gap once i is left out of the stack (the other k - 1 composed by `acc.without`, the same
    method at the k-stack's parameters), and `loo_others`: the mean gap of the other stacked targets
    there. Each composition is applied and removed as the stack is: the base comes back exactly."""
    targets = [ad.target for ad in stacked]
    out = {}
    for ad in stacked:
        with family.apply(handle, acc.without(ad.scaled(), ad.id)):
            g = task.target_gaps(model, tok, targets)
        own = gaps[ad.id]
        fields = dict(own) if isinstance(own, dict) else {"gap": own}
        others = [g[t.id] for t in targets if t.id != ad.id]
        out[ad.id] = {**fields, "loo_gap": g[ad.id], "loo_others": float(np.mean(others))}
    return out


def after_use_seed(seed: int, k: int) -> int:
    """The seed of the after-use training at k: its batch order and any randomness in the model
    (dropout). Fixed by the run's seed and k alone."""
    return zlib.crc32(f"{seed}:after_use:{k}".encode())


def after_use(c: Config, family, base, task, ref, tensors, included, all_targets, k: int, objective,
              quality) -> Dict[str, float]:
    """Removal after use at one k: the composition `tensors` applied (`family.apply`; None: the bare
    base, the control), every parameter of the base model trained further on `objective` (the
    world's general text) for `eval.after_use.steps` steps with it applied, measured; then the
    composition removed as deployed and measured again; then the pristine base restored bit-exactly.

    Removal after use keeps the training: the change `apply` made to the parameters (for merged
    LoRA, each edited weight's delta as it was added, W0 + Δ − W0) is subtracted from the trained
    parameters, and whatever `apply` put outside them (steering hooks) is taken off by its exit.
    `quality` is the world's primary quality metric, read from `task.evaluate` as a loss."""
    import torch

    from .training import train

    au, module, model, tok = c.eval.after_use, base.handle.module, base.model, base.tokenizer
    params = dict(module.named_parameters())
    pristine = {n: p.detach().clone() for n, p in params.items()}
    grad = {n: p.requires_grad for n, p in params.items()}
    seed = after_use_seed(c.seed, k)
    try:
        with family.apply(base.handle, tensors) if tensors is not None else nullcontext():
            applied = {n: p.detach() - pristine[n] for n, p in params.items() if not torch.equal(p, pristine[n])}
            for p in params.values():
                p.requires_grad_(True)
            # (`train` seeds torch's streams from `seed` and restores them: the run's own stay as they were)
            train(module, list(params.values()), objective, steps=au.steps, batch_size=au.batch_size, lr=au.lr,
                  seed=seed, desc=f"after use k={k}", progress=False)
            for n, p in params.items():
                p.requires_grad_(grad[n])
            used = task.removal_gap(model, tok, included, all_targets)  # the included targets' gap, as the model is now
            trained = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():  # apply's exit took off its hooks and put back W0 where it edited: keep the training
            for n, p in params.items():
                p.copy_(trained[n] - applied[n] if n in applied else trained[n])
        removed, _ = task.evaluate(model, tok, ref, included, all_targets)
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(pristine[n])
                p.requires_grad_(grad[n])
    return {AFTER_USE_GAP: used, REMOVED_AFTER_USE_GAP: removed["bias_target_gap"],
            REMOVED_AFTER_USE_QUALITY: quality.loss_sign * removed[quality.column]}


def curve(c: Config, base, task, adapters: Sequence[Adapter], order: Sequence[int], merge: str,
          ref, identity: Dict[str, Any], progress: bool = False,
          base_states: Optional[Callable[[], Any]] = None,
          joints: Optional[Dict[str, Adapter]] = None,
          base_eval: Optional[Callable[[], Any]] = None) -> List[Dict[str, Any]]:
    """One ordering, one merge method: a row per k of the schedule (with each included
    adapter's own gap under `TARGET_GAPS`). `base_states()`: the base's final hidden states on the
    task's held-out text, computed once per job (`stack` shares them between its curves), and
    `base_eval()` the k = 0 row's metrics (the bare base's, `removal_gap` included) and gaps, likewise.

    A joint family (`joints`: {joint target id: adapter}, `adapters/joint.py`): a row per k of its
    joint schedule, the one adapter trained for order[:k] applied alone (nothing merged; the row
    names `merge` so it pairs with the stack's rows)."""
    family, world = catalog.family(c.family.name), catalog.world(c.world.name)
    handle, model, tok = base.handle, base.model, base.tokenizer
    ks = set(c.compose.ks(len(adapters)))
    if joints is not None:
        ks = set(joint_ks(c.family, sorted(ks)))
    method = catalog.merge_method(merge)
    acc = method.accumulator(c.compose.params(merge, c.seed)) if family.space != "input" and joints is None else None
    lowrank = family.factored and method.lowrank
    all_targets = [a.target for a in adapters]
    declared = [m.column for m in world.metrics]
    lat = c.latency
    timed = lat.enabled and identity["ordering"] < lat.orderings  # see LatencyConfig.orderings
    # leave-one-out (see EvalConfig): of a stack; a joint family's one adapter has nothing to leave out
    loo = identity["ordering"] < c.eval.leave_one_out_orderings and family.space != "input" and joints is None
    inputs = fixed_batch(task.latency_inputs(), lat.batch_size)
    deployed, others = family.modes[0], family.modes[1:]
    nan = float("nan")
    heldout = task.heldout_inputs()
    # the base's final hidden states: what the activation shift is relative to
    h0 = base_states() if base_states is not None else handle.hidden(heldout)
    # removal after use (`after_use`): at these k of the first `eval.after_use.orderings` orderings
    au = c.eval.after_use
    # (a stack's; a joint family is the reference for the stack's quality and bias, not measured after use)
    # (nor a composition at sampling time: it has no weights to train through)
    used_at = (set(au.ks(sorted(ks))) if family.space in TRAINED and identity["ordering"] < au.orderings and joints is None
               and not method.sampler else set())
    general = task.general_objective(tok, c.seed) if used_at else None
    quality = next(m for m in world.metrics if m.primary and m.role == "quality")
    # "intact": k = 0, then the largest k before the first collapsed row, measured once that row (or
    # the curve's end) shows which k it is. `latest`: the candidate so far (its row, a copy of its
    # composition, its targets); None before the first; False once measured or collapsed from k = 1.
    intact = au.at == "intact" and general is not None
    latest: Any = None

    def measure(k_row, tensors, included_row) -> Dict[str, float]:
        return after_use(c, family, base, task, ref, tensors, included_row, all_targets, k_row, general, quality)

    def shift() -> float:
        """‖h - h0‖ / ‖h0‖ over every held-out position, with the composition as it is applied now."""
        return float((handle.hidden(heldout) - h0).norm() / h0.norm())

    def latency(rewrite=None, module=None, settle=False) -> float:
        return forward_ms(handle.latency_step(inputs, rewrite, module), lat, settle=settle) if timed else nan

    tokens = handle.tokens(inputs) if timed else 1
    # the prompts' own tokens (a handle whose `tokens` counts pixels counts them with `prompt_tokens`)
    prompt_tokens = getattr(handle, "prompt_tokens", handle.tokens)
    typed = prompt_tokens(inputs) if deployed.tokens else 0  # tokens of the latency inputs as typed

    def added(rewrite) -> float:
        """Prompt tokens the rewrite adds per latency input: tokens rewritten minus as typed, ÷ inputs
        (deterministic and cheap, so every row has it, timed or not)."""
        return (prompt_tokens([rewrite(t) for t in inputs]) - typed) / len(inputs)

    def per_token(rewrite=None, module=None) -> float:
        """FLOPs per token of the inputs as typed (before any rewrite): see latency.py."""
        return flops(handle.latency_step(inputs, rewrite, module)) / tokens if timed else nan

    # sample grids of an image world (`samples.py`): every k of the first ordering
    pictures = getattr(task, "samples", None) if identity["ordering"] == 0 else None
    rows, joint_at = [], {}
    for k in tqdm(range(max(ks) + 1), desc=f"{merge} ordering {identity['ordering']}", disable=not progress, leave=False):
        if k > 0 and acc is not None:
            _add(acc, adapters[order[k - 1]], lowrank)
        if k not in ks:
            continue
        included = [adapters[i].target for i in order[:k]]
        more = 0.0  # prompt tokens added per input: none, but by the pre-processor at k >= 1
        joint = joint_at[k] = joints[joint_target(included).id] if joints is not None and k > 0 else None
        grid = None
        if k == 0:
            metrics, gaps = (base_eval or functools.partial(evaluate_base, task, model, tok, ref, all_targets))()
            metrics, gaps = dict(metrics), dict(gaps)  # shared between curves: this row's own copies
            moved = shift()  # 0: the same model and inputs (a check that h0 is the base's)
            ms, count = latency(settle=True), per_token()
            grid = pictures(model, tok) if pictures else None
        elif family.space == "input":
            rule = family.rule(task, c.family, included)
            metrics, gaps = task.evaluate(model, tok, ref, included, all_targets, rule)
            moved = nan  # an input-space family leaves the model as it is
            grid = pictures(model, tok, rule) if pictures else None

            def rewriter():  # each use seeded alike: the first timed pass's draws
                return family.deployed(task, c.family, included, c.seed)

            ms, count = latency(rewriter()), per_token(rewriter())
            more = added(rewriter()) if deployed.tokens else nan
        else:
            composed = joint.scaled() if joint is not None else acc.result()
            with family.apply(handle, composed):
                metrics, gaps = task.evaluate(model, tok, ref, included, all_targets)
                moved = shift()
                ms, count = latency(), per_token()
                grid = pictures(model, tok) if pictures else None
            if loo and k >= 2 and (k & (k - 1) == 0 or k == max(ks)):  # k = 2, 4, 8, ... and the largest
                gaps = leave_one_out(family, handle, task, model, tok, acc, [adapters[i] for i in order[:k]], gaps)
        # Removed again: the base must be back exactly, so this equals the base gap on these targets.
        if k > 0:
            metrics["removal_gap"] = task.removal_gap(model, tok, included, all_targets)
        metrics = checked(metrics, declared, world.name)
        # The bare base, timed right after: each timing's paired reference (see latency.py).
        base_ms = latency()
        # NaN (not measured) compares False: not collapsed
        collapsed = bool(world.collapse is not None and metrics[world.collapse] < c.eval.collapse_mass)
        metrics.update(dict.fromkeys(AFTER_USE, nan))
        if general is not None and (k == 0 or not intact) and k in used_at:
            metrics.update(measure(k, composed if k > 0 else None, included))
        row = {**identity, "merge": merge, "k": k, "adapters": [adapters[i].id for i in order[:k]], **metrics,
               SHIFT: moved, COLLAPSED: collapsed, deployed.column: ms, deployed.reference: base_ms, TARGET_GAPS: gaps}
        if grid is not None:
            row[SAMPLES] = grid
        if deployed.flops:
            row[deployed.flops] = count
        if deployed.tokens:
            row[deployed.tokens] = more
        for mode in others:  # at k = 0 every mode is the bare base; the family times the others below
            row[mode.column], row[mode.reference] = (ms, base_ms) if k == 0 else (nan, nan)
            if mode.flops:
                row[mode.flops] = count if k == 0 else nan
            if mode.tokens:
                row[mode.tokens] = 0.0 if k == 0 else nan
        rows.append(row)
        if intact and k > 0 and latest is not False:
            if not collapsed:  # the composition is rebuilt by the accumulator only forwards: keep a copy
                latest = (row, {n: t.detach().clone() for n, t in composed.items()}, included)
            else:
                if latest is not None:
                    latest[0].update(measure(latest[0]["k"], *latest[1:]))
                latest = False  # measured (or collapsed from the first k): nothing more to track
    if intact and latest:
        latest[0].update(measure(latest[0]["k"], *latest[1:]))
    if others and timed and joints is not None:  # one adapter at every k: each k timed as that one alone
        first = iter([True])
        for row in rows:
            if row["k"] > 0:
                row.update(family.time_modes(handle, [joint_at[row["k"]]], [1],
                                             lambda module: latency(module=module, settle=next(first, False)),
                                             lambda module: per_token(module=module)).get(1, {}))
    elif others and timed and max(ks) > 0:
        first = iter([True])
        times = family.time_modes(handle, [adapters[i] for i in order[: max(ks)]], sorted(ks),
                                  lambda module: latency(module=module, settle=next(first, False)),
                                  lambda module: per_token(module=module))
        for row in rows:
            row.update(times.get(row["k"], {}))
    return rows


def stack(c: Config, base, task, adapters: Sequence[Adapter], ref, cache: ArtifactCache, on_curve=None,
          progress: bool = True, joints: Optional[Dict[str, Adapter]] = None,
          samples_dir: Optional[Path] = None) -> List[Dict[str, Any]]:
    """Every (merge, ordering) curve, each loaded from cache when it was finished before. An image
    world's sample grids (`samples.py`) are copied into `samples_dir`.

    A joint family (`joints`, `adapters/joint.py`): a curve per ordering of its first
    `family.orderings`, measured once and written under every merge method of the config (nothing
    is merged, so each merge's rows are the same measurement, there to pair with its stack)."""
    world = catalog.world(c.world.name)
    identity = run_identity(c)
    family, chash = catalog.family(identity["family"]), identity["config_hash"]
    check_schedule(c.compose, len(adapters), c.eval.after_use)
    merges = c.merges()
    if joints is None:
        orders = orderings(len(adapters), c.compose.orderings, c.seed)
        jobs = [(m, o) for m in merges for o in range(len(orders))]
    else:  # the same first orderings as the stack's (each drawn in turn from one stream)
        orders = orderings(len(adapters), c.family.orderings, c.seed)
        jobs = [(merges[0], o) for o in range(len(orders))]
    rows: List[Dict[str, Any]] = []

    # the bare base's k = 0 row, the same in every curve of the job: measured once
    base_eval = functools.cache(functools.partial(evaluate_base, task, base.model, base.tokenizer, ref,
                                                  [a.target for a in adapters]))

    @functools.cache
    def base_states():
        """Computed on the first curve that is not in the cache, then shared."""
        return base.handle.hidden(task.heldout_inputs())

    # What a curve's numbers depend on. A family that merges nothing (the pre-processor applies its
    # rules, a joint family its one adapter) does not depend on the merge methods' parameters
    # (`compose.lam`, ...): jobs that differ in them alone share its curves, each job's rows then
    # carrying that job's own identity (its config and setting).
    if family.space == "input" or joints is not None:
        unmerged = {f"compose.{p.name}" for p in catalog.merge_params()}
        curve_config = config_hash({k: v for k, v in json.loads(identity["config"]).items() if k not in unmerged})
    else:
        curve_config = chash

    for merge, o in tqdm(jobs, desc=f"stack {family.name}", disable=not progress):
        ident = {**identity, "ordering": o}

        def build(d, merge=merge, o=o, ident=ident):
            from .interventions import pristine

            with pristine(base.handle.module):  # one copy of the weights a curve edits, not one per composition
                part = curve(c, base, task, adapters, orders[o], merge, ref, ident, progress, base_states, joints, base_eval)
            for r in part:
                if SAMPLES in r:
                    write_png(d / f"samples_k{r['k']}.png", r.pop(SAMPLES))
            write_json_atomic(d / "rows.json", part)
            return {"rows": len(part)}

        # the base's key: a model loaded by path is keyed by its weights, which the config does not name
        key = content_key("curve", {"config": curve_config, "base": base.key, "data": task.world.fingerprint, "merge": merge,
                                    "ordering": o, "rows": 7, "columns": [m.column for m in world.metrics]})
        entry = cache.get_or_build("curve", key, build)
        part = [{**r, **ident} for r in json.loads((entry.path / "rows.json").read_text())]
        if joints is not None:
            part = [{**r, "merge": m} for m in merges for r in part]
        if samples_dir is not None:
            for png in sorted(entry.path.glob("samples_k*.png")):
                samples_dir.mkdir(parents=True, exist_ok=True)
                for m in (merges if joints is not None else [merge]):
                    shutil.copyfile(png, samples_dir / sample_file(family.name, c.seed, m, int(png.stem[len("samples_k"):])))
        rows += part
        if on_curve is not None:
            on_curve(part)
    return rows
