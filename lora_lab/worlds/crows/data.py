"""CrowS-Pairs-format bias pairs (Nangia et al., 2020) and a general text file, validated and split.

The stereotypical sentence of a pair is `sent_more` in both directions: the dataset's README defines
it as "the sentence which is more stereotypical", and Nangia et al.'s metric (their `metric.py`, as
bias-bench's) counts a pair when `sent_more` scores higher whether `stereo_antistereo` is 'stereo'
(sent_more demonstrates a stereotype of a disadvantaged group) or 'antistereo' (sent_less violates
one). The direction column is validated but does not change which sentence is scored as stereotypical.

Held-out pairs are disjoint from adapter-training pairs as sentences, not only as rows: duplicate rows
count once, and pairs that share a sentence are split as one group, so no sentence of an evaluation
pair appears in any training pair. Text lines are deduplicated before the held-out/retain split.

Every problem is reported as one line naming the file, the row (line number) and the field.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...checks import resolve_seed
from ..io import DataError, NamedTarget, distinct_lines, first_targets, fingerprint, holdout, read_utf8

COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")
DIRECTIONS = ("stereo", "antistereo")


@dataclass(frozen=True)
class Pair:
    stereo: str  # sent_more: the more stereotypical sentence (in both directions)
    anti: str  # sent_less
    bias_type: str
    row: int


def read_pairs(path: str) -> List[Pair]:
    path = os.path.expanduser(path)
    reader = csv.DictReader(io.StringIO(read_utf8(path), newline=""))
    try:
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
            pairs.append(Pair(more, less, rec["bias_type"].strip(), row))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    if not pairs:
        raise DataError(f"{path}:1: no data rows below the header")
    return pairs


def distinct(pairs: Sequence[Pair]) -> List[Pair]:
    """The first row of each (stereo, anti, bias_type): a duplicated row is one pair, not two."""
    seen: Dict[Tuple[str, str, str], Pair] = {}
    for p in pairs:
        seen.setdefault((p.stereo, p.anti, p.bias_type), p)
    return list(seen.values())


def linked(pairs: Sequence[Pair]) -> List[List[Pair]]:
    """Pairs grouped so that two pairs sharing a sentence (directly or through others) are in one
    group; groups in the order of their first row."""
    parent = list(range(len(pairs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: Dict[str, int] = {}
    for i, p in enumerate(pairs):
        for s in (p.stereo, p.anti):
            j = first.setdefault(s, i)
            parent[root(i)] = root(j)
    groups: Dict[int, List[Pair]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(root(i), []).append(p)
    return list(groups.values())


def split_pairs(pairs: Sequence[Pair], types: Sequence[str], fraction: float, rng: np.random.Generator,
                path: str) -> Tuple[Dict[str, List[Pair]], Dict[str, List[Pair]]]:
    """(eval, train) pairs per bias type: each type's groups of linked pairs (a group belongs to the
    type of its first row) split by `holdout`, so no sentence is on both sides."""
    groups = linked(pairs)
    held: List[List[Pair]] = []
    for t in types:
        of_type = [p for p in pairs if p.bias_type == t]
        where = f"{path}:{of_type[0].row}: field 'bias_type': {t!r}"
        if len(of_type) < 2:
            raise DataError(f"{where} has 1 distinct pair (duplicate rows count once); needs 2 (train and eval)")
        own = [g for g in groups if g[0].bias_type == t]
        if len(own) < 2:
            raise DataError(f"{where}: its {len(of_type)} distinct pairs are linked by shared sentences into "
                            f"{len(own)} group(s); needs 2 (train and eval must not share a sentence)")
        held += holdout(own, fraction, rng)[0]
    in_eval = {p.row for g in held for p in g}  # a distinct pair keeps its first row: rows identify pairs
    ev = {t: [p for p in pairs if p.bias_type == t and p.row in in_eval] for t in types}
    tr = {t: [p for p in pairs if p.bias_type == t and p.row not in in_eval] for t in types}
    for t in types:  # a type's pairs can all sit in groups that another type's first row owns
        if not ev[t] or not tr[t]:
            raise DataError(f"{path}:{tr[t][0].row if tr[t] else ev[t][0].row}: field 'bias_type': {t!r} has no "
                            f"{'eval' if not ev[t] else 'train'} pair: its pairs share sentences with other types' pairs")
    return ev, tr


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
        self.types = types
        used = distinct([p for p in pairs if p.bias_type in types])
        self.eval, self.train = split_pairs(used, types, cfg.eval_fraction, np.random.default_rng(self.seed), cfg.path)
        lines = distinct_lines(cfg.text_path, 2, "one held out for evaluation")
        self.heldout, self.retain = holdout(lines, cfg.heldout_fraction, np.random.default_rng([self.seed, 1]))

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
