"""The adapters families produce (the families themselves are plugins: `lora_lab/families/`).

A family turns a bias target's training text into an `Adapter` (or, for `prompt`, into rewriting
rules without training), stores it in the cache, and applies a set of tensors to a model as a
context manager (`contracts.Family`). Composition (merge methods) works on `Adapter.tensors`:
per-module weight deltas for weight-space families, per-site vectors for output-space ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch

from ..merges.lowrank import Factors


@dataclass
class Adapter:
    target: Any  # the world's target (`.id`, `.kind`)
    family: str
    tensors: Mapping[str, torch.Tensor]  # lora: module name -> scale*B@A in the weight's layout (computed when read); steer: site -> vector
    meta: Dict[str, Any] = field(default_factory=dict)  # training stats, parameter count, cache info
    path: Optional[Path] = None  # cache entry (None for parameter-free families)
    scale: float = 1.0  # strength multiplier (1 unless calibrated)
    factors: Optional[Factors] = None  # lora: module -> (left, right), tensors[m] == left @ right

    @property
    def id(self) -> str:
        return self.target.id

    def scaled(self) -> Mapping[str, torch.Tensor]:
        return {k: v * self.scale for k, v in self.tensors.items()} if self.scale != 1.0 else self.tensors

    def scaled_factors(self) -> Factors:
        assert self.factors is not None, f"{self.family} adapters have no low-rank factors"
        if self.scale == 1.0:
            return self.factors  # no copy
        return {k: (left * self.scale, right) for k, (left, right) in self.factors.items()}
