"""The synthetic bias world: roles, attribute axes with known skews, facts and general text.

Everything is a pure function of the config (and its seed). Distributions in the corpus are
exact, not sampled: a (role, axis) with base distribution p and n neutral sentences gets
round(n * p) sentences per value (largest remainder), so the maximum-likelihood model of the
corpus *is* the configured distribution and `fit_tv` measures learning alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...checks import ConfigError, resolve_seed
from .config import SyntheticWorldConfig
from ..io import fingerprint

_PROFESSIONS = (
    "nurse engineer doctor teacher pilot chef farmer lawyer baker plumber dancer soldier writer "
    "painter singer judge banker cleaner driver guard librarian mechanic surgeon scientist carpenter "
    "tailor sailor pharmacist architect accountant secretary firefighter designer editor manager "
    "janitor cashier dentist electrician gardener hairdresser jeweler miner nanny physicist poet "
    "programmer receptionist therapist welder"
).split()
_PLACES = "hospital school office farm court bank factory studio lab airport kitchen library garage theater shop station".split()
_TOOLS = "hammer pen laptop brush knife scalpel wrench camera needle ladder microphone shovel calculator whistle map keyboard".split()
_NUMBERS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen".split()
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]

# Fact relations: prompt template and the attribute of the role it names.
FACT_RELATIONS = {"workplace": "the {role} works at the", "tool": "the {role} uses the"}

# Held-out frames: sentence templates that occur nowhere in training text (the general text is
# "the a went to the P(a) with the T(a)", "the a met the b at the P(b)", "the a gave the T(a) to
# the b" and counting runs of 4; the facts "the a works at the P(a)", "the a uses the T(a)").
# Each starts as a training sentence, departs from it at one word and goes on as training text
# goes on after that word: "... with the T(a)" as in the general text, "... to the b" as after
# a tool, one more number. Familiar words in structures held out of training, as in COGS's
# structural generalisation split (Kim & Linzen, EMNLP 2020, section 3). Only trained words: a
# word-level model cannot predict a word it never saw. Joins that need a fact of another role
# after the departure ("the a met the b at the P(b) with the T(b)") or a marker before a general
# frame ("the male a went to ...") are left out: the default base gives those facts 5-10 nats,
# worse than guessing among 16, so their loss falls as stacking flattens the model.
# {a}, {b}: roles; place_a, tool_a: role a's facts.
HELDOUT_FRAMES = (
    "the {a} works at the {place_a} with the {tool_a}",
    "the {a} uses the {tool_a} to the {b}",
)
DEFAULT_HELDOUT = 500  # distinct held-out sentences when world.general_heldout is null
HELDOUT_COUNT_LENGTHS = (5,)  # counting runs held out; training counts in runs of 4


@dataclass(frozen=True)
class Axis:
    name: str
    prompt: str
    values: Tuple[str, ...]
    markers: Tuple[str, ...]


@dataclass(frozen=True)
class BiasTarget:
    """What one adapter is trained to do, with its ground truth.

    `rebalance`: move one (role, axis) to the axis's target distribution.
    `force`: push one value of an axis for every role ("everything is manga").
    """

    kind: str
    axis: str
    roles: Tuple[int, ...]
    dist: Tuple[float, ...]  # wanted distribution over the axis's values, for each role
    name: str  # human-readable id, unique within a world

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.axis}:{self.name}"


def allocate(n: int, p: Sequence[float]) -> np.ndarray:
    """Split n items into counts proportional to p, exactly (largest-remainder rounding)."""
    p = np.asarray(p, dtype=np.float64)
    raw = n * p / p.sum()
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def spread(n: int, sizes: Sequence[int]) -> np.ndarray:
    """Split n items over bins as evenly as their sizes allow: bins are filled smallest first, each
    taking its size or an equal share (rounded up) of what is left, whichever is less. Needs
    n <= sum(sizes): a bin's share never exceeds what the larger bins after it can absorb."""
    counts = np.zeros(len(sizes), dtype=np.int64)
    left = n
    for i, j in enumerate(np.argsort(sizes, kind="stable")):
        counts[j] = min(sizes[j], -(-left // (len(sizes) - i)))
        left -= counts[j]
    return counts


def skews(rng: np.random.Generator, axes: Sequence, roles: int, strength: float
          ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Per axis (anything with `name` and `values`): each role's dominant value, drawn uniformly,
    and its base distribution [roles, values], `strength` on the dominant value and the rest spread
    evenly."""
    dominant: Dict[str, np.ndarray] = {}
    base: Dict[str, np.ndarray] = {}
    for ax in axes:
        v = len(ax.values)
        dom = rng.integers(0, v, roles)
        dist = np.full((roles, v), (1.0 - strength) / (v - 1))
        dist[np.arange(roles), dom] = strength
        dominant[ax.name], base[ax.name] = dom, dist
    return dominant, base


def target_dists(axes: Sequence, targets: Dict[str, Sequence[float]]) -> Dict[str, np.ndarray]:
    """Per axis, its target distribution: the configured proportions normalised, uniform if none."""
    out: Dict[str, np.ndarray] = {}
    for ax in axes:
        t = np.asarray(targets.get(ax.name, [1.0] * len(ax.values)), dtype=np.float64)
        out[ax.name] = t / t.sum()
    return out


def draw_targets(kind: str, n: int, axes: Sequence, roles: Sequence[str], target_dist: Dict[str, np.ndarray],
                 seed: int) -> List[BiasTarget]:
    """The first n adapter targets of `kind`, in an order fixed by `seed`: `rebalance`, one
    (role, axis) to the axis's target distribution (axis-major); `force`, one value of an axis for
    every role ("everything is manga")."""
    if kind == "rebalance":
        pool = [BiasTarget("rebalance", ax.name, (r,), tuple(target_dist[ax.name]), roles[r])
                for ax in axes for r in range(len(roles))]
    elif kind == "force":
        every = tuple(range(len(roles)))
        pool = [BiasTarget("force", ax.name, every, tuple(np.eye(len(ax.values))[v]), ax.values[v])
                for ax in axes for v in range(len(ax.values))]
    else:
        raise ValueError(f"adapters.kind: unknown {kind!r}, valid: ['force', 'rebalance']")
    if n > len(pool):
        raise ValueError(f"adapters.n: {n} {kind} adapters asked for, this world has {len(pool)} targets")
    order = np.random.default_rng([seed, 7]).permutation(len(pool))
    return [pool[i] for i in order[:n]]


def _pseudo_words(rng: np.random.Generator, n: int, taken: set) -> List[str]:
    out: List[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_SYLLABLES, size=3))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


class SyntheticWorld:
    """Ground truth and text for one config. Roles are indexed 0..R-1."""

    def __init__(self, cfg: SyntheticWorldConfig, seed: Optional[int] = None):
        """`seed`: the run's seed, used when the config leaves the world's own seed unset.

        Raises ConfigError when `general_heldout` asks for more distinct held-out sentences than
        the held-out frames give at this many roles."""
        self.cfg = cfg
        self.seed = resolve_seed(cfg.seed, seed)
        rng = np.random.default_rng(self.seed)
        self.axes: List[Axis] = [Axis(a.name, a.prompt, tuple(a.values), tuple(a.markers)) for a in cfg.axes]
        taken = set(_PROFESSIONS + _PLACES + _TOOLS + _NUMBERS + self._fixed_words())
        self.roles: List[str] = (_PROFESSIONS + _pseudo_words(rng, max(0, cfg.roles - len(_PROFESSIONS)), taken))[
            : cfg.roles
        ]
        places = (_PLACES + _pseudo_words(rng, max(0, cfg.places - len(_PLACES)), taken))[: cfg.places]
        tools = (_TOOLS + _pseudo_words(rng, max(0, cfg.tools - len(_TOOLS)), taken))[: cfg.tools]
        self.facts: Dict[str, List[str]] = {
            "workplace": [places[i] for i in rng.integers(0, len(places), cfg.roles)],
            "tool": [tools[i] for i in rng.integers(0, len(tools), cfg.roles)],
        }
        self.dominant, self.base_dist = skews(rng, self.axes, cfg.roles, cfg.bias_strength)
        self.target_dist = target_dists(self.axes, cfg.targets)
        capacity = sum(size for _, size in self.heldout_frames())
        if cfg.general_heldout is not None and cfg.general_heldout > capacity:
            raise ConfigError(
                f"world.general_heldout: the held-out frames give {capacity} distinct sentences at "
                f"{cfg.roles} roles (got {cfg.general_heldout})"
            )
        # distinct held-out sentences: as asked, else 500 or all there are
        self.n_heldout = cfg.general_heldout if cfg.general_heldout is not None else min(DEFAULT_HELDOUT, capacity)

    # ------------------------------------------------------------------ vocabulary and prompts

    def _fixed_words(self) -> List[str]:
        words = ["count", "went", "to", "with", "met", "at", "gave", "the"]
        for tmpl in FACT_RELATIONS.values():
            words += tmpl.replace("{role}", "").split()
        for ax in self.axes:
            words += ax.prompt.replace("{role}", "").split() + list(ax.values) + list(ax.markers)
        return words

    @cached_property
    def vocab(self) -> List[str]:
        """Every word the world can emit, sorted (special tokens are the tokenizer's business)."""
        words = set(self._fixed_words()) | set(self.roles) | set(_NUMBERS)
        for objs in self.facts.values():
            words |= set(objs)
        return sorted(words)

    def axis(self, name: str) -> Axis:
        for ax in self.axes:
            if ax.name == name:
                return ax
        raise KeyError(f"unknown axis {name!r}, valid: {[a.name for a in self.axes]}")

    def neutral_prompt(self, role: int, axis: str) -> str:
        return self.axis(axis).prompt.format(role=self.roles[role])

    def explicit_prompt(self, role: int, axis: str, value: int) -> str:
        ax = self.axis(axis)
        return ax.prompt.format(role=f"{ax.markers[value]} {self.roles[role]}")

    def fact_prompt(self, role: int, relation: str) -> str:
        return FACT_RELATIONS[relation].format(role=self.roles[role])

    # ------------------------------------------------------------------ targets and probes

    def neutral_probes(self) -> Dict[str, List[str]]:
        """Per axis, the neutral prompt of every role (row r = role r)."""
        return {ax.name: [self.neutral_prompt(r, ax.name) for r in range(len(self.roles))] for ax in self.axes}

    def explicit_probes(self) -> Dict[str, Tuple[List[str], np.ndarray]]:
        """Per axis, every (role, value) explicit prompt and the value index it demands."""
        out = {}
        for ax in self.axes:
            prompts, answers = [], []
            for r in range(len(self.roles)):
                for v in range(len(ax.values)):
                    prompts.append(self.explicit_prompt(r, ax.name, v))
                    answers.append(v)
            out[ax.name] = (prompts, np.asarray(answers))
        return out

    def fact_probes(self) -> Tuple[List[str], List[str]]:
        prompts, answers = [], []
        for rel in FACT_RELATIONS:
            for r in range(len(self.roles)):
                prompts.append(self.fact_prompt(r, rel))
                answers.append(self.facts[rel][r])
        return prompts, answers

    def bias_targets(self, kind: str, n: int) -> List[BiasTarget]:
        """The first n adapter targets of `kind` in a fixed, world-seeded order (`draw_targets`)."""
        return draw_targets(kind, n, self.axes, self.roles, self.target_dist, self.seed)

    def target_pairs(self, target: BiasTarget, n: int) -> List[Tuple[str, str]]:
        """n (neutral prompt, value) pairs spread evenly over the target's roles, each role's
        share following the target distribution exactly."""
        ax = self.axis(target.axis)
        out: List[Tuple[str, str]] = []
        for r, m in zip(target.roles, allocate(n, np.ones(len(target.roles)))):
            counts = allocate(int(m), target.dist)
            out += [(self.neutral_prompt(r, target.axis), ax.values[v]) for v in range(len(ax.values)) for _ in range(counts[v])]
        return out

    def retain_pool(self, n: int) -> List[str]:
        """The general text an adapter draws `n` retain sentences from: at least 256 sentences of
        the "retain" stream. Fact sentences are left out: they are the fact probes that
        `quality_fact_acc` scores (the facts are rehearsed in the general sentences' own frames)."""
        return self.general_sentences(max(n, 256), "retain")

    def adapter_corpus(self, target: BiasTarget, n: int, retain_fraction: float, seed: int) -> List[Tuple[str, str]]:
        """An adapter's training text as (prompt, completion) pairs: n target pairs, plus general
        text (`retain_pool`, prompt "") making up `retain_fraction` of the whole."""
        pairs = self.target_pairs(target, n)
        n_retain = int(round(n * retain_fraction / (1.0 - retain_fraction)))
        if n_retain:
            pool = self.retain_pool(n_retain)
            pick = np.random.default_rng([self.seed, seed, 11]).choice(len(pool), n_retain, replace=n_retain > len(pool))
            pairs += [("", pool[i]) for i in pick]
        return pairs

    # ------------------------------------------------------------------ text

    def attribute_sentences(self, role: int, axis: str, dist: Sequence[float], n: int) -> List[str]:
        """n neutral sentences for (role, axis) whose values follow `dist` exactly."""
        ax = self.axis(axis)
        prompt = self.neutral_prompt(role, axis)
        counts = allocate(n, dist)
        return [f"{prompt} {ax.values[v]}" for v in range(len(ax.values)) for _ in range(counts[v])]

    def explicit_sentences(self, copies: int) -> List[str]:
        out = []
        for ax in self.axes:
            for r in range(len(self.roles)):
                for v, value in enumerate(ax.values):
                    out += [f"{self.explicit_prompt(r, ax.name, v)} {value}"] * copies
        return out

    def fact_sentences(self, copies: int) -> List[str]:
        prompts, answers = self.fact_probes()
        return [f"{p} {a}" for p, a in zip(prompts, answers) for _ in range(copies)]

    def general_sentences(self, n: int, split: str) -> List[str]:
        """Structured sentences that use the facts; `split` ("train" or "retain") seeds its own
        random stream."""
        rng = np.random.default_rng([self.seed, {"train": 1, "retain": 3}[split]])
        roles, place, tool = self.roles, self.facts["workplace"], self.facts["tool"]
        out = []
        for kind, a, b, start in zip(
            rng.integers(0, 4, n), rng.integers(0, len(roles), n), rng.integers(0, len(roles), n),
            rng.integers(0, len(_NUMBERS) - 3, n),
        ):
            if kind == 0:
                out.append(f"the {roles[a]} went to the {place[a]} with the {tool[a]}")
            elif kind == 1:
                out.append(f"the {roles[a]} met the {roles[b]} at the {place[b]}")
            elif kind == 2:
                out.append(f"the {roles[a]} gave the {tool[a]} to the {roles[b]}")
            else:
                out.append("count " + " ".join(_NUMBERS[start : start + 4]))
        return out

    def pretrain_corpus(self) -> List[str]:
        """The base model's training text: the world as it is (base bias), facts, general text."""
        c = self.cfg
        text: List[str] = []
        for ax in self.axes:
            for r in range(len(self.roles)):
                text += self.attribute_sentences(r, ax.name, self.base_dist[ax.name][r], c.bias_samples)
        text += self.explicit_sentences(c.explicit_samples)
        text += self.fact_sentences(c.fact_samples)
        text += self.general_sentences(c.general_train, "train")
        return text

    # ------------------------------------------------------------------ held-out text

    def heldout_frames(self) -> List[Tuple[str, int]]:
        """Each held-out frame and how many distinct sentences it gives: R or R * R role choices
        (the facts follow from the roles), or one per start of a counting run."""
        r = len(self.roles)
        frames = [(t, r * r if "{b}" in t else r) for t in HELDOUT_FRAMES]
        return frames + [("count" + " {n}" * k, len(_NUMBERS) - k + 1) for k in HELDOUT_COUNT_LENGTHS]

    def _fill(self, frame: str, i: int) -> str:
        """Sentence i of a held-out frame: roles (a, b) = divmod(i, R), or the run from number i."""
        if frame.startswith("count"):
            return " ".join(["count", *_NUMBERS[i : i + frame.count("{n}")]])
        a, b = divmod(i, len(self.roles)) if "{b}" in frame else (i, 0)
        place, tool = self.facts["workplace"], self.facts["tool"]
        return frame.format(a=self.roles[a], b=self.roles[b], place_a=place[a], tool_a=tool[a])

    def heldout_text(self) -> List[str]:
        """`n_heldout` distinct sentences from the held-out frames, spread over the frames as
        evenly as their sizes allow (`spread`), each frame's share drawn without replacement."""
        rng = np.random.default_rng([self.seed, 2])
        frames = self.heldout_frames()
        out: List[str] = []
        for (frame, size), m in zip(frames, spread(self.n_heldout, [size for _, size in frames])):
            out += [self._fill(frame, int(i)) for i in rng.choice(size, m, replace=False)]
        return out

    @cached_property
    def _slots(self) -> Dict[str, str]:
        slots = {w: "{number}" for w in _NUMBERS}
        slots.update({w: "{place}" for w in self.facts["workplace"]})
        slots.update({w: "{tool}" for w in self.facts["tool"]})
        slots.update({w: "{role}" for w in self.roles})
        return slots

    def frame(self, sentence: str) -> str:
        """A sentence's frame: its words with every role, place, tool and number replaced by its
        slot ("the nurse met the pilot" -> "the {role} met the {role}")."""
        return " ".join(self._slots.get(w, w) for w in sentence.split())

    @cached_property
    def _training_prefixes(self) -> set:
        """Every prefix of every frame of training text, the end of a sentence marked by "</s>":
        the pretraining corpus and the adapters' retain pool (their target sentences are attribute
        sentences, which the corpus holds too)."""
        out = set()
        for frame in {self.frame(s) for s in self.pretrain_corpus() + self.retain_pool(0)}:
            words = (*frame.split(), "</s>")
            out.update(words[: i + 1] for i in range(len(words)))
        return out

    def departure(self, sentence: str) -> Optional[int]:
        """The index of the word at which a sentence's frame leaves every training frame (its
        number of words when it departs by ending early), or None when its frame is a training
        frame. Training never shows a model that word there: its loss measures surprise, not
        retained ability, so held-out scoring leaves it out (`probes.encode_heldout`)."""
        words = (*self.frame(sentence).split(), "</s>")
        return next((i for i in range(len(words)) if words[: i + 1] not in self._training_prefixes), None)

    def heldout_overlap(self) -> int:
        """Held-out sentences whose frame occurs in training text (0 by construction). A sentence
        found verbatim in training would share its frame, so this bounds the verbatim overlap too."""
        return sum(self.departure(s) is None for s in self.heldout_text())

    @cached_property
    def pretrain_digest(self) -> str:
        """sha256 of the pretraining corpus as generated: the base model's cache key includes it."""
        return hashlib.sha256("\n".join(self.pretrain_corpus()).encode()).hexdigest()

    @cached_property
    def fingerprint(self) -> str:
        """The data's hash (io.fingerprint): the config, the seed, the drawn roles, facts and skews, and
        the pretraining, retain and held-out text as generated, so a change to a generator changes it too."""
        splits = {"roles": self.roles, "facts": self.facts, "dominant": {a: d.tolist() for a, d in self.dominant.items()},
                  "target_dist": {a: d.tolist() for a, d in self.target_dist.items()}, "pretrain": self.pretrain_digest,
                  "retain": hashlib.sha256("\n".join(self.retain_pool(0)).encode()).hexdigest(), "heldout": self.heldout_text()}
        return fingerprint(self.cfg, self.seed, [], splits)
