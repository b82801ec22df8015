"""The prompt pre-processor as deployed: one rule rewrites any text (held-out sentences, fact and
explicit probes, attribute prompts); evaluation scores its exact expectation."""

from collections import Counter

import numpy as np
import pytest
import torch

from lora_lab.config import ModelConfig
from lora_lab.model.build import build_model
from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.probes import encode_heldout, fact_accuracy, mean_nll
from lora_lab.worlds.synthetic.rewrite import PromptRewriter, Rewrite
from lora_lab.worlds.synthetic.world import BiasTarget, SyntheticWorld
from lora_lab.worlds.tokenizer import build_tokenizer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One-prompt forward passes: one thread each (on a busy machine, two threads per tiny pass
    spend their time waiting for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(SyntheticWorldConfig(roles=10, general_heldout=100, targets={"pronoun": [0.6, 0.3, 0.1]}))


def _target(world, role, axis):
    return BiasTarget("rebalance", axis, (role,), tuple(world.target_dist[axis]), world.roles[role])


def test_a_heldout_sentence_that_mentions_a_targeted_role_gets_one_marker_of_its_axis(world):
    role = 3
    rw = Rewrite(world, [_target(world, role, "pronoun")])
    markers = world.axis("pronoun").markers
    name = world.roles[role]
    hit = 0
    for s in world.heldout_text():
        out = rw.variants(s)
        if name not in s.split():
            assert out == [(s, 1.0, ())]  # no targeted role: as written
            continue
        hit += 1
        assert sorted(v.split()[v.split().index(name) - 1] for v, _, _ in out) == sorted(markers)
        for v, w, ins in out:
            words = v.split()
            assert len(words) == len(s.split()) + 1 and len(ins) == 1  # exactly one word more: the marker
            i = words.index(name)  # the first mention of the role
            assert ins == (i - 1,) and words[i - 1] in markers
            assert words[: i - 1] + words[i:] == s.split()  # the rest as written
        assert sum(w for _, w, _ in out) == pytest.approx(1.0)
        assert [w for _, w, _ in out] == pytest.approx([0.6, 0.3, 0.1])
    assert hit > 0


def test_a_text_that_names_an_attribute_of_the_axis_is_left_alone(world):
    rw = Rewrite(world, [_target(world, 0, "pronoun"), _target(world, 0, "genre")])
    explicit = world.explicit_prompt(0, "pronoun", 1)  # "the female <role> said that"
    named = [explicit, world.neutral_prompt(0, "pronoun") + " she"]
    for text in named:  # names a pronoun: only the genre marker goes in, before the role word
        out = rw.variants(text)
        assert len(out) == 3 and all(len(v.split()) == len(text.split()) + 1 for v, _, _ in out)
        assert {v.split()[v.split().index(world.roles[0]) - 1] for v, _, _ in out} == set(world.axis("genre").markers)
    both = world.explicit_prompt(0, "genre", 2) + " she"  # names both axes: left as it is
    assert rw.variants(both) == [(both, 1.0, ())]
    assert PromptRewriter(world, [_target(world, 0, "pronoun")])(explicit) == explicit


def test_the_expectation_is_the_mean_of_sampled_rewrites(world):
    """Two targeted roles in one sentence (9 variants, non-uniform): the variants' probabilities
    against the frequencies of 4,000 draws of the deployable rewriter."""
    a, b = 1, 4
    s = f"the {world.roles[a]} uses the {world.facts['tool'][a]} to the {world.roles[b]}"
    targets = [_target(world, a, "pronoun"), _target(world, b, "pronoun")]
    exact = {v: w for v, w, _ in Rewrite(world, targets).variants(s)}
    assert len(exact) == 9 and sum(exact.values()) == pytest.approx(1.0)
    rw = PromptRewriter(world, targets, seed=0)
    n = 4000
    counts = Counter(rw(s) for _ in range(n))
    assert set(counts) <= set(exact)
    for v, w in exact.items():
        assert abs(counts[v] / n - w) < 0.025, v  # 0.025 is over 3 standard errors at every w here


@pytest.fixture(scope="module")
def model(world):
    tok = build_tokenizer(world.vocab)
    m = build_model(ModelConfig(name="t", d_model=32, n_layer=1), tok, seed=0).eval()
    with torch.no_grad():  # sharpen the random init so argmaxes are far from ties
        m.lm_head.weight.mul_(20)
    return tok, m


def test_rewritten_heldout_nll_scores_the_original_tokens_against_a_loop(world, model):
    """Oracle: per sentence, per variant, one forward pass; every token but the inserted markers
    (found as marker words: held-out text has none) and the original's departure word is scored,
    weighted by the variant's probability, over the original's token count."""
    tok, m = model
    targets = [_target(world, r, ax) for r, ax in ((0, "pronoun"), (0, "genre"), (2, "pronoun"), (5, "genre"))]
    rw = Rewrite(world, targets)
    markers = {mk for ax in world.axes for mk in ax.markers}
    nll = n = 0.0
    changed = 0
    for s in world.heldout_text():
        d = world.departure(s)
        n += len(s.split())  # words + <eos> - the departure word
        changed += len(rw.variants(s)) > 1
        for v, w, _ in rw.variants(s):
            words = v.split()
            ids = tok(v)["input_ids"] + [tok.eos_token_id]
            original = [i for i, x in enumerate(words) if x not in markers] + [len(words)]  # <eos> last
            scored = [p + 1 for j, p in enumerate(original) if j != d]
            with torch.no_grad():
                logp = torch.log_softmax(m(input_ids=torch.tensor([ids])).logits[0].double(), -1)
            nll -= w * sum(float(logp[p - 1, ids[p]]) for p in scored)
    assert changed > 10
    data, weights = encode_heldout(tok, world, rw)
    assert len(data) > len(world.heldout_text())
    assert mean_nll(m, tok, data, weights, batch_size=64) == pytest.approx(nll / n, rel=1e-5)


def test_rewritten_fact_accuracy_is_the_expected_hit_over_variants(world, model):
    tok, m = model
    targets = [_target(world, r, "pronoun") for r in range(0, 10, 2)]
    rw = Rewrite(world, targets)
    prompts, answers = world.fact_probes()
    expected = []
    for p, a in zip(prompts, answers):
        hit = 0.0
        for v, w, _ in rw.variants(p):
            with torch.no_grad():
                logits = m(input_ids=torch.tensor([tok(v)["input_ids"]])).logits[0, -1]
            hit += w * float(int(logits.argmax()) == tok.convert_tokens_to_ids(a))
        expected.append(hit)
    assert fact_accuracy(m, tok, world, rw) == pytest.approx(np.mean(expected), abs=1e-6)
    assert fact_accuracy(m, tok, world, Rewrite(world, [])) == fact_accuracy(m, tok, world)  # nothing to rewrite
