"""SEAT: the statistics against a direct computation, the shipped set, input validation, and
model=minilm + world=seat end to end."""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, compose_cfg
from lora_lab.config import ConfigError, validate
from lora_lab.run import run
from lora_lab.tasks import build_task
from lora_lab.world.io import DataError
from lora_lab.world.seat import effect_size, p_value, read_tests
from lora_lab.world.seat_data import SHIPPED, render


def _direct(X, Y, A, B):
    """Caliskan et al. (2017), written out with loops."""
    def cos(u, v):
        return float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))

    def s(w):
        return np.mean([cos(w, a) for a in A]) - np.mean([cos(w, b) for b in B])

    sx, sy = [s(x) for x in X], [s(y) for y in Y]
    d = (np.mean(sx) - np.mean(sy)) / np.std(sx + sy, ddof=1)
    both = list(X) + list(Y)
    observed = sum(sx) - sum(sy)
    hits = total = 0
    for idx in itertools.combinations(range(len(both)), len(X)):
        xi = [both[i] for i in idx]
        yi = [both[i] for i in range(len(both)) if i not in idx]
        stat = sum(s(x) for x in xi) - sum(s(y) for y in yi)
        hits += stat > observed
        total += 1
    return d, hits / total


def test_effect_size_and_p_value_against_a_direct_computation():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(4, 5)) + [2, 0, 0, 0, 0], rng.normal(size=(3, 5)) + [0, 2, 0, 0, 0]
    X, Y = rng.normal(size=(4, 5)) + [3, 0, 0, 0, 0], rng.normal(size=(4, 5)) + [0, 3, 0, 0, 0]
    d, p = _direct(X, Y, A, B)
    assert effect_size(X, Y, A, B) == pytest.approx(d, rel=1e-10)
    assert p_value(X, Y, A, B) == pytest.approx(p, abs=1e-12)  # 70 partitions: exact
    assert d > 0.5 and p < 0.1  # a planted association is found
    sampled = p_value(X, Y, A, B, permutations=50, seed=1)  # fewer allowed than exist: Monte Carlo
    assert abs(sampled - p) < 0.2
    assert effect_size(Y, X, A, B) == pytest.approx(-d)


def test_shipped_set_matches_its_generator_and_parses():
    for name, text in render().items():
        assert (SHIPPED / name).read_text() == text, name
    tests = read_tests(str(SHIPPED))
    assert [t.name for t in tests] == ["weat1", "weat2", "weat6", "weat7", "weat8"]
    assert tests[2].categories == {"targ1": "MaleNames", "targ2": "FemaleNames", "attr1": "Career", "attr2": "Family"}


@pytest.mark.parametrize("line,needle", [
    ('{"targ1": {"category": "X", "examples": ["a", "b"]}}', ":1: field 'targ2': missing"),
    ('{not json', ":1: not valid JSON"),
    ('[1, 2]', ":1: expected an object"),
])
def test_malformed_jsonl_is_one_line_naming_file_row_field(tmp_path, line, needle):
    (tmp_path / "t.jsonl").write_text(line + "\n")
    with pytest.raises(DataError) as e:
        read_tests(str(tmp_path))
    assert str(e.value).startswith(str(tmp_path / "t.jsonl")) and needle in str(e.value)


@pytest.mark.parametrize("mutate,needle", [
    (lambda t: t["attr1"].update(category=""), "field 'attr1.category': empty"),
    (lambda t: t["targ2"].update(examples="not a list"), "field 'targ2.examples'"),
    (lambda t: t["attr2"].update(examples=["ok", 3]), "field 'attr2.examples'"),
])
def test_bad_fields_on_the_second_row(tmp_path, mutate, needle):
    good = json.loads((SHIPPED / "weat7.jsonl").read_text())
    bad = json.loads(json.dumps(good))
    mutate(bad)
    (tmp_path / "two.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError) as e:
        read_tests(str(tmp_path))
    assert f"two.jsonl:2: {needle}" in str(e.value)
    r = subprocess.run([sys.executable, "-m", "lora_lab.run", "model=minilm", "world=seat", f"world.path={tmp_path}",
                        f"cache_dir={tmp_path / 'c'}", f"hydra.run.dir={tmp_path / 'o'}"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr


@pytest.mark.parametrize("overrides,needle", [
    (["world=seat"], "world=seat needs a sentence encoder"),
    (["model=minilm"], "model=minilm is a sentence encoder"),
])
def test_model_and_world_must_fit(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        validate(compose_cfg(overrides))


def test_minilm_seat_end_to_end(tmp_path):
    frames = {}
    for fam in ("lora", "steer"):
        out = run(compose_cfg(["model=minilm", "model.device=cpu", "world=seat", f"family={fam}", "adapters.n=2",
                               "adapters.steps=12", "compose.orderings=1", "logger.mode=disabled", "progress=false", "latency.repeats=3", "latency.settle_s=0",
                               f"cache_dir={tmp_path / 'c'}"]), output_dir=tmp_path / fam)
        frames[fam] = out["results"]
        assert all(r["gap"] < r["base_gap"] for r in out["adapters"]["rows"])  # each adapter shrinks its |d|
        assert out["base"]["effect_size[weat1]"] > 0.5  # flowers/insects vs pleasant/unpleasant: a known bias
    df = pd.concat(frames.values())
    assert {"seat_effect_size", "seat_similarity_spearman"} <= set(df.columns)
    k0, full = df[df.k == 0], df[df.k == 2]
    assert (k0.seat_similarity_spearman == 1.0).all() and df.quality_ppl_ratio.isna().all()
    assert (full.removal_gap == k0.bias_target_gap.iloc[0]).all()  # the base came back exactly
    assert (full.bias_target_gap < full.removal_gap).all()
    assert task_effects_match_report(tmp_path)


def task_effects_match_report(tmp_path):
    rep = json.loads((tmp_path / "lora" / "base_report.json").read_text())
    c = validate(compose_cfg(["model=minilm", "model.device=cpu", "world=seat"]))
    return abs(rep["mean_abs_effect_size"]) > 0 and set(build_task(c.world).world.tests) == {
        k[len("effect_size["):-1] for k in rep if k.startswith("effect_size[")}
