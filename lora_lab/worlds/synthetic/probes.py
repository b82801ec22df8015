"""Batched probes: next-word distributions on prompts, accuracy, held-out loss.

Prompts are right-padded; the next-word distribution is read at each row's last real token,
so absolute position embeddings see the same positions as in training.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ...training import Encoded, encode_sentences
from .world import BiasTarget, SyntheticWorld


def tv_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total-variation distance between distributions along the last axis: 0.5 * sum |p - q|."""
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(-1)


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy along the last axis divided by log(#values): 0 = deterministic, 1 = uniform."""
    p = np.asarray(p, dtype=np.float64)
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)
    return h / np.log(p.shape[-1])


@torch.no_grad()
def next_word_logprobs(model, tokenizer, prompts: Sequence[str], batch_size: int = 1024) -> torch.Tensor:
    """[n, vocab] log-probabilities of the word that follows each prompt."""
    model.eval()
    out: List[torch.Tensor] = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(list(prompts[i : i + batch_size]), padding=True, return_tensors="pt").to(model.device)
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        last = enc["attention_mask"].sum(1) - 1
        out.append(torch.log_softmax(logits[torch.arange(len(last)), last].float(), -1).cpu())
    return torch.cat(out)


def _value_ids(tokenizer, words: Sequence[str]) -> torch.Tensor:
    return torch.tensor(tokenizer.convert_tokens_to_ids(list(words)))


def value_probes(model, tokenizer, world: SyntheticWorld, axis: str, roles: Sequence[int],
                 mixture: Optional[Mapping] = None) -> Tuple[np.ndarray, np.ndarray]:
    """For each role, the next-word distribution on its neutral prompt restricted to the axis's
    values and renormalised ([len(roles), values]), and the probability mass the full distribution
    puts on those values before renormalising ([len(roles)]: near 1 for a model that answers with
    an attribute, near 0 for one that has collapsed onto other words). With a `mixture`
    ((role, axis) -> [(prompt, weight)], e.g. a prompt rewriter's expectation) each row is the
    weighted mixture over the rewritten prompts."""
    ax = world.axis(axis)
    plan = [(mixture or {}).get((r, axis)) or [(world.neutral_prompt(r, axis), 1.0)] for r in roles]
    flat = [p for rows in plan for p, _ in rows]
    lp = next_word_logprobs(model, tokenizer, flat)[:, _value_ids(tokenizer, ax.values)].double()
    probs = torch.softmax(lp, -1).numpy()
    mass = torch.logsumexp(lp, -1).exp().numpy()
    out, masses, i = np.zeros((len(roles), len(ax.values))), np.zeros(len(roles)), 0
    for j, rows in enumerate(plan):
        for _, w in rows:
            out[j] += w * probs[i]
            masses[j] += w * mass[i]
            i += 1
    return out, masses


def value_distributions(model, tokenizer, world: SyntheticWorld, axis: str, roles: Sequence[int],
                        mixture: Optional[Mapping] = None) -> np.ndarray:
    """[len(roles), values]: the renormalised distributions of `value_probes`."""
    return value_probes(model, tokenizer, world, axis, roles, mixture)[0]


def attribute_probes(model, tokenizer, world: SyntheticWorld,
                     mixture: Optional[Mapping] = None) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Per axis, `value_probes` for every role: (distributions [roles, values], masses [roles])."""
    roles = range(len(world.roles))
    probes = {ax.name: value_probes(model, tokenizer, world, ax.name, roles, mixture) for ax in world.axes}
    return {a: d for a, (d, _) in probes.items()}, {a: m for a, (_, m) in probes.items()}


def attribute_distributions(model, tokenizer, world: SyntheticWorld, mixture: Optional[Mapping] = None) -> Dict[str, np.ndarray]:
    """Per axis, [roles, values]: `value_distributions` for every role."""
    return attribute_probes(model, tokenizer, world, mixture)[0]


def target_gap(model, tokenizer, world: SyntheticWorld, target: BiasTarget, mixture: Optional[Mapping] = None) -> float:
    """Mean TV distance to the target distribution over the target's roles."""
    d = value_distributions(model, tokenizer, world, target.axis, target.roles, mixture)
    return float(tv_distance(d, np.asarray(target.dist)).mean())


def explicit_probes(model, tokenizer, world: SyntheticWorld) -> Tuple[float, np.ndarray]:
    """Share of explicit prompts ("the male nurse said that") whose most likely value is the
    one the marker demands (argmax among the axis's values), and each prompt's probability mass
    on the axis's values (as in `value_probes`)."""
    probes = world.explicit_probes()
    correct = total = 0
    masses = []
    for ax in world.axes:
        prompts, answers = probes[ax.name]
        lp = next_word_logprobs(model, tokenizer, prompts)[:, _value_ids(tokenizer, ax.values)].double()
        correct += int((lp.argmax(-1).numpy() == answers).sum())
        total += len(answers)
        masses.append(torch.logsumexp(lp, -1).exp().numpy())
    return correct / total, np.concatenate(masses)


def explicit_accuracy(model, tokenizer, world: SyntheticWorld) -> float:
    """The accuracy of `explicit_probes`."""
    return explicit_probes(model, tokenizer, world)[0]


def fact_accuracy(model, tokenizer, world: SyntheticWorld) -> float:
    """Share of fact prompts ("the nurse works at the") whose most likely next word (over the
    whole vocabulary) is the fact."""
    prompts, answers = world.fact_probes()
    pred = next_word_logprobs(model, tokenizer, prompts).argmax(-1)
    return float((pred == _value_ids(tokenizer, answers)).float().mean())


def encode_heldout(tokenizer, world: SyntheticWorld) -> Encoded:
    """The world's held-out text, scored as <bos> words <eos> except each sentence's departure
    word (`SyntheticWorld.departure`): a word training never put there, whose loss a damaged,
    flatter model lowers, so scoring it would credit damage as quality."""
    texts = world.heldout_text()
    data = encode_sentences(tokenizer, texts)
    for i, s in enumerate(texts):
        data.scored[i, world.departure(s) + 1] = False  # word j sits at position j + 1, after <bos>
    return data


@torch.no_grad()
def mean_nll(model, tokenizer, data: Encoded, batch_size: int = 1024) -> float:
    """Mean negative log-likelihood per predicted token (nats) of encoded sentences (encode once,
    score many times: the held-out text is scored at every composition)."""
    model.eval()
    nll, count = 0.0, 0
    for i in range(0, len(data), batch_size):
        ids = data.ids[i : i + batch_size].to(model.device)
        mask = ids != tokenizer.pad_token_id
        logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1].float()
        target = ids[:, 1:]
        tok_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        keep = data.scored[i : i + batch_size, 1:].to(model.device)
        nll += float(tok_nll[keep].double().sum())
        count += int(keep.sum())
    return nll / count
