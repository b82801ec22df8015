"""`family=steer`: a learned vector added to the output of every steering site the model handle
names (each transformer block's output). Output space.

Imported by the catalog before any config is checked: torch is imported inside the methods.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..catalog import register_family
from ..checks import require as _require
from ..schema import Mode

FILE = "steering.safetensors"


@dataclass
class SteerFamilyConfig:
    """A learned vector added to the output of every transformer block: output space."""

    name: str = "steer"
    lr: float = 3e-2
    steps: Optional[int] = None  # training steps per adapter; None: adapters.steps (the budget every family shares)

    def __post_init__(self) -> None:
        _require(self.lr > 0, "family.lr", "must be > 0", self.lr)
        _require(self.steps is None or self.steps > 0, "family.steps", "must be > 0 or null", self.steps)


@contextmanager
def frozen(model):
    """Base parameters out of autograd while only the intervention trains; restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def site_views(flat, sites: Dict[str, Tuple[int, ...]]):
    """{site: view of `flat`} in the sites' order and shapes: one parameter tensor holds every
    site's vector, so training updates them as one (as one [layers, hidden] matrix when all sites
    have the shape of a block's output). A stacked `flat` [n, total] gives views [n, *shape]."""
    out, offset = {}, 0
    lead = tuple(flat.shape[:-1])
    for site, shape in sites.items():
        n = 1
        for s in shape:
            n *= s
        out[site] = flat[..., offset : offset + n].view(*lead, *shape)
        offset += n
    return out


def save(flat, sites: Dict[str, Tuple[int, ...]], out_dir: Path) -> None:
    """One adapter's vectors (`flat` [total]) as the family stores them: a tensor per site, and
    the sites' order and shapes."""
    from safetensors.torch import save_file

    vectors = {s: v.detach().float().cpu().contiguous() for s, v in site_views(flat, sites).items()}
    save_file(vectors, str(out_dir / FILE))
    (out_dir / "steering_config.json").write_text(json.dumps({"sites": {s: list(v) for s, v in sites.items()}}))


class SteerFamily:
    name = "steer"
    space = "output"
    schema = SteerFamilyConfig
    trainable = True
    factored = False
    format = 2  # one tensor per steering site, named by the site
    label = "steering (output)"
    color = "#D55E00"
    modes = (Mode("steer", "hooks", "latency_ms", "latency_base_ms", "costs", "steering hooks cost inference time",
                  label="steer hooks", flops="flops_per_token"),)

    def train(self, base, fcfg, objective, acfg, seed: int, out_dir: Path, progress: bool, desc: str) -> Dict[str, Any]:
        import torch

        from ..interventions import steering
        from ..training import train

        handle = base.handle
        sites = handle.steer_sites()
        total = sum(int(torch.Size(s).numel()) for s in sites.values())
        flat = torch.zeros(total, device=handle.device, requires_grad=True)  # start from "no steering"
        with frozen(handle.module), steering(handle.module, site_views(flat, sites)):
            res = train(handle.module, [flat], objective, steps=acfg.steps_for(fcfg), batch_size=acfg.batch_size, lr=fcfg.lr,
                        seed=seed, desc=desc, progress=progress)
        save(flat, sites, out_dir)
        return {"train_seconds": res.seconds, "final_loss": sum(res.losses[-10:]) / 10, "n_params": total}

    def train_many(self, base, fcfg, objectives, acfg, seeds, out_dirs, progress: bool, desc: str,
                   names=()) -> List[Dict[str, Any]]:
        """`train` for each (objective, seed, out_dir), all in one batched pass (`batched.py`): the
        vectors stacked [n, total], each from zero, each row group steered by its own."""
        import torch

        from ..batched import steer_routes, train_together

        handle = base.handle
        sites = handle.steer_sites()
        total = sum(int(torch.Size(s).numel()) for s in sites.values())
        flat = torch.zeros(len(objectives), total, device=handle.device, requires_grad=True)
        with frozen(handle.module), steer_routes(handle.module, site_views(flat, sites), len(objectives) * acfg.batch_size):
            results = train_together(handle.module, [flat], objectives, seeds, steps=acfg.steps_for(fcfg),
                                     batch_size=acfg.batch_size, lr=fcfg.lr, names=names,
                                     desc=desc, progress=progress)
        for i, out_dir in enumerate(out_dirs):
            save(flat[i], sites, out_dir)
        return [{"train_seconds": r.seconds, "final_loss": sum(r.losses[-10:]) / 10, "n_params": total} for r in results]

    def load(self, path: Path):
        from safetensors.torch import load_file

        order = json.loads((Path(path) / "steering_config.json").read_text())["sites"]
        state = load_file(str(Path(path) / FILE))
        return {s: state[s] for s in order}, None

    def apply(self, handle, tensors):
        from ..interventions import steering

        return steering(handle.module, tensors)

    def time_modes(self, handle, adapters, ks, time, flops) -> Dict[int, Dict[str, float]]:
        return {}


register_family(SteerFamily())
