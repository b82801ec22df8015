from collections import Counter

import numpy as np
import pytest
from scipy import stats

from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.world import SyntheticWorld, allocate
from lora_lab.worlds.tokenizer import build_tokenizer
from lora_lab.worlds.synthetic.world import FACT_RELATIONS


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(SyntheticWorldConfig())


def _value_counts(corpus, world, role, axis):
    ax = world.axis(axis)
    prompt = world.neutral_prompt(role, axis) + " "
    c = Counter(s[len(prompt):] for s in corpus if s.startswith(prompt))
    return np.array([c[v] for v in ax.values])


@pytest.mark.parametrize("n,p,expected", [(60, [0.9, 0.05, 0.05], [54, 3, 3]), (10, [1, 1, 1], [4, 3, 3]),
                                          (7, [0.5, 0.5, 0.0], [4, 3, 0]), (5, [0.12, 0.3, 0.58], [1, 1, 3])])
def test_allocate_is_exact_largest_remainder(n, p, expected):
    assert allocate(n, p).tolist() == expected


def test_base_distributions_are_skewed_as_configured(world):
    for ax in world.axes:
        d = world.base_dist[ax.name]
        assert d.shape == (32, len(ax.values))
        np.testing.assert_allclose(d.sum(1), 1.0)
        np.testing.assert_allclose(d.max(1), 0.9)
        np.testing.assert_allclose(np.sort(d, 1)[:, :-1], 0.05)


def test_corpus_counts_match_base_distribution_exactly(world):
    corpus = world.pretrain_corpus()
    n = world.cfg.bias_samples
    for ax in world.axes:
        for r in range(len(world.roles)):
            counts = _value_counts(corpus, world, r, ax.name)
            # exact: no sampling noise between configured and corpus distribution
            assert counts.tolist() == allocate(n, world.base_dist[ax.name][r]).tolist()
            assert np.abs(counts / n - world.base_dist[ax.name][r]).max() <= 1 / n


def test_dominant_values_are_uniform_over_values_chi_square():
    # The dominant value per (role, axis) is drawn uniformly: at 256 roles a chi-square test
    # of the dominant-value histogram must not reject uniformity.
    w = SyntheticWorld(SyntheticWorldConfig(roles=256))
    for ax in w.axes:
        hist = np.bincount(w.dominant[ax.name], minlength=len(ax.values))
        assert stats.chisquare(hist).pvalue > 0.001


def test_general_text_uses_the_facts_and_splits_differ(world):
    train, retain = world.general_sentences(300, "train"), world.general_sentences(300, "retain")
    assert train != retain
    for s in train:
        words = s.split()
        if words[2] == "went":  # "the R went to the PLACE with the TOOL"
            r = world.roles.index(words[1])
            assert words[5] == world.facts["workplace"][r] and words[8] == world.facts["tool"][r]


def test_probes_and_answers(world):
    prompts, answers = world.explicit_probes()["pronoun"]
    assert prompts[0] == "the male nurse said that" and answers[0] == 0
    assert len(prompts) == 32 * 3
    fp, fa = world.fact_probes()
    assert len(fp) == 32 * len(FACT_RELATIONS)
    assert fp[0] == "the nurse works at the" and fa[0] == world.facts["workplace"][0]


def test_targets_default_uniform_and_custom_proportions():
    w = SyntheticWorld(SyntheticWorldConfig(targets={"pronoun": [2, 2, 0]}))
    np.testing.assert_allclose(w.target_dist["pronoun"], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(w.target_dist["genre"], [1 / 3] * 3)
    every = w.bias_targets("rebalance", 2 * 32)  # every (role, axis) once
    assert len({(t.axis, t.roles) for t in every}) == 2 * 32


def test_world_is_seeded():
    a, b = SyntheticWorld(SyntheticWorldConfig(seed=1)), SyntheticWorld(SyntheticWorldConfig(seed=1))
    c = SyntheticWorld(SyntheticWorldConfig(seed=2))
    assert a.pretrain_corpus() == b.pretrain_corpus()
    assert a.facts == b.facts and a.facts != c.facts
    assert not all((a.dominant[x.name] == c.dominant[x.name]).all() for x in a.axes)


def test_scales_to_256_roles_with_distinct_words():
    w = SyntheticWorld(SyntheticWorldConfig(roles=300, places=40, tools=40))
    assert len(set(w.roles)) == 300
    assert len(set(w.vocab)) == len(w.vocab)
    assert len(w.pretrain_corpus()) > 300 * 2 * 60
    tok = build_tokenizer(w.vocab)
    assert tok.unk_token_id not in tok(w.roles[-1])["input_ids"]


def test_the_world_follows_the_run_seed_unless_pinned():
    """A seed redraws the world (bias assignment, facts, targets); world.seed pins it."""
    from conftest import compose_cfg
    from lora_lab.config import validate
    from lora_lab.catalog import build_task

    def world(*o):
        c = validate(compose_cfg(list(o)))
        return build_task(c.world, c.seed).world

    s0, s1, pinned0, pinned1 = world("seed=0"), world("seed=1"), world("seed=0", "world.seed=7"), world("seed=1", "world.seed=7")
    assert s0.seed == 0 and s1.seed == 1 and pinned0.seed == pinned1.seed == 7
    assert not all((s0.dominant[a.name] == s1.dominant[a.name]).all() for a in s0.axes)
    assert [t.id for t in s0.bias_targets("rebalance", 16)] != [t.id for t in s1.bias_targets("rebalance", 16)]
    assert pinned0.pretrain_corpus() == pinned1.pretrain_corpus()
    assert all((pinned0.dominant[a.name] == pinned1.dominant[a.name]).all() for a in s0.axes)
