"""The default config's bars, end to end (the real base model, trained once here): the base
model's fit, each family's adapters alone, the stacking sweep as typed, and its report.

Wall-clock limits are measured and reported (README, bench/), not asserted here. The sweep runs one
seed here (CI time); the 5-seed default is measured and reported in the README.
"""

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, compose_cfg
from lora_lab import catalog
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


def test_default_base_fits_the_world(default_run):
    rep = default_run()["base"]
    assert rep["fit_tv"] <= 0.05
    assert rep["fact_acc"] >= 0.95
    assert rep["explicit_acc"] >= 0.95
    weights = load_file(f"{rep['model_path']}/model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values())
    again = default_run()["base"]
    assert again["cache_hit"] and again["cache_key"] == rep["cache_key"]


def test_default_lora_adapters_each_cut_their_gap(default_run):
    rows = default_run()["adapters"]["rows"]
    assert len(rows) == 16
    for r in rows:
        assert r["reduction"] >= 0.8, r  # each adapter alone cuts its own gap by >= 80%
        # retain_fraction 0.5 keeps the facts, though the probes are never in the retain text
        # (measured: worst adapter 0.875 on seed 0; 0.922 when the retain text held the probes)
        assert r["quality_fact_acc"] >= 0.85, r
        assert r["cal_reachable"] and abs(r["cal_reduction"] - 0.8) <= 0.05, r


def test_narrow_steering_adapters_each_cut_their_gap(default_run):
    rows = default_run("family=steer", "adapters.retain_fraction=0")["adapters"]["rows"]
    for r in rows:
        assert r["reduction"] >= 0.8, r
        assert r["n_params"] == 2 * 128  # one vector per block
        if r["cal_reachable"]:
            assert abs(r["cal_reduction"] - 0.8) <= 0.05, r


def test_prompt_baseline_reaches_every_target(default_run):
    rows = default_run("family=prompt")["adapters"]["rows"]
    assert all(r["gap"] <= 0.05 and r["n_params"] == 0 for r in rows)


def test_calibration_matches_strength_across_families(default_run):
    for family in ("lora", "steer"):
        out = default_run(f"family={family}", "adapters.calibrate=true")["adapters"]
        for r in out["rows"]:
            if r["cal_reachable"]:
                assert abs(r["cal_reduction"] - 0.8) <= 0.05, r
            else:  # reported, never hidden: the best reduction found is below the goal
                assert r["cal_reduction"] < 0.8, r


def test_default_sweep_and_its_report(default_run, default_cache, tmp_path):
    """`python -m lora_lab.run +sweep=stacking`, as typed (base and adapters from this module's cache)."""
    default_run()  # make sure the base is built (shared with the tests above)
    sweep = tmp_path / "sweep"
    r = subprocess.run(
        [sys.executable, "-m", "lora_lab.run", "+sweep=stacking", f"cache_dir={default_cache}", "progress=false",
         f"hydra.sweep.dir={sweep}", "seed=0", "latency.repeats=10", "latency.warmup=2"],  # one seed, fewer passes: CI time
        cwd=ROOT, env={**os.environ, "WANDB_MODE": "offline"}, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Joblib.Parallel" in r.stdout + r.stderr  # the sweep's jobs run in parallel
    df = pd.read_parquet(sweep / "results.parquet")
    assert set(df.family) == {"lora", "steer", "prompt"} and set(df.seed) == {0}
    assert df.ordering.nunique() >= 3
    for _, g in df.groupby(["family", "merge", "ordering"]):
        assert sorted(g.k) == list(range(17))  # every k of the schedule
    assert not df[[m.column for m in catalog.world("synthetic").metrics]].isna().any().any()
    base_gap = df[df.k == 0].bias_target_gap.iloc[0]
    full = df[df.k == 16]
    assert (full.removal_gap == base_gap).all()  # all targets removed again: the base gap, exactly
    assert (df.removal_gap == df.bias_base_gap).all()  # at every k, on the included targets
    assert (df[df.k == 0].removal_gap == base_gap).all()
    assert len(list(sweep.glob("*/wandb/offline-run-*"))) == 3
    assert f"python -m analysis.report {sweep}" in r.stdout  # the end-of-sweep summary says what to do next

    # the report on the sweep's output: every claim is about one seed here, so none can be tested
    from analysis.report import main

    assert main([str(sweep)]) == 0
    report = sweep / "report"
    # 14 metrics (the world's own, the activation shift, FLOPs per token in both LoRA modes, the prompt tokens
    # the pre-processor adds), interference, latency, quality against activation shift, retention, the k = 1 frontier
    assert len(list(report.glob("fig_*.pdf"))) == len(list(report.glob("fig_*.png"))) == 19
    claims = (report / "claims.md").read_text()
    for h in ("H1 (lora, sum)", "H1 (steer, sum)", "H2 (steer vs lora, sum)", "H3 leave-one-out (lora, sum)", "H4a (lora, sum)", "H5a (prompt)",
              "H6 (lora merged, sum)", "H6 (lora unmerged, sum)", "H6 (steer hooks, sum)", "H6 (prompt rewrite, sum)"):
        assert f"| {h} |" in claims
    rows = [line for line in claims.splitlines() if line.startswith("| H")]
    assert rows and not any("| supported" in line for line in rows) and "one seed" in claims

    # latency on the timed ordering of every curve. Bounds are loose (CI timings are noisy); the report states the numbers.
    timed = df[df.ordering == 0]
    assert (timed.latency_ms > 0).all() and timed[timed.family == "lora"].latency_unmerged_ms.notna().all()
    lora = timed[timed.family == "lora"].set_index("k")
    merged = lora.latency_ms / lora.latency_base_ms  # each timing over its paired base
    assert 0.5 < merged[16] < 2  # merged: the base model's cost
    assert (lora.latency_unmerged_ms / lora.latency_unmerged_base_ms)[16] > 2  # 16 unmerged adapters: 16 extra products per layer
