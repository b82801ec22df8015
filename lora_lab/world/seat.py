"""SEAT tests (May et al., 2019) in the standard JSONL format, validated, and the WEAT statistics.

Each non-empty line of a `*.jsonl` file is one test: {"targ1", "targ2", "attr1", "attr2"}, each
{"category": str, "examples": [str, ...]}. Problems are one line: file:row: field 'name': problem.

Statistics (Caliskan et al., 2017): for a word (sentence) w,
    s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)
    effect size d = (mean_{x in X} s(x) - mean_{y in Y} s(y)) / std_{w in X u Y} s(w)   (sample std)
    p = Pr_i[ sum_{x in X_i} s(x) - sum_{y in Y_i} s(y)  >  the same for (X, Y) ]
over the equal-size re-partitions (X_i, Y_i) of X u Y: all of them when there are at most
`permutations`, else that many drawn at random (seeded).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..config import resolve_seed
from .io import DataError, NamedTarget, first_targets, fingerprint, holdout, read_text
from .seat_data import SHIPPED

SETS = ("targ1", "targ2", "attr1", "attr2")


@dataclass(frozen=True)
class SeatTest:
    name: str
    sets: Dict[str, Tuple[str, ...]]  # targ1/targ2/attr1/attr2 -> sentences
    categories: Dict[str, str]


def read_tests(directory: str) -> List[SeatTest]:
    d = Path(os.path.expanduser(directory))
    files = sorted(d.glob("*.jsonl"))
    if not files:
        raise DataError(f"{d}: no *.jsonl SEAT tests")
    tests = []
    for path in files:
        lines = [(i + 1, line) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()) if line.strip()]
        for row, line in lines:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{row}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{row}: expected an object with {list(SETS)}, got {type(obj).__name__}")
            sets, cats = {}, {}
            for key in SETS:
                part = obj.get(key)
                if not isinstance(part, dict):
                    raise DataError(f"{path}:{row}: field '{key}': missing, or not an object")
                cat, ex = part.get("category"), part.get("examples")
                if not isinstance(cat, str) or not cat.strip():
                    raise DataError(f"{path}:{row}: field '{key}.category': empty or not a string")
                if not isinstance(ex, list) or len(ex) < 2 or not all(isinstance(x, str) and x.strip() for x in ex):
                    raise DataError(f"{path}:{row}: field '{key}.examples': needs a list of at least 2 non-empty strings")
                sets[key], cats[key] = tuple(ex), cat
            name = path.stem if len(lines) == 1 else f"{path.stem}_{row}"
            tests.append(SeatTest(name, sets, cats))
    return tests


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _cos(w, a).mean(1) - _cos(w, b).mean(1)


def effect_size(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    sx, sy = association(x, a, b), association(y, a, b)
    return float((sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std(ddof=1))


def p_value(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, permutations: int = 10000, seed: int = 0) -> float:
    s = association(np.concatenate([x, y]), a, b)
    n, total = len(x), len(x) + len(y)
    observed = s[:n].sum() - s[n:].sum()
    whole = s.sum()
    if math.comb(total, n) <= permutations:
        stats = np.array([2 * s[list(idx)].sum() - whole for idx in itertools.combinations(range(total), n)])
    else:
        rng = np.random.default_rng(seed)
        stats = np.array([2 * s[rng.permutation(total)[:n]].sum() - whole for _ in range(permutations)])
    return float((stats > observed).mean())


class SeatWorld:
    """SEAT tests with each set's sentences split into adapter-training and evaluation halves."""

    def __init__(self, cfg, seed: Optional[int] = None):
        self.cfg = cfg
        self.seed = resolve_seed(cfg.seed, seed)
        self.tests = {t.name: t for t in read_tests(cfg.path or str(SHIPPED))}
        rng = np.random.default_rng(self.seed)
        self.train: Dict[str, Dict[str, List[str]]] = {}
        self.eval: Dict[str, Dict[str, List[str]]] = {}
        for name, t in self.tests.items():
            self.train[name], self.eval[name] = {}, {}
            for key in SETS:
                self.eval[name][key], self.train[name][key] = holdout(list(t.sets[key]), cfg.eval_fraction, rng)
        lines = read_text(cfg.text_path or str(SHIPPED / "general.txt"))
        # at least 2 held out: the similarity structure needs a pair
        self.heldout, self.retain = holdout(lines, cfg.heldout_fraction, np.random.default_rng([self.seed, 1]), minimum=2)

    def targets(self, n: Optional[int] = None) -> List[NamedTarget]:
        """One target per SEAT test; adapters shrink that test's effect size."""
        return first_targets([NamedTarget("seat", t, "seat") for t in sorted(self.tests)], n, "the SEAT set (tests)")

    @cached_property
    def fingerprint(self) -> str:
        """The data's hash: every test file's and the text file's contents, the split parameters and
        the splits (io.fingerprint)."""
        files = sorted(Path(os.path.expanduser(self.cfg.path or str(SHIPPED))).glob("*.jsonl"))
        text = self.cfg.text_path or str(SHIPPED / "general.txt")
        splits = {"train": self.train, "eval": self.eval, "heldout": self.heldout, "retain": self.retain}
        return fingerprint(self.cfg, self.seed, [*map(str, files), text], splits)
