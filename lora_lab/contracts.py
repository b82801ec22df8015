"""The contracts between the pipeline and its plugins, as `typing.Protocol`s.

The pipeline (`run.py` → `base.py` → `adapters/stage.py` → `stacking.py` → `results.py`) talks
to plugins only through these. A plugin declares itself once, where it is implemented, and
registers itself in the catalog (`catalog.py`); nothing else in the code base keeps a table of it.

    Family       how an adapter is parameterised, trained, composed, applied and removed
    MergeMethod  how k adapters' tensors become one (declared by `catalog.MergeMethodSpec`)
    Accumulator  a merge method's running state: prefix k + 1 from prefix k
    World        a data set with its config schema, reader, task and metrics (`catalog.WorldSpec`)
    Task         what the pipeline asks of a world: objective, reference, evaluation, removal, general text, ...
    ModelHandle  the model under study: the module to adapt, its inputs, where adapters may act

This module is torch-free; tensor types appear in annotations only.
"""

from __future__ import annotations

from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, ContextManager, Dict, List, Optional, Protocol, Sequence,
                    Tuple, runtime_checkable)

if TYPE_CHECKING:  # annotations only
    import torch
    from torch import nn

    from .schema import Mode

Delta = Dict[str, "torch.Tensor"]  # tensor name (a module, a steering site) -> tensor, any shape
TRAINED_DIR = "trained"  # a control family's adapter directory keeps the adapter it replaced here (`Family`)


@runtime_checkable
class ModelHandle(Protocol):
    """The model under study and where adapters may act on it (`model/handle.py`).

    Families and merges see a model only through this, so a model that is not a Hugging Face text
    LM (an image denoiser, an encoder) plugs in by providing a handle, without touching either."""

    module: "nn.Module"  # what is adapted: LoRA wraps its sub-modules, steering hooks their outputs
    device: "torch.device"

    def encode(self, inputs: Sequence[Any]) -> Dict[str, "torch.Tensor"]:
        """A batch of raw inputs (texts, prompts) as the module's keyword arguments, on `device`."""

    def lora_targets(self) -> Tuple[List[str], bool]:
        """(names of the sub-modules LoRA adapts by default, fan_in_fan_out: whether their weights
        are stored [in, out] as GPT-2's Conv1D)."""

    def hidden(self, inputs: Sequence[Any]) -> "torch.Tensor":
        """[positions, features]: the model's final hidden state at every real (unpadded) position
        of the inputs, as the model is now (a composition applied or not); for the activation shift."""

    def tokens(self, inputs: Sequence[Any]) -> int:
        """How many tokens (positions, pixels: the unit of "FLOPs per token") the inputs take."""

    def steer_sites(self) -> Dict[str, Tuple[int, ...]]:
        """Sub-module name -> the shape of a steering vector added to its output (it must broadcast
        against that output: `(hidden,)` for a transformer block, `(channels, 1, 1)` for a conv block)."""

    def latency_step(self, inputs: Sequence[Any], rewrite: Optional[Callable[[Any], Any]] = None,
                     module: Optional["nn.Module"] = None) -> Callable[[], Any]:
        """One timed inference step on `inputs` (rewritten first, if given): encoding included. `module`:
        time this module instead of `self.module` (a wrapper around it, as PEFT's unmerged LoRA)."""


@runtime_checkable
class Accumulator(Protocol):
    """A merge method's running state. `add` one adapter's delta, `result` the merge of all added so
    far; the cost of one step must not grow with k. A method declared `lowrank` also takes LoRA
    factors: `add_lowrank(factors, ident)` with factors {name: (left, right)}, delta = left @ right.

    `without(delta, ident)` is the leave-one-out composition of the stack as it is (k added): the
    merge of the other k - 1 deltas at the k-stack's own parameters (λ_k, not λ_{k-1}; the mean's
    1/k), given the dense `delta` that was added as `ident`. It leaves the state unchanged, and its
    cost must not grow with k either. For task arithmetic it is the stack minus λ_k·delta."""

    def add(self, delta: Delta, ident: str) -> None: ...

    def result(self) -> Delta: ...

    def without(self, delta: Delta, ident: str) -> Delta: ...


@runtime_checkable
class MergeMethod(Protocol):
    """A merge method (`catalog.MergeMethodSpec` is the standard implementation).

    `merge(deltas, ids, params)` is the from-scratch merge of k deltas as the paper states it;
    `accumulator(params)` an `Accumulator` that agrees with it at every prefix (tested). `params`
    carries one attribute per declared `Param` (with its default unless the config sets it) and
    `seed`. A delta's tensors may have any shape: a method that cannot handle one (SVD on a
    vector) raises ValueError naming the tensor."""

    name: str
    spaces: Tuple[str, ...]  # the family spaces it applies in: "weight", "output", "input"
    params: Tuple[Any, ...]  # catalog.Param: name, default, help, check
    lowrank: bool

    def merge(self, deltas: Sequence[Delta], ids: Sequence[str], params: Any) -> Delta: ...

    def accumulator(self, params: Any) -> Accumulator: ...


@runtime_checkable
class Family(Protocol):
    """An intervention family: what one adapter is and how it acts on a model.

    Declared attributes are read by the config checks and written into every results table, so
    the report knows the family without importing it."""

    name: str
    space: str  # "weight" (edits weights), "output" (adds to layer outputs), "input" (rewrites prompts)
    schema: type  # the dataclass of `family.*`
    trainable: bool  # False: no parameters and no training (the prompt pre-processor)
    factored: bool  # adapters carry low-rank factors (merge methods declared `lowrank` sum them fused)
    format: int  # how an adapter is stored; from 2 on, part of the adapter's cache key
    label: str  # legend label: "LoRA merged (weight)"
    color: str  # figure colour
    modes: Tuple["Mode", ...]  # its inference modes, the first one as deployed by `apply`
    # Optional, read only by `catalog.control_of`: a *control* family declares the real family it
    # stands in for (`control_of = "lora"`) and a method `derive(out_dir, seed)`. The adapter stage
    # gets the real family's adapter (from its own cache entry, trained there once for both), copies
    # it into the subdirectory `TRAINED_DIR` of the control's adapter directory, in the real family's
    # format (calibration sets the control's strength from it), and `derive` writes the control's
    # random adapter of the same size beside it. Real families declare none.
    # control_of: Optional[str]
    # Optional, read only by `catalog.joint_of`: a *joint* family declares the real family whose
    # reference it is (`joint_of = "lora"`): at each k of its schedule it trains one adapter of that
    # family on the union of the k targets' data, with the same budget per target, and applies it
    # alone where the real family stacks k (`adapters/joint.py`). Its config has the real family's
    # fields plus `ks` and `orderings`. Real families declare none.
    # joint_of: Optional[str]
    # An input-space family (space "input": no parameters, the model left as it is) declares `needs`,
    # the `WorldSpec` flag of the worlds whose inputs it can act on ("rewrites": the prompt
    # pre-processor; "negatives": negative prompts), and two methods that ask the task for its rules:
    #   rule(task, fcfg, targets) -> the exact expectation of what it does to any input (evaluate's
    #     `rewrite` argument: `.variants(input)` -> [(input as the model sees it, probability)]);
    #   deployed(task, fcfg, targets, seed) -> a callable that does it to one input, as deployed (timed).
    # A job whose world lacks the flag is skipped with one line (a sweep over families reaches it).
    # needs: str

    # Optional, read only by `adapters.stage.train_missing_together`: a trainable family may train many adapters in
    # one batched pass over the shared base (`batched.py`), each as `train` would train and store it:
    #   train_many(base, fcfg, objectives, acfg, seeds, out_dirs, progress, desc, names) -> [statistics]
    # Families without it train one adapter at a time.

    def train(self, base: Any, fcfg: Any, objective: Any, acfg: Any, seed: int, out_dir: Path, progress: bool,
              desc: str) -> Dict[str, Any]:
        """Train one adapter on `objective` against the frozen base (`base.handle`: its `ModelHandle`),
        save it under `out_dir`; return its statistics (train_seconds, final_loss, n_params)."""

    def load(self, path: Path) -> Tuple[Delta, Optional[Dict[str, Tuple["torch.Tensor", "torch.Tensor"]]]]:
        """(its tensors, its low-rank factors or None) from a directory `train` wrote."""

    def apply(self, handle: ModelHandle, tensors: Delta) -> ContextManager[Any]:
        """Apply a (composed) delta for the duration of a block; undone exactly on exit."""

    def time_modes(self, handle: ModelHandle, adapters: Sequence[Any], ks: Sequence[int],
                   time: Callable[[Any], float], flops: Callable[[Any], float]) -> Dict[int, Dict[str, float]]:
        """The columns of its modes other than the first, {k: {column: value}}, each k's first
        `adapters`: `time(model)` times one inference step (ms), `flops(model)` counts its FLOPs per
        token. Families with one mode return {}."""


@runtime_checkable
class Task(Protocol):
    """A world as the pipeline uses it. `world` is the object `WorldSpec.open` returned; its
    `fingerprint` (the hash of its data) is in every adapter and curve cache key.

    `evaluate` returns exactly the metric columns the world declares (`WorldSpec.metrics`) except
    `removal_gap`, which the stacking loop measures with `removal_gap` after the composition is
    taken off again; a declared column it does not return, or one it returns undeclared, is an error."""

    world: Any

    def bias_targets(self, kind: str, n: Optional[int]) -> List[Any]:
        """The targets, one adapter each (each has `.id` and `.kind`)."""

    def objective(self, target: Any, tokenizer: Any, acfg: Any, seed: int) -> Any:
        """The training objective of one target's adapter (`training.Objective`). A joint adapter's
        is `training.union` of its targets' objectives: a `training.LMObjective` concatenates with
        others of its kind, any other objective is interleaved step by step."""

    def reference(self, model: Any, tok: Any) -> Any:
        """The base's numbers, computed once: what every composition is compared with."""

    def target_gap(self, model: Any, tok: Any, target: Any, rewrite: Optional[Any] = None) -> float:
        """One target's gap; 0 = reached."""

    def target_gaps(self, model: Any, tok: Any, targets: Sequence[Any]) -> Dict[str, float]:
        """{target id: its gap} for the model as it is now, from the probes the gaps need and no
        other measurement (the leave-one-out evaluations call it k times per k)."""

    def quality(self, model: Any, tok: Any, ref: Any) -> Dict[str, float]:
        """Quality numbers of one adapter alone (adapters_report.json)."""

    def evaluate(self, model: Any, tok: Any, ref: Any, included: Sequence[Any], all_targets: Sequence[Any],
                 rewrite: Optional[Any] = None) -> Tuple[Dict[str, float], Dict[str, Any]]:
        """(metric columns, per included target its gap or {"gap": ..., more float fields}). With a
        `rewrite` (the prompt pre-processor's), every input the task scores is rewritten as deployed."""

    def removal_gap(self, model: Any, tok: Any, included: Sequence[Any], all_targets: Sequence[Any]) -> float:
        """The gap on the included targets once the composition is removed."""

    def general_objective(self, tokenizer: Any, seed: int) -> Optional[Any]:
        """The objective a deployed model keeps being trained on (`training.Objective`): general
        text, disjoint from the held-out text and from every probe, for removal after use
        (`stacking.after_use`). None when the world has none (an encoder has no language-model
        objective): its after-use columns are then NaN."""

    def latency_inputs(self) -> List[Any]:
        """Inputs of the latency probe (the prompts a deployed model would see)."""

    def heldout_inputs(self) -> List[Any]:
        """Held-out text no adapter was trained on (the activation shift is measured on it)."""

    # A world declared `negatives` provides negative prompts: negative(targets, guidance) -> the rule
    #   of `family=negative` (callable on one input, and `.variants`); the model's handle samples a
    #   (prompt, negative prompt, scale) input with classifier-free guidance against the negative.
    # A world with images may provide samples(model, tok, rule=None) -> [rows, columns, 3, H, W] images
    #   in [-1, 1] (fixed noise): each row's sample grid (`lora_lab/samples.py`).
    # A world declared `rewrites` also provides the prompt pre-processor's rules:
    #   rewrite(targets) -> the exact expectation over rewrites (evaluate's `rewrite` argument): the
    #     pre-processor sees every input, so evaluate scores quality on rewritten inputs too;
    #   rewriter(targets, seed) -> a callable that rewrites one input, as deployed (timed; the
    #     tokens it adds to the latency inputs are the mode's `Mode.tokens` column).

    def base_report(self, model: Any, tok: Any) -> Dict[str, Any]:
        """What base_report.json says about the base."""


class World(Protocol):
    """A world's data as read by `WorldSpec.open`: torch-free.

    A world not declared `pretrained` is one a base is pretrained on (`base.py`): it also has
    `vocab` (its words: the tokenizer), `pretrain_corpus()` (the sentences) and `pretrain_digest`
    (their hash, in the base's cache key). A pretrained world's `vocab`, when it has one, is checked
    against the loaded tokenizer."""

    fingerprint: str  # hash of the data files, split parameters and splits (worlds/io.py)


