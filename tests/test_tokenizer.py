from transformers import AutoTokenizer

from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.world import SyntheticWorld
from lora_lab.worlds.tokenizer import build_tokenizer


def test_round_trip_every_corpus_sentence():
    w = SyntheticWorld(SyntheticWorldConfig(roles=64))
    tok = build_tokenizer(w.vocab)
    text = w.pretrain_corpus() + w.heldout_text()
    enc = tok(text)["input_ids"]
    for s, ids in zip(text, enc):
        assert ids[0] == tok.bos_token_id
        assert tok.unk_token_id not in ids
        assert len(ids) == len(s.split()) + 1  # one token per word, plus <bos>
        assert tok.decode(ids, skip_special_tokens=True) == s


def test_ids_are_stable_and_survive_save_load(tmp_path):
    w = SyntheticWorld(SyntheticWorldConfig())
    a, b = build_tokenizer(w.vocab), build_tokenizer(w.vocab)
    assert a.get_vocab() == b.get_vocab()
    assert [a.pad_token_id, a.bos_token_id, a.eos_token_id, a.unk_token_id] == [0, 1, 2, 3]
    a.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    s = "the female nurse said that she"
    assert loaded(s)["input_ids"] == a(s)["input_ids"]
    assert loaded("zzz unknownword")["input_ids"][1] == a.unk_token_id
