"""`family=joint_lora`, `family=joint_steer`: the joint reference of LoRA and of steering.

Where the real family stacks k adapters, each trained on one target, its joint family trains one
adapter of the same kind on the union of the k targets' data, with the same budget per target
(k × `adapters.steps` steps of the same batch size and learning rate), and applies it alone. So
"a stack of k" and "one adapter for k" sit side by side at each k of a sparse schedule (`ks`, on
the first `orderings` orderings); training, caching and matched strength are in `adapters/joint.py`.

A joint family is its real family in every other respect: the same space, config fields, storage
format, application and inference modes (under its own name). Imported by the catalog before any
config is checked: nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional

from ..catalog import register_family
from ..checks import require as _require
from .lora import LoraFamily, LoraFamilyConfig
from .steer import SteerFamily, SteerFamilyConfig


def check_joint(fcfg) -> None:
    """The joint schedule's fields, `ks` and `orderings`, which both joint configs add."""
    _require(fcfg.ks is None or (len(fcfg.ks) > 0 and all(isinstance(k, int) and k >= 0 for k in fcfg.ks)),
             "family.ks", "must be null or a non-empty list of k >= 0", fcfg.ks)
    _require(fcfg.orderings >= 1, "family.orderings", "must be >= 1", fcfg.orderings)


@dataclass
class JointLoraFamilyConfig(LoraFamilyConfig):
    """LoRA's fields; one LoRA adapter per k, trained on the union of the k targets' data."""

    name: str = "joint_lora"
    # k of the joint reference: null = 1, 4, 16, ... (powers of 4) and the largest k, each within the
    # compose schedule; a list: those k within the compose schedule. k = 0 (the base) always.
    ks: Optional[List[int]] = None
    orderings: int = 1  # the first M orderings get a joint curve (at the largest k every ordering is the same set)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_joint(self)


@dataclass
class JointSteerFamilyConfig(SteerFamilyConfig):
    """Steering's fields; one set of steering vectors per k, trained on the union of the k targets' data."""

    name: str = "joint_steer"
    ks: Optional[List[int]] = None  # as JointLoraFamilyConfig.ks
    orderings: int = 1  # as JointLoraFamilyConfig.orderings

    def __post_init__(self) -> None:
        super().__post_init__()
        check_joint(self)


def joint_ks(fcfg, composed: List[int]) -> List[int]:
    """The k of a joint curve: `fcfg.ks` (default: powers of 4 and the largest k) within the
    composed schedule, plus k = 0."""
    top = max(composed)
    wanted = set(fcfg.ks) if fcfg.ks is not None else {top, *(4**i for i in range(top.bit_length()) if 4**i <= top)}
    return sorted({0, *(k for k in wanted if k in composed)})


class JointLoraFamily(LoraFamily):
    name = "joint_lora"
    schema = JointLoraFamilyConfig
    joint_of = "lora"
    label = "LoRA joint (one adapter for k targets)"
    color = "#56B4E9"  # a lighter shade of LoRA's blue
    modes = tuple(replace(m, family="joint_lora", label=f"joint_lora {m.name}") for m in LoraFamily.modes)


class JointSteerFamily(SteerFamily):
    name = "joint_steer"
    schema = JointSteerFamilyConfig
    joint_of = "steer"
    label = "steering joint (one vector set for k targets)"
    color = "#E69F00"  # a lighter shade of steering's vermillion
    modes = tuple(replace(m, family="joint_steer", label=f"joint_steer {m.name}") for m in SteerFamily.modes)


register_family(JointLoraFamily())
register_family(JointSteerFamily())
