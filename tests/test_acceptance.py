"""The issues' acceptance bars on the default config (the real base model, trained once here).

Wall-clock limits are measured and reported (README, closing notes, bench/), not asserted here.
"""

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, compose_cfg
from lora_lab.eval.metrics import METRICS
from lora_lab.run import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("default_cache")


@pytest.fixture(scope="module")
def default_run(default_cache, tmp_path_factory):
    """Run the default config with extra overrides against one cache shared by this module."""
    cache = default_cache
    out = tmp_path_factory.mktemp("runs")
    counter = iter(range(100))
    # Few timed passes here: only the sweep below checks latency, with the default settings.
    return lambda *o: run(compose_cfg(["progress=false", f"cache_dir={cache}", "latency.repeats=3", "latency.warmup=1",
                                      "latency.settle_s=0", *o]),
                          output_dir=out / str(next(counter)))


def test_issue1_base_model(default_run):
    rep = default_run()["base"]
    assert rep["fit_tv"] <= 0.05
    assert rep["fact_acc"] >= 0.95
    assert rep["explicit_acc"] >= 0.95
    weights = load_file(f"{rep['model_path']}/model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values())
    again = default_run()["base"]
    assert again["cache_hit"] and again["cache_key"] == rep["cache_key"]


def test_issue2_lora_default(default_run):
    rows = default_run()["adapters"]["rows"]
    assert len(rows) == 16
    for r in rows:
        assert r["reduction"] >= 0.8, r  # each adapter alone cuts its own gap by >= 80%
        assert r["fact_acc"] >= 0.90, r  # retain_fraction 0.5 keeps the facts
        assert r["cal_reachable"] and abs(r["cal_reduction"] - 0.8) <= 0.05, r


def test_issue2_steer_bludgeon(default_run):
    rows = default_run("family=steer", "adapters.retain_fraction=0")["adapters"]["rows"]
    for r in rows:
        assert r["reduction"] >= 0.8, r
        assert r["n_params"] == 2 * 128  # one vector per block
        if r["cal_reachable"]:
            assert abs(r["cal_reduction"] - 0.8) <= 0.05, r


def test_issue2_prompt_baseline(default_run):
    rows = default_run("family=prompt")["adapters"]["rows"]
    assert all(r["gap"] <= 0.05 and r["n_params"] == 0 for r in rows)


def test_issue2_calibration_matches_strength_across_families(default_run):
    for family in ("lora", "steer"):
        out = default_run(f"family={family}", "adapters.calibrate=true")["adapters"]
        for r in out["rows"]:
            if r["cal_reachable"]:
                assert abs(r["cal_reduction"] - 0.8) <= 0.05, r
            else:  # reported, never hidden: the best reduction found is below the goal
                assert r["cal_reduction"] < 0.8, r


def test_issue3_default_sweep(default_run, default_cache, tmp_path):
    """`python -m lora_lab.run +sweep=stacking`, as typed (base and adapters from this module's cache)."""
    default_run()  # make sure the base is built (shared with the tests above)
    sweep = tmp_path / "sweep"
    r = subprocess.run(
        [sys.executable, "-m", "lora_lab.run", "+sweep=stacking", f"cache_dir={default_cache}", "progress=false",
         f"hydra.sweep.dir={sweep}", "latency.repeats=10", "latency.warmup=2"],  # fewer timed passes: CI time
        cwd=ROOT, env={**os.environ, "WANDB_MODE": "offline"}, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    df = pd.read_parquet(sweep / "results.parquet")
    assert set(df.family) == {"lora", "steer", "prompt"}
    assert df.ordering.nunique() >= 3
    for _, g in df.groupby(["family", "merge", "ordering"]):
        assert sorted(g.k) == list(range(17))  # every k of the schedule
    assert not df[list(METRICS)].isna().any().any()
    base_gap = df[df.k == 0].bias_target_gap.iloc[0]
    full = df[df.k == 16]
    assert (full.removal_gap == base_gap).all()  # all targets removed again: the base gap, exactly
    assert (df[df.k == 0].removal_gap == base_gap).all()
    assert len(list(sweep.glob("*/wandb/offline-run-*"))) == 3
    assert f"python -m analysis.report {sweep}" in r.stdout  # the end-of-sweep summary says what to do next

    # issue 4: the report on the default sweep's output
    from analysis.report import main

    assert main([str(sweep)]) == 0
    report = sweep / "report"
    assert len(list(report.glob("fig_*.pdf"))) == len(list(report.glob("fig_*.png"))) == 9  # 7 metrics, interference, latency
    claims = (report / "claims.md").read_text()
    for h in ("H1 (lora)", "H1 (steer)", "H2", "H3 (lora)", "H4a (lora)", "H5", "H6 (lora merged)", "H6 (lora unmerged)",
              "H6 (steer hooks)", "H6 (prompt rewrite)"):
        assert f"| {h} |" in claims

    # issue 6: latency in every row. Bounds are loose (CI timings are noisy); the report states the numbers.
    assert (df.latency_ms > 0).all() and df[df.family == "lora"].latency_unmerged_ms.notna().all()
    lora = df[df.family == "lora"].groupby("k")[["latency_ms", "latency_unmerged_ms"]].median()
    assert 0.5 < lora.latency_ms[16] / lora.latency_ms[0] < 2  # merged: the base model's cost
    assert lora.latency_unmerged_ms[16] / lora.latency_unmerged_ms[0] > 2  # 16 unmerged adapters: 16 extra products per layer
