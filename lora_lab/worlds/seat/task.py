"""SEAT on a sentence encoder as a task.

Embeddings are mean-pooled last hidden states (all-MiniLM-L6-v2's pooling). Each test is measured
on its held-out terms' sentences (`world.seat`): effect size d, one-sided permutation p-value and
noise floor (`world.weat`). A test's gap is its effect size beyond the noise floor,
max(|d| - floor, 0): 0 when |d| is no larger than what it is with random target labels. An
adapter is trained to shrink d² on the test's training terms while keeping the embeddings of
general sentences where the base put them (1 - cosine). Quality: Spearman correlation between the
base's and the adapted model's pairwise cosine similarities on held-out general sentences (1 = the
similarity structure is preserved).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from ..io import NamedTarget
from .data import SETS, SeatWorld
from .weat import weat

NAN = float("nan")
ALPHA = 0.05  # a test counts as significant (`seat_significant`) when its p-value is below this


def embed(model, tok, sentences: Sequence[str], grad: bool = False, batch_size: int = 128, progress: bool = False) -> torch.Tensor:
    """[n, d] mean-pooled last hidden states (float32, on the model's device)."""
    out = []
    with torch.set_grad_enabled(grad):
        for i in tqdm(range(0, len(sentences), batch_size), desc="embed", unit="batch", disable=not progress):
            enc = tok(list(sentences[i : i + batch_size]), padding=True, truncation=True, return_tensors="pt").to(model.device)
            h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state.float()
            m = enc["attention_mask"][..., None].float()
            out.append((h * m).sum(1) / m.sum(1))
    return torch.cat(out)


def effect_size_torch(x, y, a, b) -> torch.Tensor:
    """Differentiable WEAT effect size (the same formula as d in world.weat.weat)."""
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


@dataclass(frozen=True)
class SeatStat:
    """One test measured on one model's embeddings of its held-out sentences."""

    effect_size: float  # d
    p_value: float  # one-sided
    noise_floor: float  # mean |d| over the permutation test's re-partitions

    @property
    def gap(self) -> float:
        """|d| beyond the noise floor (0 = no larger than with random target labels)."""
        return max(abs(self.effect_size) - self.noise_floor, 0.0)


@dataclass
class SeatReference:
    stats: Dict[str, SeatStat]  # the base's, per test
    sims: np.ndarray  # base pairwise cosine similarities of held-out general sentences (upper triangle)


class SeatTask:
    def __init__(self, world: SeatWorld):
        self.world = world

    def bias_targets(self, kind: str, n: Optional[int]) -> List[NamedTarget]:
        return self.world.targets(n)

    def objective(self, target: NamedTarget, tok, acfg, seed: int) -> SeatObjective:
        return SeatObjective(self.world.train[target.name], self.world.retain, acfg.retain_fraction, tok)

    def general_objective(self, tok, seed: int) -> None:
        """None: a sentence encoder has no language-model objective to keep training it on, so
        removal after use is not measured on SEAT (its columns are NaN)."""
        return None

    def stats(self, model, tok, tests: Optional[Sequence[str]] = None) -> Dict[str, SeatStat]:
        """Each test on the model's embeddings of its held-out sentences; every distinct sentence is
        embedded once (the attribute sets of several tests are often the same). The permutation
        draws are seeded by the world, so every model is tested on the same re-partitions."""
        tests = list(tests or sorted(self.world.tests))
        ev = self.world.eval
        distinct = list(dict.fromkeys(s for t in tests for k in SETS for s in ev[t][k]))
        e = dict(zip(distinct, embed(model, tok, distinct).cpu().double().numpy()))
        out = {}
        for t in tests:
            x, y, a, b = (np.stack([e[s] for s in ev[t][k]]) for k in SETS)
            out[t] = SeatStat(*weat(x, y, a, b, self.world.cfg.permutations, self.world.seed))
        return out

    def _sims(self, model, tok) -> np.ndarray:
        e = embed(model, tok, self.world.heldout).cpu().double().numpy()
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        return (e @ e.T)[np.triu_indices(len(e), 1)]

    def heldout_inputs(self) -> List[str]:
        """The held-out general sentences (the similarity check runs on them)."""
        return list(self.world.heldout)

    def latency_inputs(self) -> List[str]:
        """Inputs for the latency probe: the held-out general text."""
        return list(self.world.heldout)

    def target_gap(self, model, tok, target: NamedTarget, rewrite=None) -> float:
        return self.stats(model, tok, [target.name])[target.name].gap

    def target_gaps(self, model, tok, targets: Sequence[NamedTarget]) -> Dict[str, float]:
        """Each test's gap beyond its noise floor, from the embeddings of these tests' sentences only."""
        st = self.stats(model, tok, [t.name for t in targets])
        return {t.id: st[t.name].gap for t in targets}

    def quality(self, model, tok, ref: SeatReference) -> Dict[str, float]:
        return {"seat_similarity_spearman": float(spearmanr(ref.sims, self._sims(model, tok)).statistic)}

    def reference(self, model, tok) -> SeatReference:
        return SeatReference(self.stats(model, tok), self._sims(model, tok))

    def evaluate(self, model, tok, ref: SeatReference, included: Sequence[NamedTarget], all_targets: Sequence[NamedTarget],
                 rewrite=None):
        st = self.stats(model, tok)
        inc = {t.name for t in included}
        others = [t for t in st if t not in inc]
        measured = included or all_targets
        # per included test: its gap, plus the statistics behind it (columns of target_gaps.parquet)
        gaps = {t.id: {"gap": st[t.name].gap, "effect_size": st[t.name].effect_size, "p_value": st[t.name].p_value,
                       "noise_floor": st[t.name].noise_floor, "base_effect_size": ref.stats[t.name].effect_size}
                for t in included}
        metrics = {
            "bias_target_gap": float(np.mean([st[t.name].gap for t in measured])),
            "bias_base_gap": float(np.mean([ref.stats[t.name].gap for t in measured])),
            "bias_offtarget_drift": float(np.mean([abs(st[t].effect_size - ref.stats[t].effect_size) for t in others]))
            if others else NAN,
            "seat_effect_size": float(np.mean([abs(s.effect_size) for s in st.values()])),
            "seat_noise_floor": float(np.mean([s.noise_floor for s in st.values()])),
            "seat_significant": float(sum(s.p_value < ALPHA for s in st.values())),
            "seat_similarity_spearman": float(spearmanr(ref.sims, self._sims(model, tok)).statistic),
        }
        return metrics, gaps

    def removal_gap(self, model, tok, included, all_targets) -> float:
        st = self.stats(model, tok, [t.name for t in (included or all_targets)])
        return float(np.mean([s.gap for s in st.values()]))

    def base_report(self, model, tok) -> Dict[str, object]:
        st = self.stats(model, tok)
        rep: Dict[str, object] = {}
        for t, s in st.items():
            rep[f"effect_size[{t}]"] = s.effect_size
            rep[f"p_value[{t}]"] = s.p_value
            rep[f"noise_floor[{t}]"] = s.noise_floor
            rep[f"eval_terms[{t}]"] = self.world.eval_terms[t]  # set -> the held-out terms
            rep[f"eval_sentences[{t}]"] = {k: len(v) for k, v in self.world.eval[t].items()}
        rep["mean_abs_effect_size"] = float(np.mean([abs(s.effect_size) for s in st.values()]))
        rep["mean_noise_floor"] = float(np.mean([s.noise_floor for s in st.values()]))
        return rep
