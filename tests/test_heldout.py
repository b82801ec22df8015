"""The synthetic world's held-out text is held out: no sentence and no frame of it occurs in
training text, it is distinct, each sentence's departure word is left unscored, and the fact
probes are kept out of the adapters' retain text."""

import numpy as np
import pytest
import torch

from lora_lab.adapters.stage import adapter_seed
from lora_lab.config import ConfigError, ModelConfig
from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.probes import encode_heldout, mean_nll
from lora_lab.model.build import build_model
from lora_lab.worlds.synthetic.world import SyntheticWorld
from lora_lab.worlds.tokenizer import build_tokenizer
from lora_lab.worlds.synthetic.world import spread

TINY = dict(roles=6, bias_samples=20, general_train=200, general_heldout=50)  # the tests' tiny run (conftest.TINY)
WORLDS = [({}, 0), ({}, 1), ({}, 2), (TINY, 0), (TINY, 3), ({"roles": 256}, 0)]  # (world config, world seed)


def _world(kw, seed):
    return SyntheticWorld(SyntheticWorldConfig(**kw), seed=seed)


def _adapter_texts(world, retain_fraction, run_seed):
    """Every adapter's training text (both kinds, every target), and the retain part alone."""
    texts, retain = set(), set()
    for kind in ("rebalance", "force"):
        n = len(world.axes) * len(world.roles) if kind == "rebalance" else sum(len(a.values) for a in world.axes)
        for t in world.bias_targets(kind, n):
            for prompt, completion in world.adapter_corpus(t, 64, retain_fraction, adapter_seed(run_seed, t)):
                texts.add(f"{prompt} {completion}".strip())
                if prompt == "":
                    retain.add(completion)
    return texts, retain


NUMBERS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen".split()


def _framer(world):
    """Independent of `world.frame`: a function that turns each role, place, tool and number word
    of a sentence into its slot."""
    slot = {}
    slots = ((NUMBERS, "N"), (world.facts["workplace"], "P"), (world.facts["tool"], "T"), (world.roles, "R"))
    for words, name in slots:
        for w in words:
            slot[w] = name
    return lambda sentence: " ".join(slot.get(w, w) for w in sentence.split())


def _training_frames(world):
    frame = _framer(world)
    return {frame(s) for s in world.pretrain_corpus()} | {frame(s) for s in _adapter_texts(world, 0.5, 0)[0]}


def _departure(training_frames, frame):
    """Oracle for `SyntheticWorld.departure`: the first word (or the end, "</s>") of `frame` at
    which no training frame goes on the same way, by a plain loop over the training frames."""
    words = frame.split() + ["</s>"]
    for i in range(len(words)):
        if not any((t.split() + ["</s>"])[: i + 1] == words[: i + 1] for t in training_frames):
            return i
    return None


@pytest.mark.parametrize("kw,seed", WORLDS)
def test_heldout_shares_no_sentence_with_training_text(kw, seed):
    w = _world(kw, seed)
    run_seeds = (0,) if len(w.roles) > 32 else (0, 1)  # 256 roles: 518 adapters per fraction already
    held = set(w.heldout_text())
    assert held and not held & set(w.pretrain_corpus())
    fact_sentences = {f"{p} {a}" for p, a in zip(*w.fact_probes())}
    for retain_fraction in (0.5, 0.9):  # 0.9: 576 retain sentences, a pool above its 256 minimum
        for run_seed in run_seeds:
            texts, retain = _adapter_texts(w, retain_fraction, run_seed)
            assert retain
            assert len(held & texts) == 0
            assert len(fact_sentences & retain) == 0


@pytest.mark.parametrize("kw,seed", [WORLDS[0], WORLDS[3], WORLDS[5], ({"general_train": 0}, 0)])
def test_heldout_frames_never_occur_in_training(kw, seed):
    w = _world(kw, seed)  # general_train=0: the general frames are in the retain text only
    training = _training_frames(w)
    frame = _framer(w)
    held_frames = {frame(s) for s in w.heldout_text()}
    assert len(held_frames) == len(w.heldout_frames())  # every frame is drawn
    assert not held_frames & training
    assert w.heldout_overlap() == 0
    for f in held_frames:
        i = _departure(training, f)
        assert i is not None and 0 < i <= len(f.split())
        sentence = next(s for s in w.heldout_text() if frame(s) == f)
        assert w.departure(sentence) == i


def test_a_heldout_frame_added_to_training_is_caught(monkeypatch):
    # Planted: the retain stream gains one sentence in a held-out frame, with roles that make it
    # no held-out string. Strings alone miss it; frames and `heldout_overlap` catch it.
    w = _world({}, 0)
    held = w.heldout_text()
    tool = dict(zip(w.roles, w.facts["tool"]))
    planted = next(f"the {a} uses the {tool[a]} to the {b}" for a in w.roles for b in w.roles
                   if f"the {a} uses the {tool[a]} to the {b}" not in held)
    real = SyntheticWorld.general_sentences
    monkeypatch.setattr(SyntheticWorld, "general_sentences", lambda self, n, split: real(self, n, split) + [planted])
    assert not set(held) & set(w.pretrain_corpus())
    frame = _framer(w)
    assert frame(planted) in _training_frames(w)
    expected = 0  # oracle: held-out sentences sharing the planted frame, by a plain loop
    for s in held:
        if frame(s) == frame(planted):
            expected += 1
    assert expected > 0 and w.heldout_overlap() == expected
    assert w.departure(planted) is None


@pytest.mark.parametrize("kw,seed", WORLDS)
def test_heldout_uses_only_words_of_the_pretraining_corpus(kw, seed):
    w = _world(kw, seed)
    seen = {x for s in w.pretrain_corpus() for x in s.split()}
    assert {x for s in w.heldout_text() for x in s.split()} <= seen


def test_heldout_sentences_are_distinct_and_seeded():
    held = _world({}, 0).heldout_text()
    assert len(held) == len(set(held)) == 500
    assert held == _world({}, 0).heldout_text() and set(held) != set(_world({}, 1).heldout_text())


def test_heldout_size_is_bounded_by_the_frames():
    cap = sum(size for _, size in _world(TINY, 0).heldout_frames())
    full = _world({**TINY, "general_heldout": cap}, 0).heldout_text()
    assert len(set(full)) == len(full) == cap  # every sentence the frames give, once
    # oracle: a one-role frame (R), a two-role frame (R * R), runs of 5 over 16 numbers
    assert cap == 6 + 6 * 6 + 12
    with pytest.raises(ConfigError, match=r"^world\.general_heldout: .*\(got 55\)$"):
        _world({**TINY, "general_heldout": cap + 1}, 0)
    # unset: 500, or all the frames give in a small world (no error for a plain world.roles=6)
    assert len(_world({"roles": 6}, 0).heldout_text()) == cap
    assert len(_world({"roles": 21}, 0).heldout_text()) == 21 + 21 * 21 + 12 < 500


def _greedy(n, sizes):
    """Oracle for `spread`: hand out one item at a time to the emptiest bin that has room
    (ties: the smaller bin, then the earlier)."""
    counts = [0] * len(sizes)
    for _ in range(n):
        j = min((c, s, i) for i, (c, s) in enumerate(zip(counts, sizes)) if c < s)[2]
        counts[j] += 1
    return counts


def test_spread_matches_one_at_a_time_filling():
    assert spread(500, [32, 1024, 12]).tolist() == [32, 456, 12]
    assert spread(500, [32, 32, 32, 1024, 1024, 1024, 14, 12]).tolist() == [32, 32, 32, 126, 126, 126, 14, 12]
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(1, 30, rng.integers(1, 8)).tolist()
        n = int(rng.integers(1, sum(sizes) + 1))
        assert spread(n, sizes).tolist() == _greedy(n, sizes), (n, sizes)


def test_heldout_nll_leaves_out_each_departure_word():
    # Oracle: a one-sentence-at-a-time loss over every token but the departure word, against the
    # batched, padded `mean_nll` of `encode_heldout` (random model: any scoring slip shows).
    w = _world({"roles": 10, "general_heldout": 60}, 0)
    tok = build_tokenizer(w.vocab)
    model = build_model(ModelConfig(name="t", d_model=32, n_layer=1), tok, seed=0).eval()
    training = _training_frames(w)
    frame = _framer(w)
    nll = n = 0.0
    for s in w.heldout_text():
        ids = tok(s)["input_ids"] + [tok.eos_token_id]  # <bos> words <eos>
        skip = _departure(training, frame(s)) + 1  # word i sits at position i + 1
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
        for pos in range(1, len(ids)):
            if pos != skip:
                nll -= float(logp[pos - 1, ids[pos]])
                n += 1
    data, weights = encode_heldout(tok, w)
    assert int(data.scored.sum()) == n == int((data.lengths - 2).sum())  # one token fewer per sentence
    assert weights.tolist() == [1.0] * len(data)
    assert mean_nll(model, tok, data, batch_size=7) == pytest.approx(nll / n, rel=1e-5)
