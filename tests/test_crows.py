"""model=hf + world=crows end to end on a tiny random GPT-2 and a small CSV the test writes."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, compose_cfg
from crows_data import crows_overrides, rows as _rows, write_crows_files, write_csv as _write_csv
from lora_lab.config import validate
from lora_lab.run import run
from lora_lab.catalog import build_task
from lora_lab.worlds.crows.score import pair_diffs, text_nll
from lora_lab.worlds.io import DataError

@pytest.fixture(scope="module")
def crows_files(tmp_path_factory):
    return write_crows_files(tmp_path_factory.mktemp("crows"))


_overrides = crows_overrides


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
    assert "quality_fact_acc" not in df.columns  # no fact probes in this world: it declares no such column
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
    assert "world crows declares no control metric" in claims


def test_crows_gaps_are_labelled_and_bounded_in_percentage_points():
    from analysis.figures import metric_label, value_range
    from lora_lab.schema import TableSchema
    from lora_lab.worlds import crows, seat, synthetic

    schema = TableSchema({"crows": list(crows.METRICS), "synthetic": list(synthetic.METRICS), "seat": list(seat.METRICS)})
    assert "(pp)" in metric_label(schema, "crows", "bias_target_gap")[0]
    assert "TV" in metric_label(schema, "synthetic", "bias_target_gap")[0]
    assert value_range(schema, "crows", "bias_target_gap") == (0, 50)
    assert value_range(schema, "synthetic", "bias_target_gap") == (0, 1)
    # SEAT: |d| beyond the floor, not TV
    assert "noise floor" in metric_label(schema, "seat", "bias_target_gap")[0]
    assert value_range(schema, "seat", "bias_target_gap") == (0, None)
