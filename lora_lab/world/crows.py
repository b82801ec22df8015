"""CrowS-Pairs-format bias pairs (Nangia et al., 2020) and a general text file, validated.

Every problem is reported as one line naming the file, the row (line number) and the field.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..config import resolve_seed
from .io import DataError, NamedTarget, first_targets, fingerprint, holdout, read_text

COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")
DIRECTIONS = ("stereo", "antistereo")


@dataclass(frozen=True)
class Pair:
    stereo: str  # the stereotypical sentence: sent_more for 'stereo' rows, sent_less for 'antistereo'
    anti: str
    bias_type: str
    row: int


def read_pairs(path: str) -> List[Pair]:
    path = os.path.expanduser(path)
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror})") from None
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for col in COLUMNS:
            if col not in header:
                raise DataError(f"{path}:1: field '{col}': missing column (columns: {header})")
        pairs = []
        for rec in reader:
            row = reader.line_num
            for col in COLUMNS:
                v = rec.get(col)
                if v is None or not str(v).strip():
                    raise DataError(f"{path}:{row}: field '{col}': empty")
            direction = rec["stereo_antistereo"].strip()
            if direction not in DIRECTIONS:
                raise DataError(f"{path}:{row}: field 'stereo_antistereo': must be one of {list(DIRECTIONS)}, got {direction!r}")
            more, less = rec["sent_more"].strip(), rec["sent_less"].strip()
            if more == less:
                raise DataError(f"{path}:{row}: field 'sent_less': identical to sent_more")
            stereo, anti = (more, less) if direction == "stereo" else (less, more)
            pairs.append(Pair(stereo, anti, rec["bias_type"].strip(), row))
    if not pairs:
        raise DataError(f"{path}: no data rows")
    return pairs


class CrowsWorld:
    """Pairs grouped by bias type, split into adapter-training and evaluation pairs (seeded)."""

    def __init__(self, cfg, seed: Optional[int] = None):
        self.cfg = cfg
        self.seed = resolve_seed(cfg.seed, seed)
        pairs = read_pairs(cfg.path)
        present = sorted({p.bias_type for p in pairs})
        types = list(cfg.bias_types) if cfg.bias_types else present
        for t in types:
            if t not in present:
                raise DataError(f"{cfg.path}: world.bias_types: {t!r} has no rows (types present: {present})")
        rng = np.random.default_rng(self.seed)
        self.types = types
        self.train: Dict[str, List[Pair]] = {}
        self.eval: Dict[str, List[Pair]] = {}
        for t in types:
            of_type = [p for p in pairs if p.bias_type == t]
            if len(of_type) < 2:
                raise DataError(f"{cfg.path}:{of_type[0].row}: field 'bias_type': {t!r} has 1 row; needs 2 (train and eval)")
            self.eval[t], self.train[t] = holdout(of_type, cfg.eval_fraction, rng)
        self.heldout, self.retain = holdout(read_text(cfg.text_path), cfg.heldout_fraction, np.random.default_rng([self.seed, 1]))

    def targets(self, n: Optional[int] = None) -> List[NamedTarget]:
        """One target per bias type; adapters equalise the type's counterfactual pairs."""
        return first_targets([NamedTarget("crows", t, "counterfactual") for t in self.types], n,
                             f"{self.cfg.path} (bias types)")

    def eval_pairs(self, types: Optional[Sequence[str]] = None) -> List[Tuple[str, Pair]]:
        return [(t, p) for t in (types or self.types) for p in self.eval[t]]

    @cached_property
    def fingerprint(self) -> str:
        """The data's hash: both files' contents, the split parameters and the splits (io.fingerprint)."""
        splits = {"train": self.train, "eval": self.eval, "heldout": self.heldout, "retain": self.retain}
        return fingerprint(self.cfg, self.seed, [self.cfg.path, self.cfg.text_path], splits)
