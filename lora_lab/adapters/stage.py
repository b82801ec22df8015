"""The adapter stage: one adapter per bias target, trained (or loaded from cache), measured alone.

Every family sees the same targets, text, steps and batch; only the parameterisation (and its
learning rate) differs. Each adapter is cached by content, like the base.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import peft
from tqdm.auto import tqdm

from .. import catalog
from ..cache import MANIFEST, ArtifactCache, Entry, build_lock, content_key, write_json_atomic
from ..config import numbers_config
from ..contracts import TRAINED_DIR
from ..schema import Metric
from . import Adapter
from .calibrate import Calibration, calibrate

log = logging.getLogger("lora_lab")
NAN = float("nan")


# Shared by every family: next-token cross-entropy on the completion (the attribute value and
# <eos>) of target pairs, and on every token of retain text.
OBJECTIVE = "prompt-masked next-token cross-entropy"


def adapter_seed(seed: int, target) -> int:
    """Per-adapter seed: independent of which other adapters exist or their order (its init and
    batch order; trained together with others, only float summation order depends on them)."""
    return zlib.crc32(f"{seed}:{target.id}".encode())


def adapter_key_payload(cfg, base_key: str, target, data: str, fcfg=None) -> Dict[str, Any]:
    """Everything an adapter depends on; `data` is the world's fingerprint (worlds/io.py). `fcfg`:
    the family config that trains it, when not `cfg.family` (a control or a joint family trains its
    real one's)."""
    fcfg = cfg.family if fcfg is None else fcfg
    a, family = cfg.adapters, catalog.family(fcfg.name)
    return {
        "base": base_key,
        "data": data,
        # the family's fields but its step count, which is the budget under "train": a family's own
        # `steps` and the shared `adapters.steps` that train alike key alike (keys from before the field stay)
        "family": {k: v for k, v in dataclasses.asdict(fcfg).items() if k != "steps"},
        # how the adapter is stored, once that changed from a family's first format (format-1 keys stay as they were)
        **({"format": family.format} if family.format != 1 else {}),
        "corpus": {"samples": a.samples, "retain_fraction": a.retain_fraction},
        "train": {"steps": a.steps_for(fcfg), "batch_size": a.batch_size, "objective": OBJECTIVE},
        "target": dataclasses.asdict(target),
        "seed": cfg.seed,
        "peft": peft.__version__,
    }


def train_missing_together(cfg, base, task, cache: ArtifactCache, targets, progress: bool = True) -> Dict[str, Entry]:
    """The adapters of `targets` not yet in the cache, trained `adapters.together` at a time in one
    batched pass each (`Family.train_many`, `batched.py`) and stored each in its own cache entry, as
    training them one by one would store them: {target id: entry built}. A control's adapters are
    its real family's (trained in that family's entries). Nothing when the family trains one at a
    time (no `train_many`, `adapters.together=1`) or the adapters cannot share a pass
    (`batched.batchable`): `build_adapters` then trains each as it goes."""
    from ..batched import batchable

    family = catalog.family(cfg.family.name)
    real = catalog.control_of(family)
    fam, fcfg = (catalog.family(real), catalog.real_config(cfg.family, real)) if real else (family, cfg.family)
    kind, together = f"adapter_{fam.name}", cfg.adapters.together
    if together < 2 or not hasattr(fam, "train_many"):
        return {}
    missing = []
    for t in targets:
        payload = adapter_key_payload(cfg, base.key, t, task.world.fingerprint, fcfg)
        key = content_key("adapter", payload)
        if cache.load(kind, key) is None:
            missing.append((t, key, payload))
    if len(missing) < 2:
        return {}
    seeds = [adapter_seed(cfg.seed, t) for t, _, _ in missing]
    first = task.objective(missing[0][0], base.tokenizer, cfg.adapters, seeds[0])
    if not batchable(base.handle.module, [first]):
        return {}  # (decided on the first, before building the others: a world's objectives are all of one kind)
    objectives = [first] + [task.objective(t, base.tokenizer, cfg.adapters, s) for (t, _, _), s in zip(missing[1:], seeds[1:])]
    if not batchable(base.handle.module, objectives):
        return {}
    # Jobs that need the same adapters (lora and null_lora on one seed, side by side) train them
    # once: the first holds the lock on this set, the others then find them in the cache.
    with build_lock(cache.root / ".locks" / f"together-{kind}-{content_key('together', [k for _, k, _ in missing])}.lock",
                    f"{len(missing)} {fam.name} adapters"):
        still = [i for i, (_, key, _) in enumerate(missing) if cache.load(kind, key) is None]
        missing, seeds, objectives = ([xs[i] for i in still] for xs in (missing, seeds, objectives))
        return _train_chunks(fam, fcfg, kind, cfg, base, cache, missing, seeds, objectives, progress)


def _train_chunks(fam, fcfg, kind, cfg, base, cache, missing, seeds, objectives, progress) -> Dict[str, Entry]:
    together = cfg.adapters.together
    built: Dict[str, Entry] = {}
    if len(missing) < 2:
        return built  # (built meanwhile by another job; one left is trained as the stage goes)
    for lo in range(0, len(missing), together):
        chunk = slice(lo, lo + together)
        with tempfile.TemporaryDirectory(dir=cache.root, prefix=".together-") as tmp:
            dirs = [Path(tmp) / str(i) for i in range(len(missing[chunk]))]
            for d in dirs:
                d.mkdir()
            desc = f"{fam.name} adapters {lo + 1}-{lo + len(dirs)} of {len(missing)}, together"
            metas = fam.train_many(base, fcfg, objectives[chunk], cfg.adapters, seeds[chunk], dirs, progress, desc,
                                   names=[t.id for t, _, _ in missing[chunk]])
            for (t, key, payload), d, meta in zip(missing[chunk], dirs, metas):
                def stored(dst, d=d, meta=meta, t=t):
                    for f in d.iterdir():
                        shutil.move(str(f), dst / f.name)
                    return {**meta, "target": t.id}

                built[t.id] = cache.get_or_build(kind, key, stored, describe=payload)
    return built


def build_adapters(cfg, base, task, cache: ArtifactCache, progress: bool = True) -> List[Adapter]:
    family = catalog.family(cfg.family.name)
    targets = task.bias_targets(cfg.adapters.kind.value, cfg.adapters.n)
    if not family.trainable or catalog.joint_of(family):  # a joint family trains per k (adapters/joint.py)
        return [Adapter(t, family.name, {}, {"n_params": 0, "cache_hit": None}) for t in targets]
    real = catalog.control_of(family)
    cache.root.mkdir(parents=True, exist_ok=True)
    built = train_missing_together(cfg, base, task, cache, targets, progress)
    out = []
    bar = tqdm(targets, desc=f"{family.name} adapters", disable=not progress)
    for t in bar:
        seed = adapter_seed(cfg.seed, t)
        payload = adapter_key_payload(cfg, base.key, t, task.world.fingerprint)

        def trained(d, t=t, seed=seed, fam=family, fcfg=cfg.family):
            objective = task.objective(t, base.tokenizer, cfg.adapters, seed)
            meta = fam.train(base, fcfg, objective, cfg.adapters, seed, d, progress, desc=t.id)
            return {**meta, "target": t.id}

        def derived(d, t=t, seed=seed):
            """A control stands in for its real family's adapter: that one comes from (or goes to) the
            real family's own cache entry, trained once for both; the control derives its random one."""
            rfam, rcfg = catalog.family(real), catalog.real_config(cfg.family, real)
            rpayload = adapter_key_payload(cfg, base.key, t, task.world.fingerprint, rcfg)
            entry = cache.get_or_build(f"adapter_{rfam.name}", content_key("adapter", rpayload),
                                       functools.partial(trained, t=t, seed=seed, fam=rfam, fcfg=rcfg), describe=rpayload)
            shutil.copytree(entry.path, d / TRAINED_DIR, ignore=shutil.ignore_patterns(MANIFEST))
            family.derive(d, seed)
            return dict(entry.meta)

        entry = built[t.id] if real is None and t.id in built else cache.get_or_build(
            f"adapter_{family.name}", content_key("adapter", payload), trained if real is None else derived, describe=payload)
        tensors, factors = family.load(entry.path)  # factors: LoRA's B, A (None for other families)
        tensors, factors = on_device(tensors, factors, base.handle.device)
        out.append(Adapter(t, family.name, tensors, {**entry.meta, "cache_hit": entry.hit}, entry.path, factors=factors))
    return out


def on_device(tensors, factors, device):
    """An adapter's tensors where the model is, so merges run there: its factors, when it has them
    (its dense deltas are then computed from them when read, on that device), else its tensors."""
    if factors is not None:
        from ..merges.lowrank import DenseView

        factors = {n: (left.to(device), right.to(device)) for n, (left, right) in factors.items()}
        return DenseView(factors), factors
    return {k: v.to(device) for k, v in tensors.items()}, None


def measure_single(adapters: List[Adapter], cfg, base, task, ref) -> List[Dict[str, Any]]:
    """Each adapter alone (k = 1): gap reduction uncalibrated and calibrated, the task's quality.
    With `adapters.calibrate`, sets each adapter's scale to its calibrated value.

    A control family's adapter (a random one of its trained counterpart's size, `Family.control_of`)
    is calibrated on that trained counterpart, kept in its directory: it is stacked at the strength
    the real adapter is, and `stacked_gap` is its own gap there."""
    from ..interventions import pristine

    with pristine(base.handle.module):  # one copy of the weights the adapters edit, not one per edit
        return _measure_single(adapters, cfg, base, task, ref)


def _measure_single(adapters: List[Adapter], cfg, base, task, ref) -> List[Dict[str, Any]]:
    family = catalog.family(cfg.family.name)
    real = catalog.control_of(family)
    model, tok = base.model, base.tokenizer
    rows = []
    for ad in adapters:
        t = ad.target
        base_gap = task.target_gap(model, tok, t)
        trained = (on_device(*catalog.family(real).load(ad.path / TRAINED_DIR), base.handle.device)[0]
                   if real is not None else ad.tensors)

        def gap_at(scale: float, tensors=ad.tensors) -> float:
            if family.space == "input":
                return task.target_gap(model, tok, t, family.rule(task, cfg.family, [t]))
            with family.apply(base.handle, {k: v * scale for k, v in tensors.items()}):
                return task.target_gap(model, tok, t)

        gap = gap_at(1.0)
        reducible = base_gap > 0
        if not reducible:
            # e.g. a SEAT test whose base |d| is within its noise floor: there is no gap to cut
            log.warning("%s: base gap is 0, nothing to reduce: reduction NaN, calibration unreachable, "
                        "stacked at its trained strength", t.id)
        row = {
            "adapter": ad.id, "family": family.name, "kind": t.kind, "n_params": ad.meta.get("n_params", 0),
            "train_seconds": ad.meta.get("train_seconds", 0.0), "cache_hit": ad.meta.get("cache_hit"),
            "base_gap": base_gap, "gap": gap, "reduction": 1 - gap / base_gap if reducible else NAN,
            "stacked_gap": gap,  # alone, at the strength it is stacked with
        }
        if family.trainable:
            if reducible:
                cal = calibrate(lambda s: 1 - gap_at(s, trained) / base_gap, cfg.adapters.calibration_target,
                                cfg.adapters.max_scale)
            else:
                cal = Calibration(ad.scale, NAN, reachable=False)
            row.update(cal_scale=cal.scale, cal_reduction=cal.reduction, cal_reachable=cal.reachable)
            if cfg.adapters.calibrate and reducible:
                ad.scale = cal.scale
                row["stacked_gap"] = base_gap * (1 - cal.reduction) if real is None else gap_at(cal.scale)
        with family.apply(base.handle, ad.scaled()):
            row.update(task.quality(model, tok, ref))
        rows.append(row)
    return rows


def frontier(adapters: List[Adapter], rows: List[Dict[str, Any]], cfg, base, task, ref) -> List[Dict[str, Any]]:
    """The reduction–quality frontier at k = 1: each of the first `eval.frontier_adapters` adapters
    alone at every multiple `eval.frontier_scales` of its trained strength, and at its calibrated
    strength (`calibrated` True; when calibration reached its goal), as `measure_single` applies it:
    gap reduction from `task.target_gap`, and every metric `task.evaluate` returns with the adapter
    as the one included target. `rows` are `measure_single`'s (their `cal_scale`). Trained families
    only (a prompt rewrite has no strength to scale): [] for the others."""
    family = catalog.family(cfg.family.name)
    n = cfg.eval.frontier_adapters
    if not family.trainable or n == 0:
        return []
    model, tok = base.model, base.tokenizer
    all_targets = [a.target for a in adapters]
    out = []
    for ad, row in zip(adapters[:n], rows[:n]):
        t, base_gap = ad.target, row["base_gap"]
        points = [(float(s), False) for s in cfg.eval.frontier_scales]
        if row.get("cal_reachable"):
            points.append((float(row["cal_scale"]), True))
        for scale, calibrated in points:
            with family.apply(base.handle, {k: v * scale for k, v in ad.tensors.items()}):
                gap = task.target_gap(model, tok, t)
                metrics, _ = task.evaluate(model, tok, ref, [t], all_targets)
            out.append({"adapter": ad.id, "scale": scale, "calibrated": calibrated, "base_gap": base_gap, "gap": gap,
                        "reduction": 1 - gap / base_gap if base_gap > 0 else NAN, **metrics})
    return out


def measured(adapters: List[Adapter], cfg, base, task, ref, cache: ArtifactCache) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """`measure_single`'s rows and `frontier`'s points, cached by content like a curve: what they
    depend on is the adapters (their cache entries), the base, the world's data and the job's
    numbers but the composition, timing and stack-evaluation settings (`compose.*`, `latency.*`,
    `eval.*`), plus the frontier's own settings. A warm run loads them and sets each adapter's
    calibrated scale from its row."""
    numbers = {k: v for k, v in numbers_config(cfg).items() if not k.startswith(("compose.", "latency.", "eval."))}
    payload = {"numbers": numbers, "base": base.key, "data": task.world.fingerprint,
               "adapters": [ad.path.name if ad.path is not None else ad.id for ad in adapters],
               "frontier": {"adapters": cfg.eval.frontier_adapters, "scales": list(cfg.eval.frontier_scales)}}

    def build(d):
        rows = measure_single(adapters, cfg, base, task, ref)
        write_json_atomic(d / "single.json", {"rows": rows, "frontier": frontier(adapters, rows, cfg, base, task, ref)})
        return {"adapters": len(rows)}

    entry = cache.get_or_build("single", content_key("single", payload), build, describe=payload)
    saved = json.loads((entry.path / "single.json").read_text())
    rows = saved["rows"]
    for ad, row in zip(adapters, rows):
        # this run's cache state (the rows were measured by whichever run built the entry)
        row.update(cache_hit=ad.meta.get("cache_hit"), train_seconds=ad.meta.get("train_seconds", 0.0))
        if cfg.adapters.calibrate and row["base_gap"] > 0 and "cal_scale" in row:
            ad.scale = row["cal_scale"]
    return rows, saved["frontier"]


def summarise(rows: List[Dict[str, Any]], metrics: Sequence[Metric] = ()) -> Dict[str, Any]:
    """Over the adapters alone: reduction, and each quality number the task reports at its worst
    (the end its declared direction calls worse)."""
    worst = {m.column: (min if m.direction == "higher" else max) for m in metrics if m.direction != "none"}
    red = np.array([r["reduction"] for r in rows], dtype=float)
    red = red[~np.isnan(red)]  # adapters whose target had no gap to reduce
    out = {
        "n": len(rows),
        "reduction_mean": float(red.mean()) if len(red) else NAN, "reduction_min": float(red.min()) if len(red) else NAN,
        **{f"{q}_worst": float(end(r[q] for r in rows)) for q, end in worst.items() if rows and q in rows[0]},
        "n_params_per_adapter": rows[0]["n_params"] if rows else 0,
        "train_seconds_total": float(sum(r["train_seconds"] or 0 for r in rows)),
    }
    if rows and "cal_scale" in rows[0]:
        out["cal_reachable"] = int(sum(r["cal_reachable"] for r in rows))
        out["cal_reduction_min"] = float(min(r["cal_reduction"] for r in rows if r["cal_reachable"]) if out["cal_reachable"] else float("nan"))
    return out
