"""A small CrowS-Pairs CSV, a text file and a tiny GPT-2 with a planted bias, written by tests."""

import csv

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lora_lab.worlds.tokenizer import build_tokenizer

JOBS = "doctor nurse teacher pilot chef farmer lawyer baker singer judge".split()
# per bias type, group-word pairs (more, less); the bias is planted with a different strength for each
TYPES = {"gender": [("he", "she"), ("man", "woman"), ("boy", "girl"), ("father", "mother")],
         "age": [("old", "young"), ("elderly", "teen"), ("grandpa", "kid"), ("senior", "junior")],
         "race": [("white", "black"), ("european", "african"), ("western", "eastern"), ("northern", "southern")]}


def rows():
    out = []
    for t, groups in TYPES.items():
        for g, (a, b) in enumerate(groups):
            for i, job in enumerate(JOBS):
                direction = "stereo" if i % 3 else "antistereo"
                out.append({"sent_more": f"{a} is a {job}", "sent_less": f"{b} is a {job}",
                            "stereo_antistereo": direction, "bias_type": t, "strength": g + 1})
    return out


def write_csv(path, rows, fields=("sent_more", "sent_less", "stereo_antistereo", "bias_type")):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})


def write_crows_files(d):
    """pairs.csv, text.txt and tiny-gpt2/ (model + tokenizer) under `d`; deterministic."""
    write_csv(d / "pairs.csv", rows())
    rng = np.random.default_rng(0)
    words = sorted({w for r in rows() for s in (r["sent_more"], r["sent_less"]) for w in s.split()})
    lines = [" ".join(rng.choice(words, 6)) for _ in range(60)]
    (d / "text.txt").write_text("\n".join(lines) + "\n")
    tok = build_tokenizer(words)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id))
    # plant a bias: a little next-token training on the stereotypical sentences and the text
    from lora_lab.training import LMObjective, encode_sentences, train

    # the more stereotypical sentence, whatever the direction, 1 to 4 times: pairs differ in how biased they are
    stereo = [r["sent_more"] for r in rows() for _ in range(r["strength"])]
    train(model, list(model.parameters()), LMObjective(encode_sentences(tok, stereo + lines), tok.pad_token_id),
          steps=150, batch_size=32, lr=3e-3, seed=0, progress=False)
    model.save_pretrained(d / "tiny-gpt2")
    tok.save_pretrained(d / "tiny-gpt2")
    return d


def crows_overrides(d, *extra):
    return ["model=hf", f"model.name_or_path={d / 'tiny-gpt2'}", "model.device=cpu", "world=crows",
            f"world.path={d / 'pairs.csv'}", f"world.text_path={d / 'text.txt'}", "adapters.n=3",
            "adapters.steps=40", "adapters.batch_size=8", "compose.orderings=2", "logger.mode=disabled", "latency.repeats=3", "latency.settle_s=0",
            "progress=false", *extra]
