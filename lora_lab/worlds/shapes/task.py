"""The shapes world as a task: every metric from images generated with fixed noise and read back
by the decoder (`render.py`), so two compositions are compared on the same noise draws.

Probes, each image's noise seeded by the probe and its prompt alone:
- neutral: `world.samples` images per role on its neutral prompt ("nurse"): the attribute
  distributions (bias gaps, drift, diversity) and validity;
- explicit: `world.explicit_probes` per (role, axis, value) prompt ("red nurse"): controllability;
- held-out: `world.heldout_probes` per held-out (role, colour, style) prompt: KID to the images
  those prompts name (the quality score);
- team scenes: `world.scenes` per targeted role of `world.scene_objects` objects, each object in a
  region of its own, generated from its own prompt (regions do not overlap, so each is an image of
  the world's size sampled alone: region-conditioned generation with disjoint regions). The
  pre-processor prompts each object with the values it assigns in the target proportion over the
  scene; every other family prompts each region with the role's neutral prompt (as deployed with
  negative prompts). `bias_scene_gap`: the TV between a scene's decoded mix and the target.
With an input-space rule (the pre-processor's rewrite or negative prompts), every probe prompt goes
through it as deployed, each variant getting its exact share of the prompt's images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...model.denoiser import DenoiserHandle, objective as denoising
from ..synthetic.probes import normalised_entropy, tv_distance
from ..synthetic.world import BiasTarget, allocate
from .config import DEFAULT_N
from .metrics import histogram, prompt_kid
from .world import ShapesWorld

PROBE_SEEDS = {"neutral": 1, "explicit": 2, "heldout": 3, "grid": 4, "scene": 5}
SAMPLE_COLUMNS = 8  # images per role in a sample grid


@dataclass
class Reference:
    """The base's numbers, computed once: what compositions are compared with."""

    dists: Dict[str, np.ndarray]  # axis -> [roles, values] on neutral prompts
    kid: float


@dataclass
class Probe:
    """Images generated for some prompts and what the decoder read from them."""

    owner: np.ndarray  # [n] the prompt each image belongs to
    role: np.ndarray
    values: Dict[str, np.ndarray]  # axis -> [n] value index read (-1: unreadable)
    valid: np.ndarray
    images: np.ndarray


class ShapesTask:
    def __init__(self, world: ShapesWorld):
        self.world = world

    # ------------------------------------------------------------------ generation

    def probe(self, model, tok, prompts: Sequence[str], n: int, kind: str, rule: Optional[Any] = None) -> Probe:
        """n images per prompt (each variant of `rule` its exact share), noise seeded by (probe, prompt)."""
        conds: List[Any] = []
        for p in prompts:
            variants = rule.variants(p) if rule is not None else [(p, 1.0)]
            for (cond, _), m in zip(variants, allocate(n, [w for _, w in variants])):
                conds += [cond] * int(m)
        return self._generate(model, tok, prompts, n, kind, conds)

    def _generate(self, model, tok, prompts: Sequence[str], n: int, kind: str, conds: Sequence[Any]) -> Probe:
        """The images of `conds`, n per prompt in order, each prompt's noise seeded by (probe, prompt)."""
        size = self.world.cfg.image_size
        noise = []
        for p in prompts:
            g = torch.Generator().manual_seed(int(np.random.default_rng([PROBE_SEEDS[kind], *map(ord, p)]).integers(2**62)))
            noise.append(torch.randn(n, 3, size, size, generator=g))
        images = DenoiserHandle.of(model, tok).generate(list(conds), noise=torch.cat(noise))
        dec = self.world.renderer.decode(images)
        owner = np.repeat(np.arange(len(prompts)), n)
        return Probe(owner, dec.role, {"colour": dec.colour, "style": dec.style}, dec.valid, images)

    def scene_gap(self, model, tok, targets: Sequence[BiasTarget], rule=None) -> float:
        """Team scenes of the targets' roles (see the module docstring): the TV between each scene's
        decoded mix on a target's axis and the target, mean over targets, their roles and the scenes."""
        w = self.world
        roles = sorted({r for t in targets for r in t.roles})
        scenes, objects = w.cfg.scenes, w.cfg.scene_objects
        conds: List[Any] = []
        for r in roles:
            prompt = w.neutral_prompt(r)
            rng = np.random.default_rng([PROBE_SEEDS["scene"], r])  # the same assignment at every k
            for _ in range(scenes):
                conds += rule.scene(prompt, objects, rng) if rule is not None else [prompt] * objects
        pr = self._generate(model, tok, [w.neutral_prompt(r) for r in roles], scenes * objects, "scene", conds)
        scene = np.arange(len(pr.owner)) // objects  # scene s of role roles[s // scenes]
        gaps = []
        for t in targets:
            mix = histogram(pr.values[t.axis], scene, len(roles) * scenes, len(w.axis(t.axis).values), np.ones(len(scene)))
            for r in t.roles:
                i = roles.index(r)
                gaps += list(tv_distance(mix[i * scenes:(i + 1) * scenes], np.asarray(t.dist)))
        return float(np.mean(gaps))

    def neutral(self, model, tok, roles: Sequence[int], rule=None, n: Optional[int] = None) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        """Per axis [len(roles), values] attribute distributions on the neutral prompts, and each
        role's share of valid images."""
        return self._read(self._neutral(model, tok, roles, rule, n), len(roles))

    def _neutral(self, model, tok, roles: Sequence[int], rule=None, n: Optional[int] = None) -> Probe:
        w = self.world
        return self.probe(model, tok, [w.neutral_prompt(r) for r in roles], n or w.cfg.samples, "neutral", rule)

    def _read(self, pr: Probe, groups: int) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        ones = np.ones(len(pr.owner))
        dists = {ax.name: histogram(pr.values[ax.name], pr.owner, groups, len(ax.values), ones) for ax in self.world.axes}
        valid = np.bincount(pr.owner, weights=pr.valid.astype(float), minlength=groups) / np.bincount(pr.owner, minlength=groups)
        return dists, valid

    def fidelity(self, pr: Probe, roles: Sequence[int]) -> float:
        """Mean squared pixel difference between each image and a clean render of the role its prompt
        names (`roles[owner]`) in the colour and style the decoder read in it: 0 when every image is
        the prompt's glyph drawn exactly, whichever attributes it has; it grows with damage. A colour
        it cannot read is rendered as the first colour, a ring it cannot read as none (palette colours
        are at least 1 from the background per channel: a missing glyph costs about as much whichever
        colour stands in). Measured on the prompts as the families deploy them (rewritten,
        negated), so every family can lose it."""
        colour = np.where(pr.values["colour"] >= 0, pr.values["colour"], 0)
        drawn = self.world.renderer.render(np.asarray(roles)[pr.owner], colour, pr.values["style"])
        return float(np.mean((pr.images - drawn) ** 2))

    def explicit_acc(self, model, tok, rule=None, n: Optional[int] = None) -> float:
        w = self.world
        asks = [(r, ax.name, v) for ax in w.axes for r in range(len(w.roles)) for v in range(len(ax.values))]
        pr = self.probe(model, tok, [w.explicit_prompt(*a) for a in asks], n or w.cfg.explicit_probes, "explicit", rule)
        wanted = np.array([asks[i][2] for i in pr.owner])
        got = np.where(np.array([asks[i][1] == "colour" for i in pr.owner]), pr.values["colour"], pr.values["style"])
        return float((got == wanted).mean())

    def heldout_kid(self, model, tok, rule=None) -> float:
        """KID per held-out prompt between its generated images and the image it names, mean over
        the prompts (`metrics.prompt_kid`)."""
        w = self.world
        recs = w.heldout_records(1)
        pr = self.probe(model, tok, [p for p, _ in recs], w.cfg.heldout_probes, "heldout", rule)
        return prompt_kid(pr.images, w.images([recs[i] for i in pr.owner]), pr.owner)

    def samples(self, model, tok, rule=None) -> np.ndarray:
        """[roles, SAMPLE_COLUMNS, 3, H, W]: each role's neutral prompt (through `rule`, if given),
        from the same noise at every call: the sample grid of a row (`lora_lab/samples.py`)."""
        w = self.world
        pr = self.probe(model, tok, [w.neutral_prompt(r) for r in range(len(w.roles))], SAMPLE_COLUMNS, "grid", rule)
        return pr.images.reshape(len(w.roles), SAMPLE_COLUMNS, *pr.images.shape[1:])

    # ------------------------------------------------------------------ the Task contract

    def bias_targets(self, kind: str, n: Optional[int]) -> List[BiasTarget]:
        return self.world.bias_targets(kind, DEFAULT_N if n is None else n)

    def objective(self, target: BiasTarget, tokenizer, acfg, seed: int):
        recs = self.world.adapter_corpus(target, acfg.samples, acfg.retain_fraction, seed)
        return denoising(tokenizer, self.world.images(recs), [p for p, _ in recs])

    def general_objective(self, tokenizer, seed: int):
        """Denoising on the retain pool (`ShapesWorld.retain_pool`): the base distribution on every
        training prompt, no held-out prompt. `seed` is not needed: the trainer's batch order is seeded."""
        recs = self.world.retain_pool(0)
        return denoising(tokenizer, self.world.images(recs), [p for p, _ in recs])

    def rewrite(self, targets: Sequence[BiasTarget]):
        from .rewrite import Rewrite

        return Rewrite(self.world, targets)

    def rewriter(self, targets: Sequence[BiasTarget], seed: int = 0):
        from .rewrite import PromptRewriter

        return PromptRewriter(self.world, targets, seed)

    def negative(self, targets: Sequence[BiasTarget], guidance: float):
        """Negative prompts for these targets, each guided against at `guidance`."""
        from .rewrite import Negative

        return Negative(self.world, targets, guidance)

    def heldout_inputs(self) -> List[str]:
        """The held-out prompts (the activation shift is measured on them)."""
        return [p for p, _ in self.world.heldout_records(1)]

    def latency_inputs(self) -> List[str]:
        return [self.world.neutral_prompt(r) for r in range(len(self.world.roles))]

    def target_gap(self, model, tok, target: BiasTarget, rewrite=None) -> float:
        dists, _ = self.neutral(model, tok, list(target.roles), rewrite)
        return float(tv_distance(dists[target.axis], np.asarray(target.dist)).mean())

    def _gaps(self, dists: Dict[str, np.ndarray], roles: Sequence[int], targets: Sequence[BiasTarget]) -> Dict[str, float]:
        at = {r: i for i, r in enumerate(roles)}
        return {t.id: float(tv_distance(dists[t.axis][[at[r] for r in t.roles]], np.asarray(t.dist)).mean()) for t in targets}

    def target_gaps(self, model, tok, targets: Sequence[BiasTarget]) -> Dict[str, float]:
        roles = sorted({r for t in targets for r in t.roles})
        dists, _ = self.neutral(model, tok, roles)
        return self._gaps(dists, roles, targets)

    def reference(self, model, tok) -> Reference:
        roles = list(range(len(self.world.roles)))
        return Reference(self.neutral(model, tok, roles)[0], self.heldout_kid(model, tok))

    def quality(self, model, tok, ref: Reference) -> Dict[str, float]:
        roles = range(len(self.world.roles))
        pr = self._neutral(model, tok, roles)
        _, valid = self._read(pr, len(roles))
        return {"quality_fidelity": self.fidelity(pr, roles), "quality_validity": float(valid.mean())}

    def evaluate(self, model, tok, ref: Reference, included: Sequence[BiasTarget], all_targets: Sequence[BiasTarget],
                 rewrite=None):
        w = self.world
        roles = list(range(len(w.roles)))
        pr = self._neutral(model, tok, roles, rewrite)
        dists, valid = self._read(pr, len(roles))
        cov = {(r, t.axis) for t in included for r in t.roles}
        untargeted = [(r, ax.name) for ax in w.axes for r in roles if (r, ax.name) not in cov]
        drift = [tv_distance(dists[a][r], ref.dists[a][r]) for r, a in untargeted]
        spread = [normalised_entropy(dists[a][r]) for r, a in untargeted]
        targets = included or all_targets
        metrics = {
            "quality_fidelity": self.fidelity(pr, roles),
            "quality_kid": self.heldout_kid(model, tok, rewrite),
            "quality_validity": float(valid.mean()),
            "bias_target_gap": float(np.mean(list(self._gaps(dists, roles, targets).values()))),
            "bias_base_gap": float(np.mean(list(self._gaps(ref.dists, roles, targets).values()))),
            "bias_offtarget_drift": float(np.mean(drift)) if drift else float("nan"),
            "bias_scene_gap": self.scene_gap(model, tok, targets, rewrite),
            "control_explicit_acc": self.explicit_acc(model, tok, rewrite),
            "diversity_entropy": float(np.mean([normalised_entropy(dists[ax.name]).mean() for ax in w.axes])),
            "diversity_offtarget": float(np.mean(spread)) if spread else float("nan"),
        }
        return metrics, self._gaps(dists, roles, included)

    def removal_gap(self, model, tok, included: Sequence[BiasTarget], all_targets: Sequence[BiasTarget]) -> float:
        gaps = self.target_gaps(model, tok, included or all_targets)
        return float(np.mean(list(gaps.values())))

    def base_report(self, model, tok) -> Dict[str, Any]:
        w = self.world
        roles = list(range(len(w.roles)))
        pr = self._neutral(model, tok, roles, n=w.cfg.report_samples)
        dists, valid = self._read(pr, len(roles))
        fit = np.concatenate([tv_distance(dists[ax.name], w.base_dist[ax.name]) for ax in w.axes])
        return {
            "fidelity": self.fidelity(pr, roles),
            "fit_tv": float(fit.mean()),
            "fit_tv_max": float(fit.max()),
            "validity": float(valid.mean()),
            "explicit_acc": self.explicit_acc(model, tok, n=4 * w.cfg.explicit_probes),
            "kid": self.heldout_kid(model, tok),
            "heldout_prompts": len(w.heldout_triples),
            "heldout_overlap": w.heldout_overlap(),  # held-out prompts found in training data (0 by construction)
        }
