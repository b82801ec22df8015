"""The base stage of a text-to-image world: a denoiser pretrained on the world's images (cached by
content, like the language models of `base.py`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ..cache import ArtifactCache, content_key
from ..training import train
from ..worlds.tokenizer import build_tokenizer
from .denoiser import TinyDenoiser, build_denoiser, objective

# model fields that change how images are sampled, not the weights: out of the base's cache key
SAMPLING = ("sampler_steps", "guidance", "device")


def key_payload(cfg, world) -> Dict[str, Any]:
    """Everything the pretrained weights depend on: the world's data as generated, the model's
    architecture and objective, the pretraining schedule, the seed, the library versions."""
    import diffusers

    return {
        "world": world.pretrain_config,
        "corpus": world.pretrain_digest,
        "model": {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in SAMPLING},
        "train": dataclasses.asdict(cfg.train),
        "seed": cfg.seed,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }


def pretrain(cfg, world, out_dir: Path, progress: bool) -> Dict[str, Any]:
    """Build and pretrain the denoiser on the world's images; save it with its tokenizer."""
    tokenizer = build_tokenizer(world.vocab)
    corpus = world.pretrain_corpus()
    longest = max(len(p.split()) for p, _ in corpus)
    model = build_denoiser(cfg.model, tokenizer, world.cfg.image_size, max_len=longest + 1, seed=cfg.seed)
    data = objective(tokenizer, world.images(corpus), [p for p, _ in corpus], cfg.model.uncond_fraction)
    t = cfg.train
    steps = t.total_steps(len(corpus))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        res = train(model, list(model.parameters()), data, steps=steps, batch_size=t.batch_size, lr=t.lr, seed=cfg.seed,
                    warmup_steps=int(t.warmup_ratio * steps), min_lr_ratio=t.min_lr_ratio, weight_decay=t.weight_decay,
                    grad_clip=t.grad_clip, desc="pretrain denoiser", progress=progress)
    model.save(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"train_seconds": res.seconds, "final_loss": float(np.mean(res.losses[-50:])),
            "n_params": sum(p.numel() for p in model.parameters()), "corpus_images": len(corpus), "steps": steps}


def load(path: Path, mcfg) -> TinyDenoiser:
    """The cached denoiser, with the config's sampler settings."""
    model = TinyDenoiser.load(path, getattr(mcfg.device, "value", mcfg.device))
    model.sampler_steps, model.guidance = mcfg.sampler_steps, mcfg.guidance
    return model


def get_denoiser(cfg, task, cache: ArtifactCache, progress: bool):
    from transformers import AutoTokenizer

    from ..base import Base, resolve_device

    resolve_device(cfg.model.device.value)  # cuda asked for without a GPU: one clear line
    payload = key_payload(cfg, task.world)
    key = content_key("base", payload)
    entry = cache.get_or_build("base", key, lambda d: pretrain(cfg, task.world, d, progress), describe=payload)
    model = load(entry.path, cfg.model)
    return Base(model, AutoTokenizer.from_pretrained(str(entry.path)), entry.path, key, entry.hit,
                float(entry.meta["train_seconds"]))
