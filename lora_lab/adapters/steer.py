"""`steer`: a learned vector added to the output of every transformer block. Output space."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict

import torch
from safetensors.torch import load_file, save_file

from ..interventions import steering, transformer_blocks
from ..training import Objective, train


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


class SteerFamily:
    name = "steer"
    space = "output"
    trainable = True

    def train(self, base, fcfg, objective: Objective, acfg, seed: int, out_dir: Path, progress: bool, desc: str) -> Dict[str, Any]:
        model = base.model
        n_layer, d = len(transformer_blocks(model)), model.config.hidden_size
        vectors = torch.zeros(n_layer, d, device=model.device, requires_grad=True)  # start from "no steering"
        with frozen(model), steering(model, vectors):
            res = train(model, [vectors], objective, steps=acfg.steps, batch_size=acfg.batch_size, lr=fcfg.lr,
                        seed=seed, desc=desc, progress=progress)
        save_file({"vectors": vectors.detach().float().cpu().contiguous()}, str(out_dir / "steering.safetensors"))
        (out_dir / "steering_config.json").write_text(json.dumps({"n_layer": n_layer, "d_model": d, "site": "block_output"}))
        return {"train_seconds": res.seconds, "final_loss": sum(res.losses[-10:]) / 10, "n_params": vectors.numel()}

    def load(self, path: Path) -> Dict[str, torch.Tensor]:
        return {"vectors": load_file(str(Path(path) / "steering.safetensors"))["vectors"]}

    def apply(self, model, tensors: Dict[str, torch.Tensor]):
        return steering(model, tensors["vectors"])
