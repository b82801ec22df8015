"""The synthetic bias world as a task: exact ground truth for every metric."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from . import metrics as M
from .probes import (
    attribute_distributions,
    encode_heldout,
    explicit_accuracy,
    fact_accuracy,
    mean_nll,
    target_gap,
    tv_distance,
)
from .config import DEFAULT_N

SHIFT_TEXTS = 128  # held-out sentences the activation shift is measured on (of up to 500)
from ...training import LMObjective, encode_pairs, encode_sentences
from .world import BiasTarget, SyntheticWorld


class SyntheticTask:
    def __init__(self, world: SyntheticWorld):
        self.world = world

    def bias_targets(self, kind: str, n: Optional[int]) -> List[BiasTarget]:
        return self.world.bias_targets(kind, DEFAULT_N if n is None else n)

    def objective(self, target: BiasTarget, tokenizer, acfg, seed: int) -> LMObjective:
        pairs = self.world.adapter_corpus(target, acfg.samples, acfg.retain_fraction, seed)
        return LMObjective(encode_pairs(tokenizer, pairs), tokenizer.pad_token_id)

    def general_objective(self, tokenizer, seed: int) -> LMObjective:
        """Next-token loss on the retain pool (`SyntheticWorld.retain_pool`): general sentences in
        training frames, no fact probe and no held-out frame among them. `seed` is not needed: the
        pool is fixed by the world (the trainer's batch order is seeded)."""
        return LMObjective(encode_sentences(tokenizer, self.world.retain_pool(0)), tokenizer.pad_token_id)

    def rewrite(self, targets: Sequence[BiasTarget]):
        """The pre-processor's exact expectation for these targets (`rewrite.Rewrite`)."""
        from .rewrite import mixture

        return mixture(self.world, targets)

    def rewriter(self, targets: Sequence[BiasTarget], seed: int = 0):
        """The deployable pre-processor for these targets (samples one rewrite per prompt)."""
        from .rewrite import PromptRewriter

        return PromptRewriter(self.world, targets, seed)

    def heldout_inputs(self) -> List[str]:
        """The held-out sentences perplexity is scored on (frames no training text uses)."""
        return sorted(set(self.world.heldout_text()))[:SHIFT_TEXTS]

    def latency_inputs(self) -> List[str]:
        """Inputs for the latency probe: the neutral prompts, which the pre-processor rewrites."""
        return [p for per_role in zip(*self.world.neutral_probes().values()) for p in per_role]

    def target_gap(self, model, tok, target: BiasTarget, rewrite=None) -> float:
        return target_gap(model, tok, self.world, target, rewrite)

    def target_gaps(self, model, tok, targets: Sequence[BiasTarget]) -> Dict[str, float]:
        """Each target's gap from the neutral attribute probes alone, as `evaluate` measures it."""
        return M.per_target_gaps(attribute_distributions(model, tok, self.world), targets)

    def quality(self, model, tok, ref: M.Reference) -> Dict[str, float]:
        return {"quality_fact_acc": fact_accuracy(model, tok, self.world)}

    def reference(self, model, tok) -> M.Reference:
        return M.reference(model, tok, self.world)

    def evaluate(self, model, tok, ref: M.Reference, included: Sequence[BiasTarget], all_targets: Sequence[BiasTarget],
                 rewrite=None):
        return M.evaluate(model, tok, self.world, ref, included, all_targets, rewrite)

    def removal_gap(self, model, tok, included: Sequence[BiasTarget], all_targets: Sequence[BiasTarget]) -> float:
        return M.target_gap_of(attribute_distributions(model, tok, self.world), included or all_targets)

    def base_report(self, model, tok) -> Dict[str, float]:
        w = self.world
        dists = attribute_distributions(model, tok, w)
        fit = np.concatenate([tv_distance(dists[a.name], w.base_dist[a.name]) for a in w.axes])
        held = w.heldout_text()
        return {
            "fit_tv": float(fit.mean()),
            "fit_tv_max": float(fit.max()),
            "fact_acc": fact_accuracy(model, tok, w),
            "explicit_acc": explicit_accuracy(model, tok, w),
            "ppl": float(np.exp(mean_nll(model, tok, *encode_heldout(tok, w)))),  # on the tokens `reference` scores
            "heldout_sentences": len(set(held)),
            "heldout_overlap": w.heldout_overlap(),  # held-out sentences whose frame occurs in training text
        }
