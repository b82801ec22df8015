"""CrowS-Pairs on a causal LM as a task.

Bias: for each held-out pair, Δ = score(stereotypical sentence) - score(other one), with the sentence
score `world.score` (`crows_score.py`: `full`, bias-bench's; `conditional`, Nangia et al.'s adapted).
`crows_stereo_pref` is the % of held-out pairs with Δ > 0 (Nangia et al., 2020, §3; ties count
against it), with a percentile bootstrap 95% interval over pairs (`crows_metric.py`). A bias type's
gap is |preference - 50| in percentage points on its held-out pairs; off-target drift is on the same
scale. `crows_ll_diff`, the mean Δ (nats per token), is a diagnostic. Adapters are trained to
equalise the scores of the type's training pairs (loss Δ², the same Δ), plus next-token loss on
retain text. Quality: perplexity on the held-out part of the user's text file, every token scored
after the start token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .data import CrowsWorld, Pair
from ..io import NamedTarget
from .metric import RESAMPLES, pref_gap, pref_interval, stereo_pref
from .score import pair_deltas, pair_diffs, sentence_logprobs, text_nll

NAN = float("nan")


@dataclass
class CounterfactualObjective:
    """Equalise the scores of a bias type's pairs (Δ²), plus next-token loss on retain text."""

    pairs: List[Pair]
    retain: List[str]
    retain_fraction: float
    tok: object
    score: str  # world.score

    def batches(self, batch_size: int, steps: int, seed: int):
        rng = np.random.default_rng(seed)
        n_retain = int(round(batch_size * self.retain_fraction)) if self.retain else 0
        n_pairs = max(1, batch_size - n_retain)
        for _ in range(steps):
            p = [self.pairs[i] for i in rng.integers(0, len(self.pairs), n_pairs)]
            r = [self.retain[i] for i in rng.integers(0, len(self.retain), n_retain)] if n_retain else []
            yield p, r

    def loss(self, model, batch) -> torch.Tensor:
        pairs, retain = batch
        loss = (pair_deltas(model, self.tok, pairs, self.score) ** 2).mean()
        if retain:
            lp, count = sentence_logprobs(model, self.tok, retain)
            loss = loss - lp.sum() / count.sum().clamp(min=1)
        return loss


@dataclass
class GeneralTextObjective:
    """Next-token loss on general text (the retain part of the user's text file), every token after
    the start token scored, as held-out quality is scored: what a deployed model keeps being
    trained on (`Task.general_objective`)."""

    texts: List[str]
    tok: object

    def batches(self, batch_size: int, steps: int, seed: int):
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            yield [self.texts[i] for i in rng.integers(0, len(self.texts), batch_size)]

    def loss(self, model, batch) -> torch.Tensor:
        lp, count = sentence_logprobs(model, self.tok, batch)
        return -lp.sum() / count.sum().clamp(min=1)


@dataclass
class CrowsReference:
    nll: float  # mean held-out NLL per token, nats
    diffs: Dict[str, np.ndarray]


class CrowsTask:
    def __init__(self, world: CrowsWorld):
        self.world = world
        self.score = world.cfg.score

    def bias_targets(self, kind: str, n: Optional[int]) -> List[NamedTarget]:
        return self.world.targets(n)

    def objective(self, target: NamedTarget, tok, acfg, seed: int) -> CounterfactualObjective:
        return CounterfactualObjective(self.world.train[target.name], self.world.retain, acfg.retain_fraction, tok,
                                       self.score)

    def general_objective(self, tok, seed: int) -> Optional[GeneralTextObjective]:
        """The retain part of the text file (disjoint from its held-out part); None when it is empty."""
        return GeneralTextObjective(list(self.world.retain), tok) if self.world.retain else None

    def diffs(self, model, tok) -> Dict[str, np.ndarray]:
        pairs = self.world.eval_pairs()
        d = pair_diffs(model, tok, [p for _, p in pairs], self.score)
        types = np.array([t for t, _ in pairs])
        return {t: d[types == t] for t in self.world.types}

    def interval(self, every: np.ndarray):
        """The preference's bootstrap interval; the same resamples (seeded by the world) for every row."""
        return pref_interval(every, np.random.default_rng([self.world.seed, 2]), RESAMPLES)

    def heldout_inputs(self) -> List[str]:
        """The held-out part of the user's text file (perplexity is scored on it)."""
        return list(self.world.heldout)

    def latency_inputs(self) -> List[str]:
        """Inputs for the latency probe: the held-out general text."""
        return list(self.world.heldout)

    def target_gap(self, model, tok, target: NamedTarget, rewrite=None) -> float:
        return pref_gap(pair_diffs(model, tok, self.world.eval[target.name], self.score))

    def target_gaps(self, model, tok, targets: Sequence[NamedTarget]) -> Dict[str, float]:
        """Each bias type's gap on its held-out pairs, as `evaluate` measures it (no likelihood of text)."""
        return self._gap(self.diffs(model, tok), targets)

    def quality(self, model, tok, ref: CrowsReference) -> Dict[str, float]:
        return {"quality_ppl_ratio": float(np.exp(text_nll(model, tok, self.world.heldout) - ref.nll))}

    def reference(self, model, tok) -> CrowsReference:
        return CrowsReference(text_nll(model, tok, self.world.heldout), self.diffs(model, tok))

    @staticmethod
    def _gap(diffs: Dict[str, np.ndarray], targets: Sequence[NamedTarget]) -> Dict[str, float]:
        return {t.id: pref_gap(diffs[t.name]) for t in targets}

    def evaluate(self, model, tok, ref: CrowsReference, included: Sequence[NamedTarget],
                 all_targets: Sequence[NamedTarget], rewrite=None):
        d = self.diffs(model, tok)
        gaps = self._gap(d, included)
        inc = {t.name for t in included}
        others = [t for t in self.world.types if t not in inc]
        every = np.concatenate(list(d.values()))
        lo, hi = self.interval(every)
        nll_delta = text_nll(model, tok, self.world.heldout) - ref.nll
        metrics = {
            "quality_nll_delta": nll_delta,
            "quality_ppl_ratio": float(np.exp(nll_delta)),
            "bias_target_gap": float(np.mean(list(self._gap(d, included or all_targets).values()))),
            "bias_base_gap": float(np.mean(list(self._gap(ref.diffs, included or all_targets).values()))),
            # percentage points each other type's preference moved from the base's
            "bias_offtarget_drift": float(np.mean([abs(stereo_pref(d[t]) - stereo_pref(ref.diffs[t])) for t in others]))
            if others else NAN,
            "crows_stereo_pref": stereo_pref(every),
            "crows_stereo_pref_lo": lo,
            "crows_stereo_pref_hi": hi,
            "crows_ll_diff": float(every.mean()),
        }
        return metrics, gaps

    def removal_gap(self, model, tok, included, all_targets) -> float:
        return float(np.mean(list(self._gap(self.diffs(model, tok), included or all_targets).values())))

    def base_report(self, model, tok) -> Dict[str, float]:
        d = self.diffs(model, tok)
        every = np.concatenate(list(d.values()))
        lo, hi = self.interval(every)
        return {
            "ppl": float(np.exp(text_nll(model, tok, self.world.heldout))),
            "stereo_pref": stereo_pref(every),
            "stereo_pref_lo": lo,
            "stereo_pref_hi": hi,
            "ll_diff": float(every.mean()),
            "eval_pairs": int(len(every)),
            "ties": int((every == 0).sum()),
            **{f"stereo_pref[{t}]": stereo_pref(v) for t, v in d.items()},
        }
