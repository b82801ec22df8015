"""model=hf + world=crows end to end on a tiny random GPT-2 and a small CSV the test writes."""

import csv
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from conftest import ROOT, compose_cfg
from lora_lab.config import validate
from lora_lab.run import run
from lora_lab.tasks import build_task
from lora_lab.tasks.crows_score import pair_diffs, text_nll
from lora_lab.world import build_tokenizer
from lora_lab.world.io import DataError

JOBS = "doctor nurse teacher pilot chef farmer lawyer baker singer judge".split()
# per bias type, group-word pairs (more, less); the bias is planted with a different strength for each
TYPES = {"gender": [("he", "she"), ("man", "woman"), ("boy", "girl"), ("father", "mother")],
         "age": [("old", "young"), ("elderly", "teen"), ("grandpa", "kid"), ("senior", "junior")],
         "race": [("white", "black"), ("european", "african"), ("western", "eastern"), ("northern", "southern")]}


def _rows():
    rows = []
    for t, groups in TYPES.items():
        for g, (a, b) in enumerate(groups):
            for i, job in enumerate(JOBS):
                direction = "stereo" if i % 3 else "antistereo"
                rows.append({"sent_more": f"{a} is a {job}", "sent_less": f"{b} is a {job}",
                             "stereo_antistereo": direction, "bias_type": t, "strength": g + 1})
    return rows


def _write_csv(path, rows, fields=("sent_more", "sent_less", "stereo_antistereo", "bias_type")):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in fields})


@pytest.fixture(scope="module")
def crows_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("crows")
    _write_csv(d / "pairs.csv", _rows())
    rng = np.random.default_rng(0)
    words = sorted({w for r in _rows() for s in (r["sent_more"], r["sent_less"]) for w in s.split()})
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
    stereo = [r["sent_more"] for r in _rows() for _ in range(r["strength"])]
    train(model, list(model.parameters()), LMObjective(encode_sentences(tok, stereo + lines), tok.pad_token_id),
          steps=150, batch_size=32, lr=3e-3, seed=0, progress=False)
    model.save_pretrained(d / "tiny-gpt2")
    tok.save_pretrained(d / "tiny-gpt2")
    return d


def _overrides(d, *extra):
    return ["model=hf", f"model.name_or_path={d / 'tiny-gpt2'}", "model.device=cpu", "world=crows",
            f"world.path={d / 'pairs.csv'}", f"world.text_path={d / 'text.txt'}", "adapters.n=3",
            "adapters.steps=40", "adapters.batch_size=8", "compose.orderings=2", "logger.mode=disabled", "latency.repeats=3", "latency.settle_s=0",
            "progress=false", *extra]


def test_pair_metrics_against_a_direct_computation(crows_files):
    c = validate(compose_cfg(_overrides(crows_files, f"cache_dir={crows_files / 'c0'}")))
    task = build_task(c.world)
    from lora_lab.base import load_pretrained

    model, tok = load_pretrained(str(crows_files / "tiny-gpt2"))

    def ll(sentence):  # HF's own loss on <bos> + words: mean NLL over the predicted tokens
        ids = torch.tensor([tok(sentence)["input_ids"]])
        with torch.no_grad():
            return -float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)

    def joint(sentence):  # bias-bench: the first word from <bos> alone, the rest from HF's loss on the words
        words = tok(sentence, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            first = torch.log_softmax(model(input_ids=torch.tensor([[tok.bos_token_id]])).logits[0, -1], -1)[words[0]]
            rest = -float(model(input_ids=torch.tensor([words]), labels=torch.tensor([words])).loss) * (len(words) - 1)
        return (float(first) + rest) / len(words)

    pairs = task.world.eval["gender"]
    direct = np.array([joint(p.stereo) - joint(p.anti) for p in pairs])
    np.testing.assert_allclose(pair_diffs(model, tok, pairs, "full"), direct, rtol=1e-4, atol=1e-4)
    texts = task.world.heldout
    nll = sum(-ll(t) for t in texts)
    n = sum(len(tok(t)["input_ids"]) - 1 for t in texts)
    assert text_nll(model, tok, texts) == pytest.approx(nll / n, rel=1e-5)
    rep = task.base_report(model, tok)
    assert rep["stereo_pref"] == pytest.approx(100 * np.mean(np.concatenate([v for v in task.diffs(model, tok).values()]) > 0))


def test_hf_crows_end_to_end(crows_files, tmp_path):
    frames = {}
    for fam in ("lora", "steer"):
        out = run(compose_cfg(_overrides(crows_files, f"family={fam}", f"cache_dir={tmp_path / 'cache'}")),
                  output_dir=tmp_path / fam)
        frames[fam] = out["results"]
        rows = out["adapters"]["rows"]
        # the planted bias: every type's held-out pairs prefer the stereotypical sentence (a gap of 50 pp);
        # each adapter cuts its own type's gap by at least 40%, at strength 1 or at its calibrated strength
        # (measured: the best of the two is 0.5-0.9; the gap moves in steps of one held-out pair)
        assert len(rows) == 3 and all(r["base_gap"] == 50.0 for r in rows), rows
        assert all(max(1 - r["gap"] / r["base_gap"], r["cal_reduction"]) >= 0.4 for r in rows), rows
    df = pd.concat(frames.values())
    assert {"crows_stereo_pref", "crows_stereo_pref_lo", "crows_stereo_pref_hi", "crows_ll_diff"} <= set(df.columns)
    assert (df.crows_stereo_pref_lo <= df.crows_stereo_pref).all() and (df.crows_stereo_pref <= df.crows_stereo_pref_hi).all()
    assert list(df.columns[:18]) == list(pd.read_parquet(tmp_path / "lora" / "results.parquet").columns[:18])
    k0 = df[df.k == 0]
    assert (k0.quality_ppl_ratio == 1.0).all() and (k0.removal_gap == k0.bias_target_gap).all()
    assert df.quality_fact_acc.isna().all()  # no fact probes in this world: NaN, not a made-up number
    assert df.crows_stereo_pref.between(0, 100).all()
    full = df[df.k == 3]
    assert (full.removal_gap == k0.bias_target_gap.iloc[0]).all()  # the base came back exactly
    assert (full.crows_stereo_pref < k0.crows_stereo_pref.iloc[0]).all()  # the composition moves pairs off the stereotype


def test_prompt_family_is_skipped_for_real_worlds(crows_files, tmp_path):
    out = run(compose_cfg(_overrides(crows_files, "family=prompt", f"cache_dir={tmp_path}")), output_dir=tmp_path)
    assert "skipped" in out and not (tmp_path / "results.parquet").exists()


@pytest.mark.parametrize("mutate,needle", [
    (lambda rows: (rows, ("sent_more", "sent_less", "bias_type")), ":1: field 'stereo_antistereo': missing column"),
    (lambda rows: ([*rows[:4], {**rows[4], "sent_less": ""}, *rows[5:]], None), ":6: field 'sent_less': empty"),
    (lambda rows: ([*rows[:2], {**rows[2], "stereo_antistereo": "maybe"}, *rows[3:]], None), ":4: field 'stereo_antistereo': must be one of"),
    (lambda rows: ([], None), "no data rows"),
])
def test_malformed_csv_is_one_line_naming_file_row_field(crows_files, tmp_path, mutate, needle):
    rows, fields = mutate(_rows())
    bad = tmp_path / "bad.csv"
    _write_csv(bad, rows, *( [fields] if fields else []))
    with pytest.raises(DataError) as e:
        build_task(validate(compose_cfg([*_overrides(crows_files), f"world.path={bad}"])).world)
    assert str(e.value).startswith(str(bad)) and needle in str(e.value) and "\n" not in str(e.value)
    r = subprocess.run([sys.executable, "-m", "lora_lab.run", *_overrides(crows_files), f"world.path={bad}",
                        f"cache_dir={tmp_path / 'c'}", f"hydra.run.dir={tmp_path / 'o'}"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr
    assert not (tmp_path / "c").exists()  # nothing trained


def test_crows_needs_a_pretrained_model(crows_files):
    from lora_lab.config import ConfigError

    with pytest.raises(ConfigError, match="^model: world=crows needs a pretrained model"):
        validate(compose_cfg(["world=crows", f"world.path={crows_files / 'pairs.csv'}",
                              f"world.text_path={crows_files / 'text.txt'}"]))


def test_report_on_crows_results(crows_files, tmp_path):
    from analysis.report import build

    run(compose_cfg(_overrides(crows_files, "family=lora", f"cache_dir={tmp_path / 'cache'}")), output_dir=tmp_path / "0")
    out = build(tmp_path)
    names = {p.stem for p in out.glob("fig_*.pdf")}
    assert {"fig_crows_stereo_pref", "fig_crows_ll_diff", "fig_quality_ppl_ratio"} <= names
    assert "fig_quality_fact_acc" not in names  # not measured in this world: no empty figure
    claims = (out / "claims.md").read_text()
    assert "control_explicit_acc is not measured in this world" in claims


def test_crows_gaps_are_labelled_and_bounded_in_percentage_points():
    from analysis.figures import metric_label, value_range

    crows = pd.DataFrame({"crows_stereo_pref": [60.0], "bias_target_gap": [10.0]})
    synthetic = pd.DataFrame({"crows_stereo_pref": [np.nan], "bias_target_gap": [0.1]})
    assert "(pp)" in metric_label(crows, "bias_target_gap")[0] and "TV" in metric_label(synthetic, "bias_target_gap")[0]
    assert value_range(crows, "bias_target_gap") == (0, 50) and value_range(synthetic, "bias_target_gap") == (0, 1)
    seat = pd.DataFrame({"seat_effect_size": [1.2], "bias_target_gap": [0.9]})  # |d| beyond the floor, not TV
    assert "noise floor" in metric_label(seat, "bias_target_gap")[0] and value_range(seat, "bias_target_gap") == (0, None)
