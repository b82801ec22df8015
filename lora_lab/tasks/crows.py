"""CrowS-Pairs on a causal LM as a task.

Bias: for each pair, Δ = log p(stereotypical sentence) - log p(anti-stereotypical one), full-sentence
log-likelihoods under the causal LM. Stereotype preference = share of pairs with Δ > 0 (50% = none),
as in Nangia et al. (2020) with likelihood in place of pseudo-likelihood. A bias type's gap is its
mean |Δ| in nats on held-out pairs (0 = the model cannot tell the pair apart). Adapters are trained
to equalise the pair likelihoods (loss Δ²) on the type's training pairs, plus next-token loss on
retain text. Quality: perplexity on the held-out part of the user's text file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..eval.batch import encode, position_limit
from ..world.crows import CrowsWorld, Pair
from ..world.io import NamedTarget

NAN = float("nan")


def sequence_logprobs(model, tok, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per text: sum of log p(token | prefix) over every token after the first, and that count."""
    ids, mask = encode(tok, texts, position_limit(model))
    ids, mask = ids.to(model.device), mask.to(model.device)
    logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
    keep = mask[:, 1:]
    return (lp * keep).sum(1), keep.sum(1)


@torch.no_grad()
def pair_diffs(model, tok, pairs: Sequence[Pair], batch_size: int = 64) -> np.ndarray:
    """Δ = log p(stereo) - log p(anti) per pair."""
    out = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        s, _ = sequence_logprobs(model, tok, [p.stereo for p in chunk])
        a, _ = sequence_logprobs(model, tok, [p.anti for p in chunk])
        out.append((s - a).double().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def text_nll(model, tok, texts: Sequence[str], batch_size: int = 64) -> float:
    """Mean negative log-likelihood per scored token (nats) over `texts`."""
    nll, n = 0.0, 0
    for i in range(0, len(texts), batch_size):
        lp, count = sequence_logprobs(model, tok, texts[i : i + batch_size])
        nll -= float(lp.double().sum())
        n += int(count.sum())
    return nll / max(n, 1)


@dataclass
class CounterfactualObjective:
    """Equalise the likelihoods of a bias type's pairs (Δ²), plus next-token loss on retain text."""

    pairs: List[Pair]
    retain: List[str]
    retain_fraction: float
    tok: object

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
        s, _ = sequence_logprobs(model, self.tok, [p.stereo for p in pairs])
        a, _ = sequence_logprobs(model, self.tok, [p.anti for p in pairs])
        loss = ((s - a) ** 2).mean()
        if retain:
            lp, count = sequence_logprobs(model, self.tok, retain)
            loss = loss - lp.sum() / count.sum().clamp(min=1)
        return loss


@dataclass
class CrowsReference:
    nll: float  # mean held-out NLL per token, nats
    diffs: Dict[str, np.ndarray]


def _pref(d: np.ndarray) -> float:
    return float((d > 0).mean())


class CrowsTask:
    name = "crows"
    extra_metrics = ("crows_stereo_pref", "crows_ll_diff")
    supports_rewrite = False

    def __init__(self, world: CrowsWorld):
        self.world = world

    def bias_targets(self, kind: str, n: Optional[int]) -> List[NamedTarget]:
        return self.world.targets(n)

    def objective(self, target: NamedTarget, tok, acfg, seed: int) -> CounterfactualObjective:
        return CounterfactualObjective(self.world.train[target.name], self.world.retain, acfg.retain_fraction, tok)

    def diffs(self, model, tok) -> Dict[str, np.ndarray]:
        pairs = self.world.eval_pairs()
        d = pair_diffs(model, tok, [p for _, p in pairs])
        types = np.array([t for t, _ in pairs])
        return {t: d[types == t] for t in self.world.types}

    def latency_texts(self) -> List[str]:
        """Inputs for the latency probe: the held-out general text."""
        return list(self.world.heldout)

    def target_gap(self, model, tok, target: NamedTarget, rewrite=None) -> float:
        return float(np.abs(pair_diffs(model, tok, self.world.eval[target.name])).mean())

    def quality(self, model, tok, ref: CrowsReference) -> Dict[str, float]:
        return {"ppl_ratio": float(np.exp(text_nll(model, tok, self.world.heldout) - ref.nll))}

    def reference(self, model, tok) -> CrowsReference:
        return CrowsReference(text_nll(model, tok, self.world.heldout), self.diffs(model, tok))

    @staticmethod
    def _gap(diffs: Dict[str, np.ndarray], targets: Sequence[NamedTarget]) -> Dict[str, float]:
        return {t.id: float(np.abs(diffs[t.name]).mean()) for t in targets}

    def evaluate(self, model, tok, ref: CrowsReference, included: Sequence[NamedTarget],
                 all_targets: Sequence[NamedTarget], rewrite=None):
        d = self.diffs(model, tok)
        gaps = self._gap(d, included)
        inc = {t.name for t in included}
        others = [t for t in self.world.types if t not in inc]
        every = np.concatenate(list(d.values()))
        nll_delta = text_nll(model, tok, self.world.heldout) - ref.nll
        metrics = {
            "quality_nll_delta": nll_delta,
            "quality_ppl_ratio": float(np.exp(nll_delta)),
            "quality_fact_acc": NAN,  # no fact probes in this world
            "bias_target_gap": float(np.mean(list(self._gap(d, included or all_targets).values()))),
            "bias_base_gap": float(np.mean(list(self._gap(ref.diffs, included or all_targets).values()))),
            "bias_offtarget_drift": float(np.mean([abs(_pref(d[t]) - _pref(ref.diffs[t])) for t in others])) if others else NAN,
            "control_explicit_acc": NAN,  # no explicit-attribute prompts in this world
            "diversity_entropy": NAN,
            "axis_mass": NAN,  # no attribute probes
            "crows_stereo_pref": 100.0 * _pref(every),
            "crows_ll_diff": float(every.mean()),
        }
        return metrics, gaps

    def removal_gap(self, model, tok, included, all_targets) -> float:
        return float(np.mean(list(self._gap(self.diffs(model, tok), included or all_targets).values())))

    def base_report(self, model, tok) -> Dict[str, float]:
        d = self.diffs(model, tok)
        every = np.concatenate(list(d.values()))
        return {
            "ppl": float(np.exp(text_nll(model, tok, self.world.heldout))),
            "stereo_pref": 100.0 * _pref(every),
            "ll_diff": float(every.mean()),
            "eval_pairs": int(len(every)),
            **{f"stereo_pref[{t}]": 100.0 * _pref(v) for t, v in d.items()},
        }
