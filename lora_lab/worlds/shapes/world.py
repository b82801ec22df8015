"""The shapes world: roles (glyphs named by a profession word), two attribute axes (colour, the
protected attribute; style, the rendering) with known skews, and the prompts and images a
text-to-image model is trained and probed on.

Everything is a pure function of the config (and its seed), torch-free. As in the synthetic text
world, distributions in the data are exact, not sampled: a role with base distribution p over
(colour, style) and n neutral-prompt images gets round(n · p) images per pair (largest remainder),
so the maximum-likelihood model of the data *is* the configured distribution.

Prompts are words: "nurse" (neutral: the role alone), "red nurse" / "manga nurse" (explicit: one
value named), "red manga nurse" (both named), "red" (a value alone), and "" (no prompt: what
classifier-free guidance contrasts with). A share `heldout_fraction` of the (role, colour, style)
prompts are never trained on (`heldout_triples`): the quality score generates them, so it measures
what the model composes from the words it knows, not what it memorised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...checks import resolve_seed
from ..io import fingerprint
from ..synthetic.world import BiasTarget, allocate, draw_targets, skews, target_dists
from .config import ROLE_WORDS, ShapesWorldConfig
from .render import GLYPHS, Renderer

AXES = ("colour", "style")


@dataclass(frozen=True)
class Axis:
    name: str
    values: Tuple[str, ...]


# (prompt, (role, colour, style)): one training or probe image and what its prompt says
Record = Tuple[str, Tuple[int, int, int]]


class ShapesWorld:
    """Ground truth, prompts and images for one config. Roles are indexed 0..R-1."""

    def __init__(self, cfg: ShapesWorldConfig, seed: Optional[int] = None):
        self.cfg = cfg
        self.seed = resolve_seed(cfg.seed, seed)
        rng = np.random.default_rng(self.seed)
        self.roles: List[str] = list(ROLE_WORDS[: cfg.roles])
        self.glyphs: List[str] = list(GLYPHS)[: cfg.roles]
        self.axes: List[Axis] = [Axis("colour", tuple(cfg.colours)), Axis("style", tuple(cfg.styles))]
        self.renderer = Renderer(self.glyphs, cfg.colours, cfg.styles, cfg.image_size)
        # each (role, axis) puts bias_strength on one value drawn per seed, as in the text world
        self.dominant, self.base_dist = skews(rng, self.axes, cfg.roles, cfg.bias_strength)
        self.target_dist = target_dists(self.axes, cfg.targets)
        triples = [(r, c, s) for r in range(cfg.roles) for c in range(len(cfg.colours)) for s in range(len(cfg.styles))]
        order = np.random.default_rng([self.seed, 5]).permutation(len(triples))
        cut = max(1, int(round(cfg.heldout_fraction * len(triples))))
        self.heldout_triples: List[Tuple[int, int, int]] = sorted(triples[i] for i in order[:cut])
        self.train_triples: List[Tuple[int, int, int]] = sorted(triples[i] for i in order[cut:])

    # ------------------------------------------------------------------ words and prompts

    @cached_property
    def vocab(self) -> List[str]:
        """Every prompt word, sorted (special tokens are the tokenizer's business)."""
        return sorted({*self.roles, *(v for ax in self.axes for v in ax.values)})

    def axis(self, name: str) -> Axis:
        for ax in self.axes:
            if ax.name == name:
                return ax
        raise KeyError(f"unknown axis {name!r}, valid: {[a.name for a in self.axes]}")

    def prompt(self, role: Optional[int], colour: Optional[int] = None, style: Optional[int] = None) -> str:
        """The words, in the one order the grammar has: colour, style, role."""
        words = []
        if colour is not None:
            words.append(self.axes[0].values[colour])
        if style is not None:
            words.append(self.axes[1].values[style])
        if role is not None:
            words.append(self.roles[role])
        return " ".join(words)

    def parse(self, prompt: str) -> Dict[str, Optional[int]]:
        """{"role", "colour", "style"}: the index each word of `prompt` names (None if none)."""
        out: Dict[str, Optional[int]] = {"role": None, "colour": None, "style": None}
        for w in prompt.split():
            if w in self.roles:
                out["role"] = self.roles.index(w)
            for ax in self.axes:
                if w in ax.values:
                    out[ax.name] = ax.values.index(w)
        return out

    def neutral_prompt(self, role: int) -> str:
        return self.prompt(role)

    def explicit_prompt(self, role: int, axis: str, value: int) -> str:
        return self.prompt(role, **{axis: value})

    # ------------------------------------------------------------------ targets

    def bias_targets(self, kind: str, n: int) -> List[BiasTarget]:
        """The first n adapter targets of `kind` in a fixed, world-seeded order, drawn as the text
        world draws them (`synthetic.world.draw_targets`)."""
        return draw_targets(kind, n, self.axes, self.roles, self.target_dist, self.seed)

    # ------------------------------------------------------------------ data

    def _joint(self, role: int, dists: Dict[str, Sequence[float]], n: int, prompt: str) -> List[Record]:
        """n records of `role` with (colour, style) in exact proportion to the product of `dists`."""
        p = np.outer(dists["colour"], dists["style"]).ravel()
        counts = allocate(n, p)
        n_style = len(self.axes[1].values)
        return [(prompt, (role, i // n_style, i % n_style)) for i in range(len(p)) for _ in range(counts[i])]

    def _base(self, role: int) -> Dict[str, np.ndarray]:
        return {ax.name: self.base_dist[ax.name][role] for ax in self.axes}

    def neutral_records(self, n: int) -> List[Record]:
        """n neutral-prompt images per role, in the base distribution."""
        return [rec for r in range(len(self.roles)) for rec in self._joint(r, self._base(r), n, self.neutral_prompt(r))]

    def explicit_records(self, copies: int) -> List[Record]:
        """Per (role, axis, value), `copies` images whose prompt names that value, the other axis in
        the base distribution; and per value, `copies` images of the value alone (every role, evenly),
        which a negative prompt names; and one image per training (role, colour, style) prompt per copy."""
        out: List[Record] = []
        for ax in self.axes:
            for r in range(len(self.roles)):
                for v in range(len(ax.values)):
                    dists = {**self._base(r), ax.name: np.eye(len(ax.values))[v]}
                    out += self._joint(r, dists, copies, self.explicit_prompt(r, ax.name, v))
            for v in range(len(ax.values)):
                for r, m in enumerate(allocate(copies, np.ones(len(self.roles)))):
                    dists = {**self._base(r), ax.name: np.eye(len(ax.values))[v]}
                    out += self._joint(r, dists, int(m), self.prompt(None, **{ax.name: v}))
        for r, c, s in self.train_triples:
            out += [(self.prompt(r, c, s), (r, c, s))] * copies
        return out

    def pretrain_corpus(self) -> List[Record]:
        """The base model's training images with their prompts: the world as it is (base bias) and
        the explicit prompts. The empty prompt is drawn at training time (`uncond_fraction` of a
        batch, `model/denoiser.py`), from these images."""
        return self.neutral_records(self.cfg.bias_samples) + self.explicit_records(self.cfg.explicit_samples)

    def target_records(self, target: BiasTarget, n: int) -> List[Record]:
        """n neutral-prompt images spread evenly over the target's roles, the target's axis in its
        wanted distribution exactly, the other axis in the base distribution."""
        out: List[Record] = []
        for r, m in zip(target.roles, allocate(n, np.ones(len(target.roles)))):
            out += self._joint(r, {**self._base(r), target.axis: np.asarray(target.dist)}, int(m), self.neutral_prompt(r))
        return out

    def retain_pool(self, n: int) -> List[Record]:
        """General images an adapter keeps training on (and a used model goes on training on): the
        base distribution on every neutral and explicit training prompt; no held-out prompt."""
        pool = self.neutral_records(max(1, self.cfg.bias_samples // 4)) + self.explicit_records(1)
        return pool if n <= len(pool) else pool * -(-n // len(pool))

    def adapter_corpus(self, target: BiasTarget, n: int, retain_fraction: float, seed: int) -> List[Record]:
        """An adapter's training images: n target records plus retain records making up
        `retain_fraction` of the whole."""
        recs = self.target_records(target, n)
        n_retain = int(round(n * retain_fraction / (1.0 - retain_fraction)))
        if n_retain:
            pool = self.retain_pool(n_retain)
            pick = np.random.default_rng([self.seed, seed, 11]).choice(len(pool), n_retain, replace=False)
            recs += [pool[i] for i in pick]
        return recs

    def heldout_records(self, copies: int) -> List[Record]:
        """Each held-out (role, colour, style) prompt `copies` times, with the image it names."""
        return [(self.prompt(r, c, s), (r, c, s)) for r, c, s in self.heldout_triples for _ in range(copies)]

    def heldout_overlap(self) -> int:
        """Held-out prompts that occur in any training data (0 by construction; tested)."""
        trained = {p for p, _ in self.pretrain_corpus() + self.retain_pool(0)}
        return len({p for p, _ in self.heldout_records(1)} & trained)

    def images(self, records: Sequence[Record]) -> np.ndarray:
        """[n, 3, size, size] renders of the records' (role, colour, style)."""
        r, c, s = (np.array([rec[1][i] for rec in records], dtype=np.int64) for i in range(3))
        return self.renderer.render(r, c, s)

    @property
    def pretrain_config(self) -> Dict[str, object]:
        """The config fields the pretraining data depends on (the base's cache key): not the
        evaluation's sample counts."""
        import dataclasses

        probes = ("samples", "explicit_probes", "heldout_probes", "report_samples", "scenes", "scene_objects")
        return {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in probes}

    @cached_property
    def pretrain_digest(self) -> str:
        """sha256 of the pretraining data as generated (prompts and attributes; the pixels follow)."""
        return hashlib.sha256(json.dumps(self.pretrain_corpus()).encode()).hexdigest()

    @cached_property
    def fingerprint(self) -> str:
        """The data's hash: the config, the seed, the skews, the splits and the data as generated."""
        splits = {"dominant": {a: d.tolist() for a, d in self.dominant.items()},
                  "target_dist": {a: d.tolist() for a, d in self.target_dist.items()}, "pretrain": self.pretrain_digest,
                  "retain": hashlib.sha256(json.dumps(self.retain_pool(0)).encode()).hexdigest(),
                  "heldout": [list(t) for t in self.heldout_triples], "glyphs": self.glyphs}
        return fingerprint(self.cfg, self.seed, [], splits)
