"""The joint reference: one adapter trained on the union of k targets' data (`families/joint.py`).

For each ordering's prefix order[:k] at the joint family's k, one adapter of the real family is
trained on the concatenation of the k targets' own corpora (each built by `task.objective` with its
own per-adapter seed, as the single adapters are) for k × `adapters.steps` steps of the same batch
size and learning rate: every target's data is seen as often as by its single adapter. The adapter
is cached by content like a single one; the payload of one target is the single adapter's own, so
k = 1 is the real family's single adapter (one cache entry for both).

With `adapters.calibrate`, a joint adapter's scale is set so that its mean gap reduction over its
k targets reaches `adapters.calibration_target` (the single adapters' rule, over k targets).
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from .. import catalog
from ..cache import ArtifactCache, content_key
from ..families.joint import joint_ks
from ..training import union
from . import Adapter
from .calibrate import Calibration, calibrate
from .stage import OBJECTIVE, adapter_key_payload, adapter_seed, on_device

log = logging.getLogger("lora_lab")
NAN = float("nan")


@dataclass(frozen=True)
class JointTarget:
    """The targets of one joint adapter, sorted by id (so the adapter depends on the set alone)."""

    targets: Tuple[Any, ...]

    @property
    def id(self) -> str:
        return "+".join(t.id for t in self.targets)

    @property
    def kind(self) -> str:
        return self.targets[0].kind


def joint_target(targets: Sequence[Any]) -> JointTarget:
    return JointTarget(tuple(sorted(targets, key=lambda t: t.id)))


def joint_seed(seed: int, target: JointTarget) -> int:
    """The training seed of a joint adapter; for one target, `adapter_seed` (the single adapter's)."""
    return zlib.crc32(f"{seed}:{target.id}".encode())


def joint_payload(cfg, base_key: str, target: JointTarget, data: str) -> Dict[str, Any]:
    """Everything a joint adapter depends on. One target: the single adapter's payload exactly."""
    real = catalog.joint_of(catalog.family(cfg.family.name))
    payload = adapter_key_payload(cfg, base_key, target.targets[0], data, catalog.real_config(cfg.family, real))
    if len(target.targets) == 1:
        return payload
    del payload["target"]
    k = len(target.targets)
    return {**payload, "targets": [dataclasses.asdict(t) for t in target.targets],
            "train": {**payload["train"], "steps": k * payload["train"]["steps"],
                      "objective": f"{OBJECTIVE}, on the union of the targets' corpora"}}


def build_joint(cfg, base, task, cache: ArtifactCache, targets: Sequence[Any], orders: Sequence[Sequence[int]],
                progress: bool = True) -> Dict[str, Adapter]:
    """{joint target id: its adapter} for every ordering's prefix at the joint ks (each set once)."""
    family = catalog.family(cfg.family.name)
    real = catalog.family(catalog.joint_of(family))
    fcfg = catalog.real_config(cfg.family, real.name)
    ks = [k for k in joint_ks(cfg.family, cfg.compose.ks(len(targets))) if k > 0]
    sets = {}
    for order in orders:
        for k in ks:
            jt = joint_target([targets[i] for i in order[:k]])
            sets.setdefault(jt.id, jt)
    out = {}
    for jt in tqdm(list(sets.values()), desc=f"{family.name} adapters", disable=not progress):
        k = len(jt.targets)
        payload = joint_payload(cfg, base.key, jt, task.world.fingerprint)
        kind = f"adapter_{real.name}" if k == 1 else f"adapter_{family.name}"

        def build(d, jt=jt, k=k):
            objective = union([task.objective(t, base.tokenizer, cfg.adapters, adapter_seed(cfg.seed, t))
                               for t in jt.targets])
            # k times one adapter's budget (the family's own steps, else adapters.steps), as the real family trains
            acfg = dataclasses.replace(cfg.adapters, steps=k * cfg.adapters.steps_for(fcfg))
            kcfg = dataclasses.replace(fcfg, steps=None) if hasattr(fcfg, "steps") else fcfg
            meta = real.train(base, kcfg, objective, acfg, joint_seed(cfg.seed, jt), d, progress, desc=jt.id)
            return {**meta, "target": jt.id} if k == 1 else {**meta, "targets": [t.id for t in jt.targets]}

        entry = cache.get_or_build(kind, content_key("adapter", payload), build, describe=payload)
        tensors, factors = on_device(*real.load(entry.path), base.handle.device)
        out[jt.id] = Adapter(jt, family.name, tensors, {**entry.meta, "cache_hit": entry.hit, "steps": k * cfg.adapters.steps_for(fcfg)},
                             entry.path, factors=factors)
    return out


def measure_joint(adapters: Dict[str, Adapter], cfg, base, task) -> List[Dict[str, Any]]:
    """Each joint adapter alone: its mean gap reduction over its k targets, uncalibrated and
    calibrated (with `adapters.calibrate`, its scale is set to the calibrated one). One row each."""
    family = catalog.family(cfg.family.name)
    model, tok = base.model, base.tokenizer
    rows = []
    for ad in adapters.values():
        targets = ad.target.targets
        base_gaps = np.array([task.target_gap(model, tok, t) for t in targets])
        ok = base_gaps > 0  # targets with a gap to reduce

        def reduction(scale: float, ad=ad, targets=targets, base_gaps=base_gaps, ok=ok) -> float:
            with family.apply(base.handle, {k: v * scale for k, v in ad.tensors.items()}):
                gaps = np.array([task.target_gap(model, tok, t) for t, o in zip(targets, ok) if o])
            return float(np.mean(1 - gaps / base_gaps[ok]))

        red = reduction(1.0) if ok.any() else NAN
        if ok.any():
            cal = calibrate(reduction, cfg.adapters.calibration_target, cfg.adapters.max_scale)
        else:
            log.warning("%s: no included target has a base gap: reduction NaN, stacked at its trained strength", ad.id)
            cal = Calibration(ad.scale, NAN, reachable=False)
        if cfg.adapters.calibrate and ok.any():
            ad.scale = cal.scale
        rows.append({"adapter": ad.id, "family": family.name, "kind": ad.target.kind, "k": len(targets),
                     "targets": [t.id for t in targets], "steps": ad.meta["steps"],
                     "n_params": ad.meta.get("n_params", 0), "train_seconds": ad.meta.get("train_seconds", 0.0),
                     "cache_hit": ad.meta.get("cache_hit"), "base_gap": float(base_gaps.mean()),
                     "reduction": red, "cal_scale": cal.scale, "cal_reduction": cal.reduction,
                     "cal_reachable": cal.reachable})
    return rows
