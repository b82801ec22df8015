"""`world=seat`: the config schema of SEAT tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ...checks import require as _require


@dataclass
class SeatWorldConfig:
    """SEAT tests in the standard JSONL format; one adapter per test."""

    name: str = "seat"
    path: Optional[str] = None  # directory of *.jsonl tests; None: the set lora_lab ships (WEAT 1, 2, 6, 7, 8)
    text_path: Optional[str] = None  # general sentences, one per line; None: the shipped ones
    eval_fraction: float = 0.5  # share of each set's terms (words) held out for evaluation, with all their sentences
    heldout_fraction: float = 0.5  # share of the general sentences held out for the similarity check
    permutations: int = 10000  # permutation test (p-value, noise floor): exact up to this many partitions, else this many drawn
    seed: Optional[int] = None  # the splits' seed; None: the run's `seed`

    def __post_init__(self) -> None:
        p = "world"
        if self.path is not None:
            _require(os.path.isdir(os.path.expanduser(self.path)), f"{p}.path", "directory does not exist", self.path)
        if self.text_path is not None:
            _require(os.path.isfile(os.path.expanduser(self.text_path)), f"{p}.text_path", "file does not exist", self.text_path)
        _require(0 < self.eval_fraction < 1, f"{p}.eval_fraction", "must be in (0, 1)", self.eval_fraction)
        _require(0 < self.heldout_fraction < 1, f"{p}.heldout_fraction", "must be in (0, 1)", self.heldout_fraction)
        _require(self.permutations > 0, f"{p}.permutations", "must be > 0", self.permutations)
