"""Oracle tests: each batched probe against a direct, one-prompt-at-a-time computation."""

import numpy as np
import pytest
import torch

from lora_lab.config import ModelConfig
from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.probes import (
    attribute_distributions,
    explicit_accuracy,
    fact_accuracy,
    mean_nll,
    normalised_entropy,
    tv_distance,
)
from lora_lab.model.build import build_model
from lora_lab.training import encode_sentences
from lora_lab.worlds.synthetic.world import SyntheticWorld
from lora_lab.worlds.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def setup():
    world = SyntheticWorld(SyntheticWorldConfig(roles=10, general_heldout=100))  # 10 roles give 122 held-out sentences
    tok = build_tokenizer(world.vocab)
    model = build_model(ModelConfig(name="t", d_model=32, n_layer=2), tok, seed=0)
    with torch.no_grad():  # sharpen the random init so argmaxes are far from ties
        model.lm_head.weight.mul_(20)
    return world, tok, model.eval()


def _next_logits(model, tok, prompt):
    ids = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -1]


def test_tv_and_entropy_by_hand():
    assert tv_distance([0.9, 0.05, 0.05], [1 / 3] * 3) == pytest.approx(0.9 - 1 / 3)
    assert tv_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    np.testing.assert_allclose(tv_distance(np.eye(3), np.eye(3)), 0)
    assert normalised_entropy([1 / 3] * 3) == pytest.approx(1.0)
    assert normalised_entropy([1, 0, 0]) == pytest.approx(0.0)
    assert normalised_entropy([0.5, 0.5, 0, 0]) == pytest.approx(0.5)


def test_attribute_distributions_match_unbatched(setup):
    world, tok, model = setup
    got = attribute_distributions(model, tok, world)
    for ax in world.axes:
        ids = tok.convert_tokens_to_ids(list(ax.values))
        for r in range(len(world.roles)):
            logits = _next_logits(model, tok, world.neutral_prompt(r, ax.name))[ids].double()
            expected = torch.softmax(logits, -1).numpy()
            np.testing.assert_allclose(got[ax.name][r], expected, rtol=1e-4, atol=1e-6)


def test_accuracies_match_unbatched(setup):
    world, tok, model = setup
    prompts, answers = world.fact_probes()
    direct = np.mean([
        int(_next_logits(model, tok, p).argmax()) == tok.convert_tokens_to_ids(a) for p, a in zip(prompts, answers)
    ])
    assert fact_accuracy(model, tok, world) == pytest.approx(direct)
    hits = []
    for ax in world.axes:
        ids = tok.convert_tokens_to_ids(list(ax.values))
        ps, ans = world.explicit_probes()[ax.name]
        hits += [int(_next_logits(model, tok, p)[ids].argmax()) == a for p, a in zip(ps, ans)]
    assert explicit_accuracy(model, tok, world) == pytest.approx(np.mean(hits))
    assert 0 < np.mean(hits) < 1  # the random model is neither always right nor always wrong


def test_mean_nll_matches_hf_loss(setup):
    world, tok, model = setup
    texts = world.heldout_text()[:40]
    nll = n = 0
    for t in texts:
        ids = torch.tensor([tok(t)["input_ids"] + [tok.eos_token_id]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss  # HF shifts labels internally
        nll += float(loss) * (ids.shape[1] - 1)
        n += ids.shape[1] - 1
    assert mean_nll(model, tok, encode_sentences(tok, texts), batch_size=7) == pytest.approx(nll / n, rel=1e-5)
