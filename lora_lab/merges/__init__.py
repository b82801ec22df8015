"""Merge methods: pure functions on deltas, one file each, each registering itself in the catalog.

A delta is a dict name -> tensor: per-module weight deltas (weight space) or per-site steering
vectors (output space), of any shape. Every method has two forms:
- `merge(deltas, ids, params)`: the from-scratch merge of k deltas, written as the paper states it;
- an accumulator with `add(delta, id)` / `result()`: prefix k+1 from prefix k at a cost that does not
  grow with k. Tests check the two agree.
Methods declared `lowrank` (sum, mean) also take LoRA factors (`add_lowrank`): their result is each
module's sum as one unexpanded product (`lowrank.LowRank`), which `interventions.weight_edit` adds
into the weight in place, rather than k dense additions.
`ids` name the adapters (DARE seeds each adapter's drop mask from its id, so masks do not depend on
the order or on which other adapters are present).

A new method is one file here: its maths, its `Param`s and one `register_merge(MergeMethodSpec(...))`
(see `sum.py`). The catalog imports every module of this package before a config is checked, so a
method's module imports torch inside its functions, not at the top.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Dict, Sequence

from .. import catalog

if TYPE_CHECKING:
    import torch

Delta = Dict[str, "torch.Tensor"]


class MergeParams(SimpleNamespace):
    """Every declared merge parameter at its default (or as given), plus `seed` (DARE's masks)."""

    def __init__(self, **values):
        unknown = sorted(set(values) - {p.name for p in catalog.merge_params()} - {"seed"})
        if unknown:
            raise TypeError(f"unknown merge parameters {unknown}")
        super().__init__(**{**{p.name: p.default for p in catalog.merge_params()}, "seed": 0, **values})


def accumulator(name: str, params):
    return catalog.merge_method(name).accumulator(params)


def merge(name: str, deltas: Sequence[Delta], ids: Sequence[str], params) -> Delta:
    if len(deltas) != len(ids):
        raise ValueError("one id per delta")
    return catalog.merge_method(name).merge(list(deltas), list(ids), params)
