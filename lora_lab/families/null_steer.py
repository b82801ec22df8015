"""`family=null_steer`: the control for steering. Each adapter is trained exactly as `family=steer`
trains it (same config fields, objective and seed: the same vectors, from steering's own cache
entry: one training for both), then replaced by a random one of the same size: per steering site, a
Gaussian vector rescaled to the trained vector's norm. Stacking these measures what any output
perturbation of that size does to quality (H1 vs null, docs/protocol.md).

Stored in steering's format; the trained vectors are kept in `trained/` (calibration sets the
null's strength from them). Imported by the catalog before any config is checked: torch is
imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict

from ..catalog import register_family
from ..contracts import TRAINED_DIR
from .null_lora import null_generator
from .steer import FILE, SteerFamily, SteerFamilyConfig


@dataclass
class NullSteerFamilyConfig(SteerFamilyConfig):
    """Steering's fields (the vectors are trained as steering trains them), then random ones of their size."""

    name: str = "null_steer"


def random_vectors(vectors: Dict[str, Any], seed: int) -> Dict[str, Any]:
    """Per site (in the stored order), a Gaussian vector of the trained one's shape, rescaled to
    its norm. Deterministic in `seed`."""
    import torch

    g = null_generator(seed, "null_steer")
    out = {}
    for site, v in vectors.items():
        r = torch.randn(v.shape, generator=g, dtype=torch.float64)
        out[site] = (r * (v.double().norm() / r.norm())).to(v.dtype).contiguous()
    return out


class NullSteerFamily(SteerFamily):
    name = "null_steer"
    schema = NullSteerFamilyConfig
    control_of = "steer"
    label = "steering null (random, same norms)"
    color = SteerFamily.color
    # the real family's modes and columns, under this family's name
    modes = tuple(replace(m, family="null_steer", label=f"null_steer {m.name}") for m in SteerFamily.modes)

    def derive(self, out_dir: Path, seed: int) -> None:
        """The null of the trained vectors in `out_dir / TRAINED_DIR` (the real family's directory):
        random ones of their norms."""
        import shutil

        from safetensors.torch import save_file

        shutil.copy2(out_dir / TRAINED_DIR / "steering_config.json", out_dir / "steering_config.json")
        trained, _ = super().load(out_dir / TRAINED_DIR)  # in the sites' order
        save_file(random_vectors(trained, seed), str(out_dir / FILE))


register_family(NullSteerFamily())
