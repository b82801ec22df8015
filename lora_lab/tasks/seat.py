"""SEAT on a sentence encoder as a task.

Embeddings are mean-pooled last hidden states (all-MiniLM-L6-v2's pooling). A test's gap is |d|,
its effect size on held-out sentences. An adapter is trained to shrink d² on the test's training
sentences while keeping the embeddings of general sentences where the base put them (1 - cosine).
Quality: Spearman correlation between the base's and the adapted model's pairwise cosine
similarities on held-out general sentences (1 = the similarity structure is preserved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

from ..world.io import NamedTarget
from ..world.seat import SETS, SeatWorld, effect_size, p_value

NAN = float("nan")


def embed(model, tok, sentences: Sequence[str], grad: bool = False, batch_size: int = 128) -> torch.Tensor:
    """[n, d] mean-pooled last hidden states (float32, on the model's device)."""
    out = []
    with torch.set_grad_enabled(grad):
        for i in range(0, len(sentences), batch_size):
            enc = tok(list(sentences[i : i + batch_size]), padding=True, truncation=True, return_tensors="pt").to(model.device)
            h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state.float()
            m = enc["attention_mask"][..., None].float()
            out.append((h * m).sum(1) / m.sum(1))
    return torch.cat(out)


def effect_size_torch(x, y, a, b) -> torch.Tensor:
    """Differentiable WEAT effect size (the same formula as world.seat.effect_size)."""
    def assoc(w):
        wn, an, bn = (torch.nn.functional.normalize(t, dim=-1) for t in (w, a, b))
        return (wn @ an.T).mean(1) - (wn @ bn.T).mean(1)

    sx, sy = assoc(x), assoc(y)
    return (sx.mean() - sy.mean()) / torch.cat([sx, sy]).std(unbiased=True)


@dataclass
class SeatObjective:
    sets: Dict[str, List[str]]  # the test's training sentences per set
    retain: List[str]
    retain_fraction: float
    tok: object

    def __post_init__(self):
        # Both families start as the identity (LoRA B = 0, steering vectors = 0), so the embeddings
        # seen at the first step are the base's: they are recorded then and kept fixed.
        self._anchor: Optional[torch.Tensor] = None

    def batches(self, batch_size: int, steps: int, seed: int):
        rng = np.random.default_rng(seed)
        per_set = max(2, batch_size // 4)
        n_retain = int(round(batch_size * self.retain_fraction)) if self.retain else 0
        for _ in range(steps):
            sample = {k: [v[i] for i in rng.choice(len(v), min(per_set, len(v)), replace=False)] for k, v in self.sets.items()}
            idx = rng.integers(0, len(self.retain), n_retain) if n_retain else np.zeros(0, dtype=int)
            yield sample, idx

    def loss(self, model, batch) -> torch.Tensor:
        sample, idx = batch
        e = {k: embed(model, self.tok, v, grad=True) for k, v in sample.items()}
        loss = effect_size_torch(e["targ1"], e["targ2"], e["attr1"], e["attr2"]) ** 2
        if len(idx):
            if self._anchor is None:
                self._anchor = embed(model, self.tok, self.retain).detach()
            now = embed(model, self.tok, [self.retain[i] for i in idx], grad=True)
            w = self.retain_fraction / (1.0 - self.retain_fraction)
            loss = loss + w * (1 - torch.nn.functional.cosine_similarity(now, self._anchor[torch.as_tensor(idx)])).mean()
        return loss


@dataclass
class SeatReference:
    effects: Dict[str, float]
    sims: np.ndarray  # base pairwise cosine similarities of held-out general sentences (upper triangle)


class SeatTask:
    name = "seat"
    extra_metrics = ("seat_effect_size", "seat_similarity_spearman")
    supports_rewrite = False

    def __init__(self, world: SeatWorld):
        self.world = world

    def bias_targets(self, kind: str, n: Optional[int]) -> List[NamedTarget]:
        return self.world.targets(n)

    def objective(self, target: NamedTarget, tok, acfg, seed: int) -> SeatObjective:
        return SeatObjective(self.world.train[target.name], self.world.retain, acfg.retain_fraction, tok)

    def _embed_eval(self, model, tok, tests: Sequence[str]) -> Dict[str, Dict[str, np.ndarray]]:
        flat = [(t, k, s) for t in tests for k in SETS for s in self.world.eval[t][k]]
        e = embed(model, tok, [s for _, _, s in flat]).cpu().double().numpy()
        out: Dict[str, Dict[str, list]] = {t: {k: [] for k in SETS} for t in tests}
        for (t, k, _), v in zip(flat, e):
            out[t][k].append(v)
        return {t: {k: np.stack(v) for k, v in ks.items()} for t, ks in out.items()}

    def effects(self, model, tok, tests: Optional[Sequence[str]] = None) -> Dict[str, float]:
        tests = list(tests or sorted(self.world.tests))
        e = self._embed_eval(model, tok, tests)
        return {t: effect_size(e[t]["targ1"], e[t]["targ2"], e[t]["attr1"], e[t]["attr2"]) for t in tests}

    def _sims(self, model, tok) -> np.ndarray:
        e = embed(model, tok, self.world.heldout).cpu().double().numpy()
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        return (e @ e.T)[np.triu_indices(len(e), 1)]

    def latency_texts(self) -> List[str]:
        """Inputs for the latency probe: the held-out general text."""
        return list(self.world.heldout)

    def target_gap(self, model, tok, target: NamedTarget, rewrite=None) -> float:
        return abs(self.effects(model, tok, [target.name])[target.name])

    def quality(self, model, tok, ref: SeatReference) -> Dict[str, float]:
        return {"similarity_spearman": float(spearmanr(ref.sims, self._sims(model, tok)).statistic)}

    def reference(self, model, tok) -> SeatReference:
        return SeatReference(self.effects(model, tok), self._sims(model, tok))

    def evaluate(self, model, tok, ref: SeatReference, included: Sequence[NamedTarget], all_targets: Sequence[NamedTarget],
                 rewrite=None):
        d = self.effects(model, tok)
        inc = {t.name for t in included}
        others = [t for t in d if t not in inc]
        gaps = {t.id: abs(d[t.name]) for t in included}
        metrics = {
            "quality_nll_delta": NAN,  # an encoder has no likelihood
            "quality_ppl_ratio": NAN,
            "quality_fact_acc": NAN,
            "bias_target_gap": float(np.mean([abs(d[t.name]) for t in (included or all_targets)])),
            "bias_base_gap": float(np.mean([abs(ref.effects[t.name]) for t in (included or all_targets)])),
            "bias_offtarget_drift": float(np.mean([abs(d[t] - ref.effects[t]) for t in others])) if others else NAN,
            "control_explicit_acc": NAN,
            "diversity_entropy": NAN,
            "axis_mass": NAN,  # no attribute probes
            "seat_effect_size": float(np.mean(np.abs(list(d.values())))),
            "seat_similarity_spearman": float(spearmanr(ref.sims, self._sims(model, tok)).statistic),
        }
        return metrics, gaps

    def removal_gap(self, model, tok, included, all_targets) -> float:
        d = self.effects(model, tok, [t.name for t in (included or all_targets)])
        return float(np.mean(np.abs(list(d.values()))))

    def base_report(self, model, tok) -> Dict[str, float]:
        e = self._embed_eval(model, tok, sorted(self.world.tests))
        rep: Dict[str, float] = {}
        for t, s in e.items():
            rep[f"effect_size[{t}]"] = effect_size(s["targ1"], s["targ2"], s["attr1"], s["attr2"])
            rep[f"p_value[{t}]"] = p_value(s["targ1"], s["targ2"], s["attr1"], s["attr2"], self.world.cfg.permutations,
                                           self.world.seed)
        rep["mean_abs_effect_size"] = float(np.mean([abs(v) for k, v in rep.items() if k.startswith("effect_size")]))
        return rep
