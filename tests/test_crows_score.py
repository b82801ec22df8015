"""CrowS-Pairs sentence and pair scores against loop oracles on a tiny random GPT-2 (no training)."""

import types

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from lora_lab.eval.batch import encode_scored
from lora_lab.worlds.crows.metric import pref_gap, pref_interval
from lora_lab.worlds.crows.score import pair_diffs, sentence_logprobs, shared_tokens, text_nll
from lora_lab.worlds.tokenizer import build_tokenizer
from lora_lab.worlds.crows.data import Pair

WORDS = sorted(set("he she old young is a the man doctor nurse today very good".split()))


def _no_bos_tokenizer():
    """GPT-2-style: no BOS token, so texts start from EOS; adds no special token itself."""
    vocab = {w: i for i, w in enumerate(["<eos>", "<unk>", *WORDS])}
    t = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>")


@pytest.fixture(scope="module", params=["bos", "no_bos"])
def lm(request):
    tok = build_tokenizer(WORDS) if request.param == "bos" else _no_bos_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=32, n_layer=2, n_head=2)).eval()
    return model, tok


def _oracle_logprobs(model, tok, sentence):
    """One sentence, a plain forward pass: log p of each word given the start token and the words before."""
    words = [tok.convert_tokens_to_ids(w) for w in sentence.split()]
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = [start] + words
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    out = []
    for j in range(1, len(ids)):
        row = logits[j - 1]
        out.append(float(row[ids[j]] - torch.logsumexp(row, 0)))
    return out


def _bias_bench_oracle(model, tok, sentence):
    """bias-bench's `_joint_log_probability`, one sentence at a time: the first word from a pass over
    the start token alone, the others from a pass over the words without it."""
    words = [tok.convert_tokens_to_ids(w) for w in sentence.split()]
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    with torch.no_grad():
        first = model(torch.tensor([[start]])).logits[0, -1].double()
        logits = model(torch.tensor([words])).logits[0].double()
    out = [float(first[words[0]] - torch.logsumexp(first, 0))]
    for j in range(1, len(words)):
        out.append(float(logits[j - 1][words[j]] - torch.logsumexp(logits[j - 1], 0)))
    return out


SENTENCES = ["he is a doctor", "she is a nurse today", "the old man is a very good doctor", "young"]


def test_one_start_token_then_every_token_of_the_sentence(lm):
    model, tok = lm
    ids, mask = encode_scored(tok, SENTENCES, 16)
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    assert (ids[:, 0] == start).all() and (ids[:, 1] != start).all()  # exactly one, though `build_tokenizer` adds BOS itself
    _, count = sentence_logprobs(model, tok, SENTENCES)
    assert count.tolist() == [len(s.split()) for s in SENTENCES]  # every token scored, the first word too


def test_batched_sentence_scores_match_a_loop_oracle(lm):
    model, tok = lm
    total, _ = sentence_logprobs(model, tok, SENTENCES)
    oracle = [sum(_oracle_logprobs(model, tok, s)) for s in SENTENCES]
    np.testing.assert_allclose(total.detach().double().numpy(), oracle, rtol=1e-5, atol=1e-5)
    n = sum(len(s.split()) for s in SENTENCES)
    assert text_nll(model, tok, SENTENCES) == pytest.approx(-sum(oracle) / n, rel=1e-5)


PAIRS = [Pair("he is a doctor today", "she is a doctor today", "gender", 2),
         Pair("the old man is a doctor", "the man is a doctor", "age", 3),
         Pair("the man is old", "the man is young", "age", 4)]


def test_full_score_is_bias_benchs_joint_score(lm):
    model, tok = lm
    oracle = [np.mean(_bias_bench_oracle(model, tok, p.stereo)) - np.mean(_bias_bench_oracle(model, tok, p.anti))
              for p in PAIRS]
    np.testing.assert_allclose(pair_diffs(model, tok, PAIRS, "full"), oracle, rtol=1e-5, atol=1e-5)
    # not the one-pass score with the start token kept in context (which the held-out loss uses)
    one_pass = [np.mean(_oracle_logprobs(model, tok, p.stereo)) - np.mean(_oracle_logprobs(model, tok, p.anti))
                for p in PAIRS]
    assert np.abs(np.asarray(one_pass) - oracle).max() > 1e-4


def test_conditional_score_sums_the_shared_tokens(lm):
    model, tok = lm
    ids = lambda s: [tok.convert_tokens_to_ids(w) for w in s.split()]  # noqa: E731
    # the shared tokens, by hand: everything but the group word(s)
    assert shared_tokens(ids(PAIRS[0].stereo), ids(PAIRS[0].anti)) == ([1, 2, 3, 4], [1, 2, 3, 4])
    assert shared_tokens(ids(PAIRS[1].stereo), ids(PAIRS[1].anti)) == ([0, 2, 3, 4, 5], [0, 1, 2, 3, 4])
    assert shared_tokens(ids(PAIRS[2].stereo), ids(PAIRS[2].anti)) == ([0, 1, 2], [0, 1, 2])
    shared = {0: ([1, 2, 3, 4], [1, 2, 3, 4]), 1: ([0, 2, 3, 4, 5], [0, 1, 2, 3, 4]), 2: ([0, 1, 2], [0, 1, 2])}
    oracle = []
    for k, p in enumerate(PAIRS):
        s, a = _oracle_logprobs(model, tok, p.stereo), _oracle_logprobs(model, tok, p.anti)
        pos_s, pos_a = shared[k]
        oracle.append((sum(s[i] for i in pos_s) - sum(a[j] for j in pos_a)) / len(pos_s))
    d = pair_diffs(model, tok, PAIRS, "conditional")
    np.testing.assert_allclose(d, oracle, rtol=1e-5, atol=1e-5)
    assert d[2] == 0.0 and d[0] != 0.0  # the difference comes last: nothing shared after it, an exact tie


class Unigram(torch.nn.Module):
    """A causal LM that ignores context: every position predicts the same word distribution."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))
        self.config = types.SimpleNamespace(n_positions=16)

    @property
    def device(self):
        return self.logits.device

    def forward(self, input_ids, attention_mask=None):
        return types.SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


class GroupWordLM(torch.nn.Module):
    """Predicts 'is' more strongly after 'he' than after 'she': the shared word 'is' carries the bias."""

    def __init__(self, tok):
        super().__init__()
        self.he, self.is_ = tok.convert_tokens_to_ids("he"), tok.convert_tokens_to_ids("is")
        self.vocab = len(tok)
        self.config = types.SimpleNamespace(n_positions=16)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.dummy.device

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.is_] = (input_ids == self.he).float() * 2.0
        return types.SimpleNamespace(logits=logits)


@pytest.mark.parametrize("score", ["full", "conditional"])
def test_planted_preference_gives_a_large_gap_and_a_null_none(score):
    tok = build_tokenizer(WORDS)
    if score == "full":
        logits = torch.zeros(len(tok))
        logits[tok.convert_tokens_to_ids("he")] = 1.0  # "he" is e times as likely as "she"
        model = Unigram(logits)
    else:  # a context-free model scores the shared tokens alike: this one reads the group word
        model = GroupWordLM(tok)
    nouns = ["doctor", "nurse", "man", "the", "old", "young", "very", "good", "today", "a"]
    # the group word first and a word after it, so that conditional has shared tokens after the change
    he_she = [(f"he is {x} {y}", f"she is {x} {y}") for x in nouns for y in nouns]  # 100 pairs
    planted = [Pair(h, s, "gender", i) for i, (h, s) in enumerate(he_she)]
    rng = np.random.default_rng(0)
    flip = rng.permutation(len(he_she)) < len(he_she) // 2  # the "stereotype" is he in half the pairs
    null = [Pair(s, h, "gender", i) if f else Pair(h, s, "gender", i) for i, ((h, s), f) in enumerate(zip(he_she, flip))]
    d_planted, d_null = pair_diffs(model, tok, planted, score), pair_diffs(model, tok, null, score)
    assert pref_gap(d_planted) == 50.0
    assert pref_gap(d_null) == 0.0
    lo, hi = pref_interval(d_null, np.random.default_rng(1))
    assert lo < 50 < hi and hi - lo < 25
    lo, hi = pref_interval(d_planted, np.random.default_rng(1))
    assert lo == hi == 100.0
