"""The catalog: which families, merge methods and worlds exist, read from their own declarations.

Each plugin declares what it is once, in the file that implements it, and registers itself when
its module is imported:

- a **family** (`lora_lab/families/<name>.py`): an object with the `contracts.Family` attributes
  (name, space, config schema, inference modes, label) passed to `register_family`;
- a **merge method** (`lora_lab/merges/<name>.py`): a `MergeMethodSpec` (name, spaces, parameters
  with their defaults, `merge`, the accumulator) passed to `register_merge`;
- a **world** (`lora_lab/worlds/<name>/__init__.py`): a `WorldSpec` (config schema, data reader,
  task, the metrics it declares, the models it works with) passed to `register_world`.

`discover()` imports every module of those three packages, so adding a plugin is adding its file
(and, for a family or world, its Hydra yaml). Plugin modules are imported before any config is
checked, so they must not import torch at module level: heavy imports go inside the functions that
train and apply. This module, too, is torch-free: bad configs fail in about a second.

A test (or a user's own code) can register a plugin at run time with the same functions, and take
it out again with `registered(...)`. `python -m lora_lab.catalog` lists every plugin and what
combines with what.
"""

from __future__ import annotations

import importlib
import pkgutil
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .checks import ConfigError
from .schema import SPACES, Metric, require_core

# where plugins live: families and merge methods are modules, worlds are packages (the modules
# beside them, e.g. worlds/io.py, are shared helpers)
PACKAGES = {"lora_lab.families": False, "lora_lab.merges": False, "lora_lab.worlds": True}


@dataclass(frozen=True)
class Param:
    """A merge method's parameter: a `compose.<name>` config field. Methods that share a name share
    the field (λ is one knob for sum, TIES, DARE and SVD), so they must agree on its default."""

    name: str
    default: Any
    help: str
    check: Callable[[Any], bool] = lambda v: True
    rule: str = ""  # what `check` requires, for the error message: "must be in (0, 1]"
    type: Any = None  # the config field's type; None: type(default). `Any` for a field of several forms (λ)
    normalize: Optional[Callable[[Any], Any]] = None  # a checked value as stored (λ: 1 -> 1.0), so equal settings hash equal

    @property
    def field_type(self) -> Any:
        return type(self.default) if self.type is None else self.type


@dataclass(frozen=True)
class MergeMethodSpec:
    """A merge method (`contracts.MergeMethod`): `merge(deltas, ids, params)` merges k deltas
    from scratch, `accumulator(params)` builds prefix k + 1 from prefix k. `params` has one
    attribute per declared `Param`, plus `seed` (the run's)."""

    name: str
    spaces: Tuple[str, ...]
    merge: Callable
    accumulator: Callable
    params: Tuple[Param, ...] = ()
    lowrank: bool = False  # its accumulator also takes LoRA factors, `add_lowrank(factors, id)`
    # composes at sampling time: its result is a `merges.routed.Routed` (the k deltas and the rule
    # picking among them at each denoising step), not one delta; a text-to-image denoiser's only
    sampler: bool = False
    help: str = ""


@dataclass(frozen=True)
class WorldSpec:
    """A world (`contracts.World`): its config schema, how its data is read (`open(cfg, seed)`,
    torch-free: bad data stops a run before torch loads) and its task (`task(world)`). `open` and
    `task` are callables, or "module:attribute" strings imported when first used (so declaring a
    world imports neither its reader nor its torch-using task)."""

    name: str
    schema: type  # the dataclass of `world.*` (its `name` field is this world's name)
    open: Any  # Callable[[config, seed], world], or "module:attribute"
    task: Any  # Callable[[world], task], or "module:attribute"
    metrics: Tuple[Metric, ...]
    models: Tuple[str, ...] = ("causal_lm",)  # model kinds it works with (a model schema's KIND)
    pretrained: bool = False  # needs a model loaded with its weights (it has no corpus to pretrain on)
    rewrites: bool = False  # its prompts can be rewritten by the prompt pre-processor (family=prompt)
    negatives: bool = False  # its prompts can take a negative prompt, sampled with guidance against it (family=negative)
    collapse: Optional[str] = None  # a metric whose value below eval.collapse_mass marks a row collapsed
    check: Optional[Callable[[Any], None]] = None  # cross-field checks on the root config
    help: str = ""


_families: Dict[str, Any] = {}
_merges: Dict[str, MergeMethodSpec] = {}
_worlds: Dict[str, WorldSpec] = {}
_discovered = False
_listeners: List[Callable[[], None]] = []


def discover() -> None:
    """Import every plugin module once (each registers itself)."""
    global _discovered
    if _discovered:
        return
    _discovered = True  # first: the modules imported below register, and registering discovers
    try:
        for package, packages_only in PACKAGES.items():
            pkg = importlib.import_module(package)
            for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
                if not info.name.startswith("_") and (info.ispkg or not packages_only):
                    importlib.import_module(f"{package}.{info.name}")
    except BaseException:
        _discovered = False  # a plugin failed to import: try again next time rather than stay partial
        raise


def on_change(fn: Callable[[], None]) -> None:
    """Call `fn` whenever a plugin is registered or removed (the config schemas follow)."""
    _listeners.append(fn)


def _changed() -> None:
    for fn in _listeners:
        fn()


def _check_name(kind: str, name: str, table: Dict[str, Any], obj: Any) -> None:
    if not name or not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"{kind} name {name!r}: letters, digits and _, starting with a letter")
    if name in table and table[name] is not obj:
        raise ValueError(f"{kind} {name!r} is registered twice")


def register_family(family):
    """Register a family object (see `contracts.Family`); returns it."""
    discover()
    _check_name("family", family.name, _families, family)
    if family.space not in SPACES:
        raise ValueError(f"family {family.name}: space {family.space!r}, valid: {list(SPACES)}")
    if not family.modes:
        raise ValueError(f"family {family.name}: declares no inference mode (the first is how it is deployed)")
    for mode in family.modes:
        if mode.family != family.name:
            raise ValueError(f"family {family.name}: mode {mode.name} names family {mode.family}")
    real = control_of(family)
    if real is not None:
        if real not in _families or control_of(_families[real]) is not None or joint_of(_families[real]):
            raise ValueError(f"family {family.name}: control_of {real!r} is not a registered real family")
        if _families[real].space != family.space or not family.trainable:
            raise ValueError(f"family {family.name}: a control is trainable and acts in its real family's space "
                             f"({_families[real].space})")
    joint = joint_of(family)
    if joint is not None:
        if joint not in _families or control_of(_families[joint]) or joint_of(_families[joint]) or real is not None:
            raise ValueError(f"family {family.name}: joint_of {joint!r} is not a registered real family")
        if _families[joint].space != family.space or not family.trainable:
            raise ValueError(f"family {family.name}: a joint family is trainable and acts in its real family's space "
                             f"({_families[joint].space})")
    _families[family.name] = family
    _changed()
    return family


# compose fields and params attributes that are not a merge method's to declare
RESERVED_PARAMS = ("orderings", "schedule", "merge", "seed")


def register_merge(method: MergeMethodSpec) -> MergeMethodSpec:
    """Register a merge method; returns it."""
    discover()
    _check_name("merge method", method.name, _merges, method)
    taken = [p.name for p in method.params if p.name in RESERVED_PARAMS or not p.name.isidentifier()]
    if taken:
        raise ValueError(f"merge method {method.name}: parameter names {taken} are taken or invalid "
                         f"(reserved: {list(RESERVED_PARAMS)})")
    bad = [s for s in method.spaces if s not in SPACES]
    if bad or not method.spaces:
        raise ValueError(f"merge method {method.name}: spaces {list(method.spaces)}, valid: {list(SPACES)}")
    for p in method.params:
        for other in _merges.values():
            for q in other.params:
                if q.name == p.name and (q.default != p.default or type(q.default) is not type(p.default)):
                    raise ValueError(f"merge method {method.name}: parameter {p.name} defaults to {p.default!r}, "
                                     f"{other.name} declares {q.default!r}: a shared compose field has one default")
                if q.name == p.name and q.field_type != p.field_type:
                    raise ValueError(f"merge method {method.name}: parameter {p.name} is typed {p.field_type}, "
                                     f"{other.name} declares {q.field_type}: a shared compose field has one type")
    _merges[method.name] = method
    _changed()
    return method


def register_world(world: WorldSpec) -> WorldSpec:
    """Register a world; returns it."""
    discover()
    _check_name("world", world.name, _worlds, world)
    require_core(world.name, world.metrics)
    if world.collapse is not None and world.collapse not in [m.column for m in world.metrics]:
        raise ValueError(f"world {world.name}: collapse names {world.collapse!r}, which it does not declare")
    _worlds[world.name] = world
    _changed()
    return world


@contextmanager
def registered(*plugins) -> Iterator[None]:
    """Register plugins for the duration of a block (tests), then take out the ones it added (a
    plugin registered already stays)."""
    discover()
    added = []
    try:
        for p in plugins:
            table, register = ((_merges, register_merge) if isinstance(p, MergeMethodSpec) else
                               (_worlds, register_world) if isinstance(p, WorldSpec) else (_families, register_family))
            new = p.name not in table
            register(p)
            if new:
                added.append((table, p.name))
        yield
    finally:
        for table, name in added:
            table.pop(name, None)
        _changed()


def control_of(family) -> Optional[str]:
    """The real family a control family stands in for (its optional `control_of`, `contracts.Family`);
    None for a real family. The one place that attribute is read."""
    return getattr(family, "control_of", None)


def joint_of(family) -> Optional[str]:
    """The real family a joint family is the reference of (its optional `joint_of`,
    `contracts.Family`): one adapter trained on the union of k targets; None for any other family.
    The one place that attribute is read."""
    return getattr(family, "joint_of", None)


def real_config(fcfg, real: str):
    """The config of the real family `real` with the values of `fcfg`, the config of a family that
    stands in for it (a control or a joint reference): what trains and keys its real adapter, so both
    share the real family's cache entries."""
    import dataclasses

    schema = family(real).schema
    return schema(**{f.name: getattr(fcfg, f.name) for f in dataclasses.fields(schema) if f.name != "name"})


def families() -> Dict[str, Any]:
    discover()
    return dict(_families)


def merges() -> Dict[str, MergeMethodSpec]:
    discover()
    return dict(_merges)


def worlds() -> Dict[str, WorldSpec]:
    discover()
    return dict(_worlds)


def _get(kind: str, path: str, table: Dict[str, Any], name: Any):
    name = str(getattr(name, "value", name))
    if name not in table:
        raise ConfigError(f"{path}: unknown {kind} {name!r}, valid: {sorted(table)}")
    return table[name]


def family(name: str):
    return _get("family", "family.name", families(), name)


def merge_method(name: str) -> MergeMethodSpec:
    return _get("merge method", "compose.merge", merges(), name)


def world(name: str) -> WorldSpec:
    return _get("world", "world.name", worlds(), name)


def methods_for(space: str) -> List[str]:
    """The merge methods that apply in `space`, in registration order."""
    return [m.name for m in merges().values() if space in m.spaces]


def merge_params() -> List[Param]:
    """Every merge method's parameters, each name once (the `compose.*` fields they add)."""
    out: Dict[str, Param] = {}
    for m in merges().values():
        for p in m.params:
            out.setdefault(p.name, p)
    return list(out.values())


def params_for(method: str, values: Dict[str, Any], seed: int):
    """The params object a method's `merge` and accumulator get: its declared parameters from
    `values` (defaults where missing) plus `seed`."""
    from types import SimpleNamespace

    spec = merge_method(method)
    return SimpleNamespace(**{p.name: values.get(p.name, p.default) for p in spec.params}, seed=seed)


def _callable(ref) -> Callable:
    """A callable, or the attribute a "module:attribute" string names."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_world(world_cfg, seed: Optional[int] = None):
    """The world for a typed world config: its data read, checked and split. Imports no torch, so
    bad data stops a run before torch loads. `seed` is the run's, which the world follows unless
    its own `world.seed` is set."""
    return _callable(world(world_cfg.name).open)(world_cfg, seed)


def build_task(world_cfg, seed: Optional[int] = None, world_obj=None):
    """The task around a world (built from the config when not given)."""
    w = world_obj if world_obj is not None else build_world(world_cfg, seed)
    return _callable(world(world_cfg.name).task)(w)


def listing() -> str:
    """A plain-text table of every plugin: families with their space and modes, merge methods with
    their spaces and parameters, worlds with their models and metrics."""
    lines = ["families:"]
    for f in families().values():
        modes = ", ".join(m.name for m in f.modes)
        control = (f"  control of: {control_of(f)}" if control_of(f) else
                   f"  joint reference of: {joint_of(f)}" if joint_of(f) else "")
        lines.append(f"  {f.name:<10} {f.space}-space  merge methods: {', '.join(methods_for(f.space))}  modes: {modes}"
                     + control)
    lines.append("merge methods:")
    for m in merges().values():
        params = ", ".join(f"{p.name}={p.default!r}" for p in m.params) or "-"
        lines.append(f"  {m.name:<10} spaces: {', '.join(m.spaces)}  parameters: {params}"
                     + ("  (at sampling time: denoisers)" if m.sampler else ""))
    lines.append("worlds:")
    for w in worlds().values():
        lines.append(f"  {w.name:<10} models: {', '.join(w.models)}{' (pretrained)' if w.pretrained else ''}  "
                     f"metrics: {', '.join(m.column for m in w.metrics)}")
    return "\n".join(lines)


if __name__ == "__main__":
    # run as a script this file is `__main__`, not the module the plugins register in
    from lora_lab.catalog import listing as registered_listing

    print(registered_listing())
