"""`family=lora`: PEFT LoRA on attention and MLP projections. Weight space: W = W0 + (alpha/r) B A.

Imported by the catalog before any config is checked: torch and PEFT are imported inside the
functions that need them.
"""

from __future__ import annotations

import json
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from ..catalog import register_family
from ..checks import require as _require
from ..schema import Mode

PREFIX = "base_model.model."


@dataclass
class LoraFamilyConfig:
    """PEFT LoRA on attention and MLP projections: weight space."""

    name: str = "lora"
    rank: int = 4
    alpha: float = 8.0  # scale = alpha / rank
    target_modules: Optional[List[str]] = None  # None: the model handle's default (every attention and MLP projection)
    lr: float = 3e-3
    steps: Optional[int] = None  # training steps per adapter; None: adapters.steps (the budget every family shares)

    def __post_init__(self) -> None:
        p = "family"
        _require(self.rank > 0, f"{p}.rank", "must be > 0", self.rank)
        _require(self.alpha > 0, f"{p}.alpha", "must be > 0", self.alpha)
        _require(self.lr > 0, f"{p}.lr", "must be > 0", self.lr)
        _require(self.steps is None or self.steps > 0, f"{p}.steps", "must be > 0 or null", self.steps)
        _require(self.target_modules is None or len(self.target_modules) > 0, f"{p}.target_modules",
                 "must be null or non-empty", self.target_modules)


def lora_factors(state: Dict[str, Any], scaling: float, fan_in_fan_out: bool):
    """Per-module (left, right) with scaling * B @ A == left @ right in the weight's layout
    (transposed for Conv1D layers, fan_in_fan_out). A convolution's factors (A: [r, in, *kernel],
    B: [out, r, 1, 1]) are flattened to matrices, so left @ right is its kernel's delta as
    [out, in·prod(kernel)], the layout `interventions.weight_edit` reshapes. Pure tensor maths."""
    out = {}
    for key, a in state.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len(PREFIX) : -len(".lora_A.weight")] if key.startswith(PREFIX) else key[: -len(".lora_A.weight")]
        b = state[key.replace(".lora_A.", ".lora_B.")]
        a, b = a.flatten(1), b.flatten(1)  # matrices already: unchanged
        out[module] = (a.T * scaling, b.T) if fan_in_fan_out else (b * scaling, a)
    return out


def lora_deltas(state: Dict[str, Any], scaling: float, fan_in_fan_out: bool):
    """Per-module dense weight deltas scaling * B @ A, each in its weight's layout."""
    from ..merges.lowrank import densify

    return densify(lora_factors(state, scaling, fan_in_fan_out))


def load_lora_factors(path: Path):
    """Factors of a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)."""
    from safetensors.torch import load_file

    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    if cfg.get("use_rslora"):
        scaling = cfg["lora_alpha"] / cfg["r"] ** 0.5
    else:
        scaling = cfg["lora_alpha"] / cfg["r"]
    state = {k: v.float() for k, v in load_file(str(Path(path) / "adapter_model.safetensors")).items()}
    return lora_factors(state, scaling, cfg["fan_in_fan_out"])


# A stacked adapter's saved tensors: "<PREFIX><module>.lora_A|lora_B.weight|bias"
FACTOR_KEY = re.compile(rf"^{re.escape(PREFIX)}(.+)\.(lora_A|lora_B)\.(weight|bias)$")
# LoRA config fields under which PEFT builds a layer from more than its r and lora_alpha (DoRA,
# per-module ranks and alphas, extra trained modules): `_load_into` refuses them where set
PLAIN_ONLY = ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "trainable_token_indices",
              "target_parameters", "layer_replication")


def _load_into(pm, name: str, path: Path, first: Dict[str, Any]) -> None:
    """The PEFT adapter at `path` into `pm` as adapter `name`, as `pm.load_adapter` loads it: each
    adapted layer's own `update_layer`, float16/bfloat16 factors upcast to float32 (PEFT's
    `autocast_adapter_dtype`), the saved factors copied in, the config registered. `load_adapter`
    also walks every module of the model, the LoRA layers loaded before included, so N adapters
    loaded one after the other cost O(N²) walks: measured on `model=small`, 128 adapters took 8.8 s,
    which puts 1024 at about 10 minutes (`_load_into`: 1.5 s and 17 s for 128 and 512). `first`: the
    first adapter's config as a dict, which every adapter of a stack shares (one family config); a different
    one, or a config PEFT builds from more than r and lora_alpha (`PLAIN_ONLY`), raises rather than
    load something else than PEFT would. The global RNG is left as it was (`update_layer` draws
    an initialisation the saved factors then replace)."""
    import copy

    import torch
    from peft import LoraConfig
    from safetensors.torch import load_file

    cfg = LoraConfig.from_pretrained(str(path))
    cfg.inference_mode = True
    mine = cfg.to_dict()
    special = [f"{k}={mine[k]!r}" for k in PLAIN_ONLY if mine.get(k) not in (None, False, {}, [])]
    if special or mine.get("bias", "none") != "none":
        raise ValueError(f"adapter {path}: only plain LoRA adapters are stacked unmerged, not "
                         f"{special or ['bias=' + repr(mine['bias'])]}")
    differ = sorted(k for k in set(mine) | set(first)
                    if k not in ("base_model_name_or_path", "inference_mode", "revision") and mine.get(k) != first.get(k))
    if differ:
        raise ValueError(f"adapter {path}: its LoRA config differs from the first adapter's in {differ}")
    build = copy.copy(cfg)
    build.init_lora_weights = False  # the saved factors are copied in below
    model = pm.base_model.model
    state = load_file(str(Path(path) / "adapter_model.safetensors"))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for key, value in state.items():
            match = FACTOR_KEY.match(key)
            if match is None:
                raise ValueError(f"adapter {path}: {key!r} is not a LoRA factor (<module>.lora_A|lora_B.weight|bias)")
            module, part, param = match.groups()
            layer = model.get_submodule(module)
            if name not in layer.lora_A:
                layer.update_layer(name, cfg.r, cfg.lora_alpha, config=build)
                for factor in (layer.lora_A[name], layer.lora_B[name]):
                    if factor.weight.dtype in (torch.float16, torch.bfloat16):
                        factor.float()
            getattr(getattr(layer, part)[name], param).copy_(value)
    pm.peft_config[name] = cfg


@contextmanager
def unmerged(model, adapters: Sequence[Any]) -> Iterator[Callable[[int], Any]]:
    """`model` with the adapters loaded by PEFT, unmerged, each at its stacking scale. Yields
    `activate(k)`: the first k adapters active (k >= 1), so every adapted layer computes
    W0 x + Σ_{i<k} s_i B_i A_i x. The LoRA layers are taken out on exit; base weights are never touched.
    The first adapter is loaded by `PeftModel.from_pretrained`, the others by `_load_into` (no walk of the model each)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    names = [f"a{i}" for i in range(len(adapters))]  # PEFT names are module keys: no ':' or '.'
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        pm = PeftModel.from_pretrained(model, str(adapters[0].path), adapter_name=names[0])
    try:
        first = pm.peft_config[names[0]].to_dict()
        for name, ad in zip(names[1:], adapters[1:]):
            _load_into(pm, name, Path(ad.path), first)
        for module in pm.modules():
            if isinstance(module, LoraLayer):
                for name, ad in zip(names, adapters):
                    module.set_scale(name, ad.scale)

        def activate(k: int):
            if not 1 <= k <= len(names):
                raise ValueError(f"k={k}: {len(names)} adapters are loaded")
            pm.base_model.set_adapter(names[:k], inference_mode=True)
            return pm

        yield activate
    finally:
        pm.unload()
        model.__dict__.pop("peft_config", None)


class LoraFamily:
    name = "lora"
    space = "weight"
    schema = LoraFamilyConfig
    trainable = True
    factored = True
    format = 1  # on-disk format of an adapter (part of its cache key): a PEFT directory
    label = "LoRA merged (weight)"
    color = "#0072B2"
    modes = (
        Mode("lora", "merged", "latency_ms", "latency_base_ms", "flat", "merged weights cost no inference time",
             label="lora merged", by_construction="a merged model has the base's shapes: the same FLOPs as the base",
             flops="flops_per_token"),
        Mode("lora", "unmerged", "latency_unmerged_ms", "latency_unmerged_base_ms", "grows",
             "unmerged adapters cost inference time, growing with k", label="lora unmerged",
             flops="flops_unmerged_per_token"),
    )

    def peft_config(self, handle, fcfg):
        from peft import LoraConfig

        defaults, fan_in_fan_out = handle.lora_targets()
        modules = list(fcfg.target_modules or defaults)
        if not modules:
            raise ValueError(f"family.target_modules: no default for {type(handle.module).__name__}; set it explicitly")
        return LoraConfig(r=fcfg.rank, lora_alpha=fcfg.alpha, target_modules=modules, lora_dropout=0.0, bias="none",
                          fan_in_fan_out=fan_in_fan_out)

    @contextmanager
    def wrapped(self, model, cfg, seed: int):
        """`model` wrapped by PEFT with one fresh adapter initialised under `seed` (A's init, as
        `get_peft_model` draws it); on exit the LoRA layers are out and the base modules (their
        weights untouched) back in place."""
        import torch
        from peft import get_peft_model

        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # peft 0.21 calls a transformers-5 deprecated alias; harmless, and not the user's to fix
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            torch.manual_seed(seed)
            pm = get_peft_model(model, cfg)
        try:
            yield pm
        finally:
            pm.unload()
            model.__dict__.pop("peft_config", None)  # left by PEFT; the next get_peft_model would warn

    def train(self, base, fcfg, objective, acfg, seed: int, out_dir: Path, progress: bool, desc: str) -> Dict[str, Any]:
        from ..training import train

        with self.wrapped(base.handle.module, self.peft_config(base.handle, fcfg), seed) as pm:
            params = [p for p in pm.parameters() if p.requires_grad]
            res = train(pm, params, objective, steps=acfg.steps_for(fcfg), batch_size=acfg.batch_size, lr=fcfg.lr, seed=seed,
                        desc=desc, progress=progress)
            pm.save_pretrained(str(out_dir))
        return {"train_seconds": res.seconds, "final_loss": sum(res.losses[-10:]) / 10,
                "n_params": sum(p.numel() for p in params)}

    def train_many(self, base, fcfg, objectives, acfg, seeds, out_dirs, progress: bool, desc: str,
                   names=()) -> List[Dict[str, Any]]:
        """`train` for each (objective, seed, out_dir), all in one batched pass (`batched.py`): each
        adapter initialised as `train` initialises it, trained on its own batches through its own
        factors, saved as `train` saves it (a PEFT directory)."""
        from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

        from ..batched import lora_routes, stack, train_together
        from .steer import frozen

        model, cfg = base.handle.module, self.peft_config(base.handle, fcfg)
        inits = []
        for seed in seeds:
            with self.wrapped(model, cfg, seed) as pm:
                inits.append({k: v.detach().clone() for k, v in get_peft_model_state_dict(pm).items()})
        state = stack(inits)  # PEFT's keys, each [n, ...]
        a = {k[len(PREFIX) : -len(".lora_A.weight")]: v for k, v in state.items() if k.endswith(".lora_A.weight")}
        b = {m: state[f"{PREFIX}{m}.lora_B.weight"] for m in a}
        unrouted = set(state) - {f"{PREFIX}{m}.lora_{x}.weight" for m in a for x in "AB"}
        if unrouted:  # e.g. an embedding's lora_embedding_A/B: not a product of the module's input
            raise ValueError(f"adapters.together: cannot train {sorted(unrouted)[:2]} ... together; "
                             "set adapters.together=1")
        rows = len(objectives) * acfg.batch_size
        with frozen(model), lora_routes(model, a, b, cfg.lora_alpha / cfg.r, rows):
            results = train_together(model, list(state.values()), objectives, seeds, steps=acfg.steps_for(fcfg),
                                     batch_size=acfg.batch_size, lr=fcfg.lr, names=names,
                                     desc=desc, progress=progress)
        with self.wrapped(model, cfg, 0) as pm:
            for i, out_dir in enumerate(out_dirs):
                set_peft_model_state_dict(pm, {k: v[i].detach() for k, v in state.items()})
                pm.save_pretrained(str(out_dir))
        n_params = sum(v[0].numel() for v in state.values())
        return [{"train_seconds": r.seconds, "final_loss": sum(r.losses[-10:]) / 10, "n_params": n_params} for r in results]

    def load(self, path: Path):
        """Its factors, and its dense deltas as a view that computes them when read (never stored)."""
        from ..merges.lowrank import DenseView

        factors = load_lora_factors(path)
        return DenseView(factors), factors

    def apply(self, handle, tensors):
        """Merged deltas edited into the weights; a composition at sampling time (switch,
        composite: `merges/routed.py`) routed per denoising step."""
        from ..interventions import routed_edit, weight_edit
        from ..merges.routed import Routed

        if isinstance(tensors, Routed):
            return routed_edit(handle.module, tensors, handle.sampler_step)
        return weight_edit(handle.module, tensors)

    def time_modes(self, handle, adapters, ks, time, flops) -> Dict[int, Dict[str, float]]:
        """Unmerged PEFT: all the curve's adapters loaded once, the first k made active at each k;
        the paired reference is the same wrapped model with every adapter switched off. At k = 0
        the unmerged model is the base itself (no adapter loaded)."""
        out: Dict[int, Dict[str, float]] = {}
        composed = [k for k in ks if k > 0]
        if not composed:
            return out
        with unmerged(handle.module, list(adapters[: max(composed)])) as activate:
            for k in composed:
                pm = activate(k)
                ms, count = time(pm), flops(pm)
                with pm.disable_adapter():
                    out[k] = {"latency_unmerged_ms": ms, "latency_unmerged_base_ms": time(pm),
                              "flops_unmerged_per_token": count}
        return out


register_family(LoraFamily())
