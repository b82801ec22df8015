"""Batched probes: next-word distributions on prompts, accuracy, held-out loss.

Prompts are right-padded; the next-word distribution is read at each row's last real token,
so absolute position embeddings see the same positions as in training.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

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


def variants(texts: Sequence[str], rewrite: Optional[Any] = None
             ) -> Tuple[List[str], np.ndarray, np.ndarray, List[Tuple[int, ...]]]:
    """Each text's rewrites under `rewrite` (the prompt pre-processor's exact expectation,
    `rewrite.Rewrite.variants`), flattened: (texts, their probabilities, the index of the text each
    came from, the word indices of the markers inserted in each). Without a rewrite, every text
    once with weight 1."""
    flat: List[str] = []
    weights: List[float] = []
    owner: List[int] = []
    inserted: List[Tuple[int, ...]] = []
    for i, t in enumerate(texts):
        for v, w, ins in (rewrite.variants(t) if rewrite is not None else [(t, 1.0, ())]):
            flat.append(v)
            weights.append(w)
            owner.append(i)
            inserted.append(ins)
    return flat, np.asarray(weights, dtype=np.float64), np.asarray(owner, dtype=np.int64), inserted


def value_probes(model, tokenizer, world: SyntheticWorld, axis: str, roles: Sequence[int],
                 rewrite: Optional[Any] = None) -> Tuple[np.ndarray, np.ndarray]:
    """For each role, the next-word distribution on its neutral prompt restricted to the axis's
    values and renormalised ([len(roles), values]), and the probability mass the full distribution
    puts on those values before renormalising ([len(roles)]: near 1 for a model that answers with
    an attribute, near 0 for one that has collapsed onto other words). With a `rewrite` (the prompt
    pre-processor's exact expectation) each row is the mixture over the rewritten prompts, each
    weighted by its probability."""
    ax = world.axis(axis)
    flat, weights, owner, _ = variants([world.neutral_prompt(r, axis) for r in roles], rewrite)
    lp = next_word_logprobs(model, tokenizer, flat)[:, _value_ids(tokenizer, ax.values)].double()
    probs = torch.softmax(lp, -1).numpy()
    mass = torch.logsumexp(lp, -1).exp().numpy()
    out, masses = np.zeros((len(roles), len(ax.values))), np.zeros(len(roles))
    np.add.at(out, owner, weights[:, None] * probs)
    np.add.at(masses, owner, weights * mass)
    return out, masses


def value_distributions(model, tokenizer, world: SyntheticWorld, axis: str, roles: Sequence[int],
                        rewrite: Optional[Any] = None) -> np.ndarray:
    """[len(roles), values]: the renormalised distributions of `value_probes`."""
    return value_probes(model, tokenizer, world, axis, roles, rewrite)[0]


def attribute_probes(model, tokenizer, world: SyntheticWorld,
                     rewrite: Optional[Any] = None) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Per axis, `value_probes` for every role: (distributions [roles, values], masses [roles])."""
    roles = range(len(world.roles))
    probes = {ax.name: value_probes(model, tokenizer, world, ax.name, roles, rewrite) for ax in world.axes}
    return {a: d for a, (d, _) in probes.items()}, {a: m for a, (_, m) in probes.items()}


def attribute_distributions(model, tokenizer, world: SyntheticWorld, rewrite: Optional[Any] = None) -> Dict[str, np.ndarray]:
    """Per axis, [roles, values]: `value_distributions` for every role."""
    return attribute_probes(model, tokenizer, world, rewrite)[0]


def target_gap(model, tokenizer, world: SyntheticWorld, target: BiasTarget, rewrite: Optional[Any] = None) -> float:
    """Mean TV distance to the target distribution over the target's roles."""
    d = value_distributions(model, tokenizer, world, target.axis, target.roles, rewrite)
    return float(tv_distance(d, np.asarray(target.dist)).mean())


def _expected(hits: np.ndarray, weights: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """[n]: each original text's probability-weighted mean of `hits` over its variants."""
    out = np.zeros(n)
    np.add.at(out, owner, weights * hits)
    return out


def explicit_probes(model, tokenizer, world: SyntheticWorld, rewrite: Optional[Any] = None) -> Tuple[float, np.ndarray]:
    """Share of explicit prompts ("the male nurse said that") whose most likely value is the
    one the marker demands (argmax among the axis's values), and each prompt's probability mass
    on the axis's values (as in `value_probes`). With a `rewrite`, each prompt's expectation over
    its rewrites (a prompt names its own axis's attribute, so only other axes' markers can go in)."""
    probes = world.explicit_probes()
    correct, total = 0.0, 0
    masses = []
    for ax in world.axes:
        prompts, answers = probes[ax.name]
        flat, weights, owner, _ = variants(prompts, rewrite)
        lp = next_word_logprobs(model, tokenizer, flat)[:, _value_ids(tokenizer, ax.values)].double()
        hits = (lp.argmax(-1).numpy() == answers[owner]).astype(np.float64)
        correct += float(_expected(hits, weights, owner, len(prompts)).sum())
        total += len(answers)
        masses.append(_expected(torch.logsumexp(lp, -1).exp().numpy(), weights, owner, len(prompts)))
    return correct / total, np.concatenate(masses)


def explicit_accuracy(model, tokenizer, world: SyntheticWorld) -> float:
    """The accuracy of `explicit_probes`."""
    return explicit_probes(model, tokenizer, world)[0]


def fact_accuracy(model, tokenizer, world: SyntheticWorld, rewrite: Optional[Any] = None) -> float:
    """Share of fact prompts ("the nurse works at the") whose most likely next word (over the
    whole vocabulary) is the fact. With a `rewrite`, each prompt's expected hit over its rewrites
    ("the female nurse works at the"), weighted by their probabilities."""
    prompts, answers = world.fact_probes()
    flat, weights, owner, _ = variants(prompts, rewrite)
    pred = next_word_logprobs(model, tokenizer, flat).argmax(-1)
    hits = (pred == _value_ids(tokenizer, answers)[owner]).numpy().astype(np.float64)
    return float(torch.tensor(_expected(hits, weights, owner, len(prompts)), dtype=torch.float32).mean())


def encode_heldout(tokenizer, world: SyntheticWorld, rewrite: Optional[Any] = None) -> Tuple[Encoded, np.ndarray]:
    """The world's held-out text, scored as <bos> words <eos> except each sentence's departure
    word (`SyntheticWorld.departure`): a word training never put there, whose loss a damaged,
    flatter model lowers, so scoring it would credit damage as quality. Returns the rows and each
    row's weight (1 each without a rewrite).

    With a `rewrite` (the prompt pre-processor's exact expectation), each sentence is replaced by
    its rewrites, each weighted by its probability. Only the original sentence's tokens are scored:
    an inserted marker is context, not a prediction, so every variant scores as many tokens as the
    sentence it came from and the NLL per token compares with the base's on the text as written."""
    texts = world.heldout_text()
    flat, weights, owner, inserted = variants(texts, rewrite)
    data = encode_sentences(tokenizer, flat)
    for i, (text, ins) in enumerate(zip(flat, inserted)):
        kept = [j for j in range(len(text.split())) if j not in ins]  # the original's words, in the new text
        d = world.departure(texts[owner[i]])
        departure = kept[d] if d < len(kept) else len(kept) + len(ins)  # the word, or <eos> when it ends early
        data.scored[i, departure + 1] = False  # word j sits at position j + 1, after <bos>
        for j in ins:
            data.scored[i, j + 1] = False
    return data, weights


@torch.no_grad()
def mean_nll(model, tokenizer, data: Encoded, weights: Optional[np.ndarray] = None, batch_size: int = 1024) -> float:
    """Mean negative log-likelihood per predicted token (nats) of encoded sentences (encode once,
    score many times: the held-out text is scored at every composition). `weights`: each row's
    weight (a rewrite's probability): the mean is then sum(w * nll) / sum(w * tokens)."""
    model.eval()
    nll, count = 0.0, 0.0
    w_all = torch.ones(len(data), dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    for i in range(0, len(data), batch_size):
        ids = data.ids[i : i + batch_size].to(model.device)
        mask = ids != tokenizer.pad_token_id
        logits = model(input_ids=ids, attention_mask=mask.long()).logits[:, :-1].float()
        target = ids[:, 1:]
        tok_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        keep = data.scored[i : i + batch_size, 1:].to(model.device)
        w = w_all[i : i + batch_size, None].expand(keep.shape).to(model.device)[keep]
        nll += float((tok_nll[keep].double() * w).sum())
        count += float(w.sum())
    return nll / count
