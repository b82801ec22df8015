"""`family=null_lora`: the control for LoRA. Each adapter is trained exactly as `family=lora` trains it
(same config fields, objective and seed: the same adapter, from LoRA's own cache entry: one training
for both), then replaced by a random one of the same size: per module, Gaussian factors A', B' of
the trained A, B shapes, rescaled so that the module's delta s·B'A' has the Frobenius norm of the
trained s·BA. Stacking these measures what any perturbation of that size does to quality, whatever
its direction (H1 vs null, docs/protocol.md).

Stored in LoRA's PEFT directory format, so loading, factors, merging and the unmerged latency mode
are LoRA's own; the trained adapter is kept in `trained/` (calibration sets the null's strength from
it: a null is stacked at the strength its trained counterpart is). Imported by the catalog before
any config is checked: torch is imported inside the functions.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict

from ..catalog import register_family
from ..contracts import TRAINED_DIR
from .lora import LoraFamily, LoraFamilyConfig

WEIGHTS = "adapter_model.safetensors"


@dataclass
class NullLoraFamilyConfig(LoraFamilyConfig):
    """LoRA's fields (the adapter is trained as LoRA trains it), then a random direction of its size."""

    name: str = "null_lora"


def null_generator(seed: int, tag: str):
    """The random stream of a null adapter: from the adapter's seed, apart from the stream that
    initialised its training."""
    import torch

    return torch.Generator().manual_seed(zlib.crc32(f"{tag}:{seed}".encode()))


def random_lora_state(state: Dict[str, Any], seed: int) -> Dict[str, Any]:
    """A PEFT LoRA state dict of the same keys and shapes: per module, Gaussian A', B' scaled
    alike so that ||B'A'||_F = ||BA||_F (the scale s and the layout are the module's, so its delta
    s·B'A' has the trained delta's norm). Pure tensor maths; deterministic in `seed`."""
    import torch

    g = null_generator(seed, "null_lora")
    out = dict(state)
    for key in sorted(k for k in state if k.endswith(".lora_A.weight")):
        bkey = key.replace(".lora_A.", ".lora_B.")
        a, b = state[key], state[bkey]
        a2 = torch.randn(a.shape, generator=g, dtype=torch.float64)
        b2 = torch.randn(b.shape, generator=g, dtype=torch.float64)
        trained = torch.linalg.matrix_norm(b.double().flatten(1) @ a.double().flatten(1))
        drawn = torch.linalg.matrix_norm(b2.flatten(1) @ a2.flatten(1))
        c = (trained / drawn).sqrt()  # split between the factors: neither ends up tiny
        out[key], out[bkey] = (a2 * c).to(a.dtype).contiguous(), (b2 * c).to(b.dtype).contiguous()
    return out


class NullLoraFamily(LoraFamily):
    name = "null_lora"
    schema = NullLoraFamilyConfig
    control_of = "lora"
    label = "LoRA null (random, same norms)"
    color = LoraFamily.color
    # the real family's modes and columns, under this family's name
    modes = tuple(replace(m, family="null_lora", label=f"null_lora {m.name}") for m in LoraFamily.modes)

    def derive(self, out_dir: Path, seed: int) -> None:
        """The null of the trained adapter in `out_dir / TRAINED_DIR` (the real family's directory):
        its PEFT directory, with random weights of the same norms over it."""
        import shutil

        from safetensors.torch import load_file, save_file

        for p in (out_dir / TRAINED_DIR).iterdir():
            if p.is_file():
                shutil.copy2(p, out_dir / p.name)
        state = load_file(str(out_dir / TRAINED_DIR / WEIGHTS))
        save_file(random_lora_state(state, seed), str(out_dir / WEIGHTS), metadata={"format": "pt"})


register_family(NullLoraFamily())
