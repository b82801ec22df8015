"""The analysis report: every statistic against an independent loop computation on tables with
known effects, settings never pooled, collapse handling, the report files, determinism, errors,
and the dashboard in a real headless Chromium. Calibration by simulation: tests/test_calibration.py."""

import json
import os
import re
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import figures, stats
from analysis.report import ReportError, build, claims_markdown, load, main
from analysis.simulate import SCHEMA, simulate, simulate_gaps
from conftest import ROOT
from lora_lab.schema import Metric, TableSchema, write_table


def table(effect=0.0, h2=0.0, seeds=5, seed=0, **config):
    """One simulated results table (lora, steer, prompt; k = 0..4; 3 orderings) whose rows carry
    `config` fields, as a sweep's rows do."""
    df = simulate(1, seeds=seeds, effect=effect, h2=h2, rng_seed=seed)
    return with_config(df, **config)


def with_config(df, **fields):
    conf = df.config.map(json.loads)
    conf = conf.map(lambda c: {**{k: v for k, v in c.items() if k != "sim.table"}, **fields})
    df = df.assign(config=conf.map(lambda c: json.dumps(c, sort_keys=True)))
    return df.assign(config_hash=df.config.map(lambda c: f"{zlib.crc32(c.encode()):08x}"))


def claim(claims, cid, setting=""):
    return next(c for c in claims if c.id == cid and c.setting == setting)


def _write(df, d, schema=SCHEMA):
    for i, (_, g) in enumerate(df.groupby("config_hash")):
        write_table(g, d / str(i) / "results.parquet", schema)
    write_table(df, d / "results.parquet", schema)  # the sweep-level copy: must not double count
    return d


# ----------------------------------------------------------------------------- oracles


def per_seed_by_hand(df, family, metric, rows=lambda g: g):
    """Independent loop: least-squares slope per (seed, ordering) curve, mean over the orderings of a seed."""
    out = {}
    for seed in sorted(df.seed.unique()):
        slopes = []
        for o in sorted(df.ordering.unique()):
            g = rows(df[(df.family == family) & (df.seed == seed) & (df.ordering == o)]).sort_values("k")
            slopes.append(np.polyfit(g.k.to_numpy(float), g[metric].to_numpy(float), 1)[0])
        out[seed] = np.mean(slopes)
    return np.array([out[s] for s in sorted(out)])


def test_h1_is_a_t_test_over_per_seed_slopes():
    df = table(effect=3.0)
    a = stats.analyse(df, SCHEMA)
    c = claim(a.claims, "H1 (lora, sum)")
    x = per_seed_by_hand(df, "lora", "quality_nll_delta")
    assert c.n == 5 and c.value == pytest.approx(x.mean())
    assert c.p == pytest.approx(sps.ttest_1samp(x, 0, alternative="greater").pvalue)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert c.ci == pytest.approx((lo, hi))
    assert c.verdict == "supported"


def test_h2_pairs_per_seed_slopes_by_seed():
    df = table(effect=0.2, h2=4.0)
    a = stats.analyse(df, SCHEMA)
    c = claim(a.claims, "H2 (steer vs lora, sum)")
    d = per_seed_by_hand(df, "steer", "quality_nll_delta") - per_seed_by_hand(df, "lora", "quality_nll_delta")
    assert c.value == pytest.approx(d.mean()) and c.n == 5
    assert c.p == pytest.approx(sps.ttest_1samp(d, 0, alternative="greater").pvalue)
    assert c.verdict == "supported"
    at_2 = a.per_k[a.per_k.k == 2].iloc[0]  # secondary table: the difference at k = 2, per seed
    by_hand = [df[(df.family == f) & (df.k == 2) & (df.seed == s)].quality_nll_delta.mean() for s in range(5) for f in ("steer", "lora")]
    diffs = np.array(by_hand[0::2]) - np.array(by_hand[1::2])
    assert at_2["diff"] == pytest.approx(diffs.mean()) and at_2.p == pytest.approx(sps.ttest_1samp(diffs, 0, alternative="greater").pvalue)
    assert (a.per_k.p_adj >= a.per_k.p).all()  # Holm within the table


def test_h2_reversed_effect_is_not_supported():
    a = stats.analyse(table(effect=4.0, h2=-3.0), SCHEMA)  # steering degrades *slower*
    assert claim(a.claims, "H2 (steer vs lora, sum)").verdict == "not supported"


def test_holm_against_a_loop_implementation():
    rng = np.random.default_rng(3)
    for _ in range(50):
        p = rng.uniform(0, 0.2, rng.integers(1, 12))
        p[rng.random(len(p)) < 0.2] = np.nan
        ok = np.flatnonzero(~np.isnan(p))
        order = sorted(ok, key=lambda i: p[i])
        expected, running = np.full(len(p), np.nan), 0.0
        for rank, i in enumerate(order):  # Holm (1979): step down, monotone, capped at 1
            running = max(running, min(1.0, (len(ok) - rank) * p[i]))
            expected[i] = running
        np.testing.assert_allclose(stats.holm(p), expected)


def test_tost_against_two_one_sided_t_tests():
    x = np.array([0.02, -0.03, 0.05, 0.01, -0.01])
    s = stats.tost_inference(pd.DataFrame({"n": [5], "mean": [x.mean()], "sd": [x.std(ddof=1)]}), -0.1, 0.1)
    p = max(sps.ttest_1samp(x, -0.1, alternative="greater").pvalue, sps.ttest_1samp(x, 0.1, alternative="less").pvalue)
    assert s.p[0] == pytest.approx(p)
    assert (s.lo[0], s.hi[0]) == pytest.approx(sps.t.interval(0.90, 4, loc=x.mean(), scale=sps.sem(x)))


def test_theil_sen_against_scipy():
    rng = np.random.default_rng(0)
    k = np.arange(9.0)
    y = 2 + 0.3 * k + rng.normal(0, 0.1, (6, 9))
    y[0, 3] = np.nan  # a missing point
    y[1, 4] = 50.0  # an outlier: moves the line little
    slope, intercept = stats.theil_sen(np.broadcast_to(k, y.shape), y)
    for i in range(6):
        ok = ~np.isnan(y[i])
        ref = sps.theilslopes(y[i][ok], k[ok])
        assert slope[i] == pytest.approx(ref.slope) and intercept[i] == pytest.approx(ref.intercept)
    assert slope[1] == pytest.approx(0.3, abs=0.05)


def test_band_is_a_t_interval_over_per_seed_means():
    df = table(effect=0.5)
    g = df[df.family == "lora"]
    b = stats.band(g, "quality_nll_delta").set_index("k")
    x = g[g.k == 3].groupby("seed").quality_nll_delta.mean().to_numpy()
    assert b.loc[3, "mean"] == pytest.approx(x.mean()) and b.loc[3, "n"] == 5
    assert (b.loc[3, "lo"], b.loc[3, "hi"]) == pytest.approx(sps.t.interval(0.95, 4, loc=x.mean(), scale=sps.sem(x)))


def test_h6_latency_ratios_per_seed():
    df = table(effect=3.0)
    a = stats.analyse(df, SCHEMA)
    c = claim(a.claims, "H6 (lora unmerged, sum)")
    logs = []
    for s in range(5):
        per_o = []
        for o in range(3):  # each timing over its paired reference, a Theil-Sen line over k >= 1: its rise from 1 to 4
            g = df[(df.family == "lora") & (df.seed == s) & (df.ordering == o) & (df.k >= 1)].sort_values("k")
            r = sps.theilslopes(np.log(g.latency_unmerged_ms / g.latency_unmerged_base_ms), g.k)
            per_o.append(r.slope * 3)
        logs.append(np.mean(per_o))
    assert c.value == pytest.approx(np.exp(np.mean(logs))) and c.n == 5
    assert c.p == pytest.approx(sps.ttest_1samp(logs, 0, alternative="greater").pvalue)
    hooks = claim(a.claims, "H6 (steer hooks, sum)")  # a cost at every k >= 1: the median paired log ratio
    steps = [np.mean([np.median(np.log(g.latency_ms / g.latency_base_ms)[g.k >= 1])
                      for _, g in df[(df.family == "steer") & (df.seed == s)].groupby("ordering")]) for s in range(5)]
    assert hooks.value == pytest.approx(np.exp(np.mean(steps)))
    merged = claim(a.claims, "H6 (lora merged, sum)")  # planted 1.2 - 0.06: flat within ±20%
    assert merged.kind == "equivalence" and merged.ci_level == 0.90 and merged.verdict == "supported"
    rng = np.random.default_rng(0)
    noise = np.exp(rng.normal(0, 0.01, len(df)))
    slow = df.assign(latency_ms=np.where(df.family == "lora", df.latency_base_ms * (1 + 0.5 * df.k) * noise, df.latency_ms))
    assert claim(stats.analyse(slow, SCHEMA).claims, "H6 (lora merged, sum)").verdict == "not supported"  # merged, but not free
    # unmerged at a constant ×1.3 whatever k: a cost, but it does not grow
    level = df.assign(latency_unmerged_ms=df.latency_unmerged_base_ms * np.where(df.k > 0, 1.3, 1.0)
                      * np.exp(rng.normal(0, 0.01, len(df))))
    grows = claim(stats.analyse(level, SCHEMA).claims, "H6 (lora unmerged, sum)")
    assert grows.verdict != "supported" and grows.value == pytest.approx(1.0, abs=0.05)


# ----------------------------------------------------------------------------- never a verdict from nothing


@pytest.mark.parametrize("slope", [0.25, -0.25])
def test_zero_spread_is_inconclusive_with_a_note_never_p_zero(slope):
    df = table(effect=1.0)
    lora = df.family == "lora"
    df.loc[lora, "quality_nll_delta"] = slope * df.loc[lora, "k"]  # every seed and ordering: the same slope
    c = claim(stats.analyse(df, SCHEMA).claims, "H1 (lora, sum)")
    assert np.isnan(c.p) and np.isnan(c.p_adj) and c.verdict == "inconclusive"  # on either side of the null
    assert "zero spread" in c.note and c.value == pytest.approx(slope)


def loo_table(df, own, others, sd=0.1, seed=0):
    """The leave-one-out rows of `df`'s target gaps (`simulate_gaps`' layout), with the share of
    each left-out target's reduction that comes back set to `own` and the other targets' to
    `others`, each plus a per-seed draw of SD `sd` (so that seeds differ)."""
    g = simulate_gaps(df, rng_seed=seed)
    rng = np.random.default_rng(seed)
    draw = {h: rng.normal(0, sd, 2) for h in g.config_hash.unique()}
    o = own + g.config_hash.map(lambda h: draw[h][0])
    r = others + g.config_hash.map(lambda h: draw[h][1])
    key = [g.config_hash, g["merge"], g.ordering, g.k]
    rest_gap = (g.groupby(key).gap.transform("sum") - g.gap) / (g.k - 1)
    rest_base = (g.groupby(key).base_gap.transform("sum") - g.base_gap) / (g.k - 1)
    return g.assign(loo_gap=g.gap + o * (g.base_gap - g.gap), loo_others=rest_gap + r * (rest_base - rest_gap))


@pytest.mark.parametrize("own, others, supported", [(1.0, 0.0, True),  # i's bias returns, the others hold
                                                    (0.0, 0.0, False),  # leaving one out changes nothing
                                                    (1.0, 1.0, False),  # every target's bias returns alike
                                                    (0.0, 0.5, False)])  # the others move, its own does not
def test_h3_leave_one_out_follows_the_planted_return_shares(own, others, supported):
    df = table(effect=1.0)
    c = claim(stats.analyse(df, SCHEMA, gaps=loo_table(df, own, others)).claims, "H3 leave-one-out (lora, sum)")
    assert c.n == 5 and c.hypothesis == "H3"
    assert c.value == pytest.approx(own - others, abs=0.15)
    assert (c.verdict == "supported") == supported, c
    if own - others < 0:
        assert c.verdict == "not supported"
    assert "own share" in c.note and "others' share" in c.note


def test_h3_leave_one_out_shares_by_hand():
    """The statistic against a loop: per (curve, k, i), own share minus the others' share on their
    mean gaps; mean per curve, then per seed."""
    df = table(effect=1.0)
    g = loo_table(df, 0.8, 0.3, sd=0.3)
    by_seed = []
    for seed in sorted(g.seed.unique()):
        curve = g[(g.family == "lora") & (g.seed == seed) & (g.ordering == 0)]
        values = []
        for _, at in curve.groupby("k"):
            for _, r in at.iterrows():
                rest = at[at.adapter != r.adapter]
                own = (r.loo_gap - r.gap) / (r.base_gap - r.gap)
                oth = (r.loo_others - rest.gap.mean()) / (rest.base_gap.mean() - rest.gap.mean())
                values.append(own - oth)
        by_seed.append(np.mean(values))
    c = claim(stats.analyse(df, SCHEMA, gaps=g).claims, "H3 leave-one-out (lora, sum)")
    assert c.value == pytest.approx(np.mean(by_seed), rel=1e-9)
    assert c.p == pytest.approx(sps.ttest_1samp(by_seed, 0, alternative="greater").pvalue, rel=1e-6)


def test_h3_without_leave_one_out_measurements_is_not_testable():
    df = table(effect=1.0)
    for gaps in (None, simulate_gaps(df).drop(columns=["loo_gap", "loo_others"])):
        c = claim(stats.analyse(df, SCHEMA, gaps=gaps).claims, "H3")
        assert c.verdict == "not testable" and "leave-one-out" in c.note


def test_one_seed_is_inconclusive_and_nan_never_supports():
    a = stats.analyse(table(effect=5.0, seeds=1), SCHEMA)
    c = claim(a.claims, "H1 (lora, sum)")
    assert c.n == 1 and np.isnan(c.p) and c.verdict == "inconclusive" and "one seed" in c.note
    assert all(c.verdict != "supported" for c in a.claims)
    for p in (np.nan, 0.001):
        c = stats.Claim("H", "", "", n=5, p=p, p_adj=p, ci=(np.nan, np.nan))
        assert stats.decide(c, 0.05) == ("inconclusive" if np.isnan(p) else "supported")


def test_untestable_hypotheses_say_so():
    df = table(effect=1.0)
    a = stats.analyse(df[df.family == "lora"], SCHEMA)
    ids = {c.id: c for c in a.claims}
    assert ids["H2"].verdict == "not testable" and "weight-space families" in ids["H2"].note
    assert ids["H5a"].verdict == "not testable" and not any(c.startswith("H5b") for c in ids)
    assert "H6 (lora merged, sum)" in ids


# ----------------------------------------------------------------------------- what the table declares


def world_schema(world, *metrics, keep=lambda m: True):
    """`simulate.SCHEMA` with one more world: the simulated world's metrics that `keep` accepts, then `metrics`."""
    own = [m for m in SCHEMA.metrics["synthetic"] if keep(m)]
    return TableSchema({**SCHEMA.metrics, world: [*own, *metrics]}, list(SCHEMA.modes), dict(SCHEMA.families))


SCORE = Metric("score", "score (fraction)", "fraction", "higher", "quality", "Score", 0.0, None, primary=True)


@pytest.mark.parametrize("falling", [True, False])
def test_h1_turns_a_higher_is_better_quality_metric_into_a_loss(falling):
    """A world whose primary quality metric is better when higher: H1 tests the slope of its negation."""
    schema = world_schema("scored", SCORE, keep=lambda m: m.role != "quality")
    df = table(effect=3.0).assign(world="scored")
    noise = np.random.default_rng(0).normal(0, 0.3, len(df))
    df["score"] = 1.0 - df.quality_nll_delta if falling else 1.0 + noise  # falls with k, or flat
    df = df.drop(columns=["quality_nll_delta", "quality_ppl_ratio"])
    c = claim(stats.analyse(df, schema).claims, "H1 (lora, sum)")
    assert c.statistic.startswith("slope of score (fraction, as a loss)")
    x = -per_seed_by_hand(df, "lora", "score")
    assert c.n == 5 and c.value == pytest.approx(x.mean())
    assert c.p == pytest.approx(sps.ttest_1samp(x, 0, alternative="greater").pvalue)
    if falling:
        assert c.value > 0 and c.verdict == "supported"
    else:
        assert c.verdict != "supported"


def test_h4_tests_towards_worse_and_says_when_a_world_declares_nothing():
    """H4a on a control metric where lower is better (an error rate) tests a rising slope; a world
    that declares no diversity metric gets H4b "not testable", with why."""
    error = Metric("control_error", "explicit-prompt error", "fraction", "lower", "control", "Control error", 0.0, 1.0)
    schema = world_schema("errs", error, keep=lambda m: m.role not in ("control", "diversity"))
    df = table(effect=3.0).assign(world="errs")
    df["control_error"] = 1.0 - df.control_explicit_acc  # the accuracy falls with k: the error rises
    claims = stats.analyse(df, schema).claims
    c = claim(claims, "H4a (lora, sum)")
    x = per_seed_by_hand(df, "lora", "control_error")
    assert c.kind == "greater" and c.value == pytest.approx(x.mean()) and c.value > 0 and c.verdict == "supported"
    assert "explicit-prompt error" in c.statistic
    for arm in ("lora", "steer"):
        c = claim(claims, f"H4b ({arm}, sum)")
        assert c.verdict == "not testable" and c.note == "world errs declares no diversity metric"


def test_figures_use_the_labels_the_rows_world_declares(tmp_path, monkeypatch):
    """A world's own column is drawn with its declared label; an undeclared float column with its
    name; each panel (setting) labelled as its own world declares the metric."""
    toy = Metric("toy_score", "toy score (units)", "units", "none", "diagnostic", "Toy score")
    pp = Metric("bias_target_gap", "gap (pp)", "pp", "lower", "bias", "Gap in points", 0.0, 50.0)
    schema = world_schema("toy", toy)
    schema = TableSchema({**schema.metrics, "points": [pp]}, schema.modes, schema.families)
    one = table(effect=1.0, seeds=2, **{"world.name": "toy"}).assign(world="toy")
    other = table(effect=1.0, seeds=2, seed=1, **{"world.name": "points"}).assign(world="points")
    df = pd.concat([one, other], ignore_index=True)
    df["toy_score"] = np.where(df.world == "toy", 0.1 * df.k, np.nan)
    df["undeclared_extra"] = 1.0 + df.k
    a = stats.analyse(df, schema)
    ylabels, save = {}, figures._save

    def spy(fig, out, name):
        ylabels[name] = [ax.get_ylabel() for ax in fig.axes if ax.get_visible()]
        return save(fig, out, name)

    monkeypatch.setattr(figures, "_save", spy)
    figures.all_figures(a.data, schema, None, tmp_path)
    assert (tmp_path / "fig_toy_score.png").exists() and (tmp_path / "fig_toy_score.pdf").exists()
    assert ylabels["fig_toy_score"] == ["toy score (units)"] * 2
    assert ylabels["fig_undeclared_extra"] == ["undeclared_extra"] * 2
    assert ylabels["fig_bias_target_gap"] == ["gap (pp)", "TV distance to target"]  # settings: points, then toy
    assert "fig_bias_base_gap" not in ylabels  # declared figure=False: drawn with no figure of its own
    assert figures.metric_label(schema, "toy", "toy_score") == ("toy score (units)", "Toy score")
    assert figures.value_range(schema, "points", "bias_target_gap") == (0.0, 50.0)


def drawn_lines(monkeypatch):
    """{figure name: {line label: its points}}, filled as `figures` saves each figure."""
    drawn, save = {}, figures._save

    def spy(fig, out, name):
        drawn[name] = {line.get_label(): line.get_xydata() for ax in fig.axes for line in ax.get_lines()}
        return save(fig, out, name)

    monkeypatch.setattr(figures, "_save", spy)
    return drawn


def test_quality_against_activation_shift_follows_the_rows(tmp_path, monkeypatch):
    """One point per k at (mean shift, mean quality loss) over seeds, per family; no figure for a
    table without the activation shift."""
    df = table(effect=1.0, seeds=3)
    assert figures.shift_figure(stats.analyse(df, SCHEMA).data, SCHEMA, tmp_path) == []
    df = df.assign(activation_shift=np.where(df.family == "prompt", np.nan, 0.05 * df.k * (1 + (df.family == "steer"))))
    drawn = drawn_lines(monkeypatch)
    a = stats.analyse(df, SCHEMA)
    assert (tmp_path / "fig_quality_vs_shift.png") in figures.shift_figure(a.data, SCHEMA, tmp_path)
    lines = drawn["fig_quality_vs_shift"]
    steer = lines["steering (output), sum"]
    g = df[(df.family == "steer") & (df["merge"] == "sum")]
    by_hand = g.groupby(["k", "seed"])[["activation_shift", "quality_nll_delta"]].mean().groupby("k").mean()
    np.testing.assert_allclose(steer, by_hand.to_numpy())
    assert not any(label.startswith("prompt") for label in lines)  # no shift: the model is left as it is


def test_retention_is_one_minus_drift_per_merge_beside_the_anchor(tmp_path, monkeypatch):
    """One line per (family, merge): at each k ≥ 1, 1 − the mean over seeds of each seed's mean
    off-target drift over orderings; the reported anchor beside them; none without drift."""
    df = table(effect=1.0, seeds=3)
    assert figures.retention_figure(stats.analyse(df.assign(bias_offtarget_drift=np.nan), SCHEMA).data, SCHEMA,
                                    tmp_path) == []
    df = pd.concat([df, df[df.family == "lora"].assign(merge="switch")])
    rng = np.random.default_rng(0)
    df = df.assign(bias_offtarget_drift=0.02 * df.k * (1 + (df["merge"] == "switch")) + rng.uniform(0, 0.01, len(df)))
    drawn = drawn_lines(monkeypatch)
    a = stats.analyse(df, SCHEMA)
    assert (tmp_path / "fig_retention.png") in figures.retention_figure(a.data, SCHEMA, tmp_path)
    lines = drawn["fig_retention"]
    for merge in ("sum", "switch"):
        g = df[(df.family == "lora") & (df["merge"] == merge) & (df.k > 0) & ~df.collapsed]
        by_hand = 1 - g.groupby(["k", "seed"]).bias_offtarget_drift.mean().groupby(level="k").mean()
        got = lines[next(n for n in lines if n.startswith("LoRA") and n.endswith(f", {merge}"))]
        np.testing.assert_allclose(got, np.column_stack([by_hand.index, by_hand.to_numpy()]))
    anchor = next(v for n, v in lines.items() if "reported" in n)
    np.testing.assert_allclose(anchor, np.array(figures.RETENTION_ANCHOR, dtype=float))


def test_load_returns_the_declarations_of_every_file_merged(tmp_path):
    d = _write(table(), tmp_path / "sweep")
    other = table(seed=1, **{"world.name": "toy"}).assign(world="toy")
    write_table(other, d / "toy" / "results.parquet", world_schema("toy"))
    _, _, schema = load(d)
    assert set(schema.metrics) == {"synthetic", "toy"} and schema.modes == SCHEMA.modes
    assert schema.families == SCHEMA.families
    write_table(table(), d / "old" / "results.parquet")  # no declarations: an older lora_lab wrote it
    with pytest.raises(ReportError, match=r"old/results\.parquet: written by an older lora_lab \(no metric declarations"):
        load(d)


def test_simulated_declarations_are_the_plugins_own():
    """`simulate.SCHEMA` copies the synthetic world's metrics and the families' modes, labels,
    colours and `control_of` by value (the analysis imports no plugin): it must not drift from them."""
    from lora_lab import catalog
    from lora_lab.results import family_declaration
    from lora_lab.worlds.synthetic import METRICS

    assert SCHEMA.metrics["synthetic"] == list(METRICS)
    fams = catalog.families()
    assert set(SCHEMA.families) <= set(fams)
    for name, decl in SCHEMA.families.items():
        assert decl == family_declaration(fams[name]), name
    assert {f for f, d in SCHEMA.families.items() if d.get("control_of")} == {"null_lora", "null_steer"}
    assert SCHEMA.modes == [m for name in SCHEMA.families for m in fams[name].modes]


# ----------------------------------------------------------------------------- settings are never pooled


def test_two_lambdas_give_two_claims_each_with_its_own_slope():
    df = pd.concat([table(effect=2.0, seed=1, **{"compose.lam": 1.0}), table(effect=0.1, seed=2, **{"compose.lam": 0.5})],
                   ignore_index=True)
    a = stats.analyse(df, SCHEMA)
    assert a.setting_fields == ["compose.lam"]
    h1 = {c.setting: c for c in a.claims if c.id == "H1 (lora, sum)"}
    assert set(h1) == {"compose.lam=1.0", "compose.lam=0.5"}  # never one averaged claim
    assert h1["compose.lam=1.0"].value == pytest.approx(2.0, abs=0.8) and h1["compose.lam=0.5"].value == pytest.approx(0.1, abs=0.8)
    for s, c in h1.items():
        one = df[df.config.str.contains(f'"compose.lam": {s.split("=")[1]}')]
        assert c.value == pytest.approx(per_seed_by_hand(one, "lora", "quality_nll_delta").mean())
    h2 = [c for c in a.claims if c.id.startswith("H2")]
    assert len(h2) == 2 and {c.setting for c in h2} == set(h1)
    tested = [c for c in a.claims if c.p == c.p]
    np.testing.assert_allclose([c.p_adj for c in tested], stats.holm([c.p for c in tested]))  # Holm over the whole report


def test_a_familys_own_fields_make_arms_not_settings():
    df = pd.concat([table(effect=1.0, seed=1), table(effect=3.0, seed=2)], ignore_index=True)
    second = df.index >= len(df) // 2
    rank = np.where(second, 8, 4)
    df["config"] = [json.dumps({**json.loads(c), **({"family.rank": int(r)} if f == "lora" else {})}, sort_keys=True)
                    for c, f, r in zip(df.config, df.family, rank)]
    df["config_hash"] = df.config + df.seed.astype(str)
    df = df[~(second & (df.family != "lora"))]  # the second table contributes a LoRA variant only
    a = stats.analyse(df, SCHEMA)
    assert a.setting_fields == []
    ids = {c.id for c in a.claims}
    assert {"H1 (lora [family.rank=4], sum)", "H1 (lora [family.rank=8], sum)"} <= ids
    assert {"H2 (steer vs lora [family.rank=4], sum)", "H2 (steer vs lora [family.rank=8], sum)"} <= ids
    assert {"H6 (lora [family.rank=4] merged, sum)", "H6 (lora [family.rank=8] unmerged, sum)"} <= ids


# ----------------------------------------------------------------------------- collapse


def test_collapsed_rows_are_left_out_of_bias_claims_and_bound_h2():
    df = table(effect=1.0, h2=1.0)
    steer_high = (df.family == "steer") & (df.k >= 3)
    df.loc[steer_high, "collapsed"] = True
    df.loc[steer_high, "control_explicit_acc"] = -100.0  # garbage: a collapsed model's renormalised answers
    a = stats.analyse(df, SCHEMA)
    h4 = claim(a.claims, "H4a (steer, sum)")
    x = per_seed_by_hand(df, "steer", "control_explicit_acc", rows=lambda g: g[~g.collapsed])
    assert h4.value == pytest.approx(x.mean())  # the garbage rows are not in it
    h2 = claim(a.claims, "H2 (steer vs lora, sum)")
    assert "k = 0..2" in h2.statistic and "k > 2 left out" in h2.note
    cut = df[df.k <= 2]
    d = per_seed_by_hand(cut, "steer", "quality_nll_delta") - per_seed_by_hand(cut, "lora", "quality_nll_delta")
    assert h2.value == pytest.approx(d.mean())
    t = a.collapsed.set_index("arm")
    assert t.loc["steer", "collapsed"] == steer_high.sum() and t.loc["steer", "first_collapsed_k"] == 3


# ----------------------------------------------------------------------------- null families (controls)


def null_table(effect, null_effect, seeds=10, seed=0):
    """A simulated table with the null families too: real slopes `effect`, null slopes `null_effect`."""
    return with_config(simulate(1, seeds=seeds, effect=effect, null_effect=null_effect, nulls=True, rng_seed=seed))


@pytest.mark.parametrize("real,null", [("lora", "null_lora"), ("steer", "null_steer")])
def test_h1_vs_null_pairs_per_seed_slopes_by_seed(real, null):
    df = null_table(effect=3.0, null_effect=0.0)  # planted: bias adapters degrade more than random ones
    a = stats.analyse(df, SCHEMA)
    c = claim(a.claims, f"H1 vs null ({real} vs {null}, sum)")
    d = per_seed_by_hand(df, real, "quality_nll_delta") - per_seed_by_hand(df, null, "quality_nll_delta")
    assert c.n == 10 and c.value == pytest.approx(d.mean()) and c.hypothesis == "H1 vs null"
    assert c.p == pytest.approx(sps.ttest_1samp(d, 0, alternative="greater").pvalue)
    assert c.ci == pytest.approx(sps.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=sps.sem(d)))
    assert c.p_adj >= c.p and c.verdict == "supported"  # through Holm with every other claim
    assert claim(a.claims, f"H1 ({null}, sum)").value == pytest.approx(per_seed_by_hand(df, null, "quality_nll_delta").mean())


def test_h1_vs_null_is_not_supported_when_the_null_degrades_as_much_or_more():
    same = stats.analyse(null_table(effect=1.0, null_effect=1.0), SCHEMA)  # size alone explains the damage
    for cid in ("H1 vs null (lora vs null_lora, sum)", "H1 vs null (steer vs null_steer, sum)"):
        assert claim(same.claims, cid).verdict != "supported"
    more = stats.analyse(null_table(effect=0.0, null_effect=3.0), SCHEMA)  # random perturbations damage more
    for cid in ("H1 vs null (lora vs null_lora, sum)", "H1 vs null (steer vs null_steer, sum)"):
        c = claim(more.claims, cid)
        assert c.verdict == "not supported" and c.ci[1] < 0


def test_null_arms_enter_h1_only_and_leave_the_other_claims_as_they_were():
    plain = table(effect=1.0, h2=0.5, seeds=5, seed=4)
    with_nulls = with_config(simulate(1, seeds=5, effect=1.0, h2=0.5, null_effect=1.0, nulls=True, rng_seed=4))
    a, b = stats.analyse(plain, SCHEMA), stats.analyse(with_nulls, SCHEMA)
    null_ids = {c.id for c in b.claims} - {c.id for c in a.claims}
    assert null_ids == {"H1 (null_lora, sum)", "H1 (null_steer, sum)", "H1 vs null (lora vs null_lora, sum)",
                        "H1 vs null (steer vs null_steer, sum)"}
    before = {c.id: (c.value, c.p) for c in a.claims}
    assert all(before[c.id] == pytest.approx((c.value, c.p), nan_ok=True) for c in b.claims if c.id in before)
    assert not a.per_k.empty and (a.per_k.weight == "lora").all() and (b.per_k.weight == "lora").all()


def test_h1_vs_null_pairs_arms_by_their_family_fields_and_says_when_a_null_has_no_partner():
    df = null_table(effect=2.0, null_effect=0.0, seeds=5)
    ranked = pd.concat([df, null_table(effect=4.0, null_effect=0.0, seeds=5, seed=1)], ignore_index=True)
    rank = np.where(ranked.index >= len(df), 8, 4)
    ranked["config"] = [json.dumps({**json.loads(c), **({"family.rank": int(r)} if f in ("lora", "null_lora") else {})},
                                   sort_keys=True) for c, f, r in zip(ranked.config, ranked.family, rank)]
    ranked["config_hash"] = ranked.config + ranked.seed.astype(str)
    ranked = ranked[ranked.family.isin(["lora", "null_lora"])]
    a = stats.analyse(ranked, SCHEMA)
    four = claim(a.claims, "H1 vs null (lora [family.rank=4] vs null_lora [family.rank=4], sum)")
    eight = claim(a.claims, "H1 vs null (lora [family.rank=8] vs null_lora [family.rank=8], sum)")
    assert not any("rank=4] vs null_lora [family.rank=8]" in c.id for c in a.claims)
    assert four.value == pytest.approx(2.0, abs=1.2) and eight.value == pytest.approx(4.0, abs=1.2)
    alone = stats.analyse(df[df.family.isin(["null_lora", "steer"])], SCHEMA)
    c = claim(alone.claims, "H1 vs null (null_lora, sum)")
    assert c.verdict == "not testable" and "no lora rows" in c.note


def test_a_null_arm_is_drawn_dashed_in_its_real_familys_colour():
    styles = figures.arm_style(SCHEMA, ["steer", "null_lora", "lora", "null_steer", "lora [family.rank=8]"])
    assert list(styles) == ["lora", "lora [family.rank=8]", "null_lora", "steer", "null_steer"]  # each null after its family
    for real, null in (("lora", "null_lora"), ("steer", "null_steer")):
        assert styles[null]["color"] == styles[real]["color"] == SCHEMA.families[real]["color"]
        assert styles[null]["linestyle"] == "--" and styles[real]["linestyle"] == "-"
        assert styles[null]["label"] == SCHEMA.families[null]["label"]
    assert styles["lora [family.rank=8]"]["linestyle"] != "--"  # a real family's second arm is never dashed
    # declared, not read from the name: a family named null_* that declares no control_of is a real one
    plain = TableSchema(SCHEMA.metrics, SCHEMA.modes, {f: {k: v for k, v in d.items() if k != "control_of"}
                                                       for f, d in SCHEMA.families.items()})
    assert figures.arm_style(plain, ["null_lora"])["null_lora"]["linestyle"] == "-"


def test_report_of_a_table_with_nulls(tmp_path):
    out = build(_write(null_table(effect=3.0, null_effect=0.0, seeds=5), tmp_path / "sweep", SCHEMA))
    md = (out / "claims.md").read_text()
    assert re.search(r"\| H1 vs null \(lora vs null_lora, sum\) \|.*\| 5 \| supported \|", md)
    assert "| H1 (null_steer, sum) |" in md and "H2 (null_steer" not in md and "H6 (null_lora" not in md


# ----------------------------------------------------------------------------- the report


def test_report_files_deterministic_and_deduplicated(tmp_path):
    df = table(effect=3.0, h2=0.5)
    d = _write(df, tmp_path / "sweep")
    out = build(d)
    pdfs, pngs = sorted(out.glob("fig_*.pdf")), sorted(out.glob("fig_*.png"))
    assert len(pdfs) == len(pngs) and (out / "fig_latency.pdf").exists() and (out / "fig_quality_nll_delta.pdf").exists()
    md = (out / "claims.md").read_text()
    assert "| H1 (lora, sum) |" in md and "| H6 (lora merged, sum) |" in md and "p (Holm)" in md
    assert "All rows share one setting" in md and "## H2 at each k" in md and "## SEAT tests" not in md
    assert re.search(r"\| H1 \(lora, sum\) \|.*\| 5 \| supported \|", md)  # n = 5 seeds, not 15 curves or 30 rows
    assert "\\begin{tabular}" in (out / "claims.tex").read_text()
    first = {p.name: p.read_bytes() for p in [out / "claims.md", out / "claims.tex", out / "dashboard.html", *pdfs]}
    build(d)
    assert all((out / n).read_bytes() == b for n, b in first.items())


def test_report_with_settings_has_a_setting_column_and_wider_figures(tmp_path):
    df = pd.concat([table(effect=2.0, seed=1, **{"compose.lam": 1.0}), table(effect=0.1, seed=2, **{"compose.lam": 0.5})],
                   ignore_index=True)
    one = build(_write(table(effect=1.0), tmp_path / "one"))
    two = build(_write(df, tmp_path / "two"))
    md = (two / "claims.md").read_text()
    assert "Rows differ in `compose.lam`" in md and "| id | setting |" in md
    assert md.count("| H1 (lora, sum) | compose.lam=") == 2
    from PIL import Image  # matplotlib's own dependency
    w1, w2 = (Image.open(p / "fig_quality_nll_delta.png").size[0] for p in (one, two))
    assert w2 > 1.6 * w1  # one panel per setting


@pytest.mark.parametrize("setup,needle", [
    (lambda d: None, "no such directory"),
    (lambda d: d.mkdir(), "no results.parquet found"),
    (lambda d: write_table(table().iloc[:0], d / "results.parquet", SCHEMA), "empty"),
    (lambda d: (d.mkdir(), (d / "results.parquet").write_bytes(b"PAR1garbage")), "cannot read results"),
    (lambda d: write_table(table().drop(columns="config"), d / "results.parquet", SCHEMA), "rerun the sweep"),
    (lambda d: write_table(table(), d / "0" / "results.parquet"),  # no schema: an older lora_lab's file
     "0/results.parquet: written by an older lora_lab (no metric declarations in the file): rerun the sweep"),
])
def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys, setup, needle):
    d = tmp_path / "sweep"
    setup(d)
    assert main([str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("analysis.report: error:") and needle in err[0]


def test_bad_option_is_one_line(tmp_path, capsys):
    d = _write(table(), tmp_path / "sweep")
    assert main([str(d), "--alpha", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == "analysis.report: error: --alpha: out of range (got 1.5)"


def test_cli_runs_as_a_module_with_options(tmp_path):
    d = _write(table(effect=1.0), tmp_path / "sweep")
    r = subprocess.run([sys.executable, "-m", "analysis.report", str(d), "--flat-margin", "0.01"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "dashboard.html" in r.stdout and (d / "report" / "dashboard.html").exists()
    assert "margin ×[0.99, 1.01]" in (d / "report" / "claims.md").read_text()


def test_report_has_a_seat_table_when_target_gaps_carry_seat_statistics(tmp_path):
    df = table(effect=1.0)
    rows = []
    for r in df[(df.k > 0) & (df.family != "prompt")].itertuples():
        for i, test in enumerate(("seat:weat1", "seat:weat2")):
            rows.append({"run_id": "r", "family": r.family, "merge": r.merge, "ordering": r.ordering, "k": r.k, "seed": r.seed,
                         "config_hash": r.config_hash, "adapter": test, "position": i + 1, "gap": 0.0, "alone_gap": 0.0,
                         "effect_size": 1.0 + i - 0.1 * r.k + 0.01 * r.seed + 0.001 * r.ordering,
                         "p_value": 0.01 * (r.seed + 1), "noise_floor": 0.2 + 0.01 * r.ordering, "base_effect_size": 1.0 + i})
    d = _write(df, tmp_path / "sweep")
    pd.DataFrame(rows).to_parquet(d / "target_gaps.parquet", index=False)
    results, gaps, schema = load(d)
    md = claims_markdown(stats.analyse(results, schema, stats.Options()), stats.Options(), gaps)  # claims.md, without figures
    assert "## SEAT tests" in md
    k = df.k.max()
    for family in ("lora", "steer"):
        for i, test in enumerate(("seat:weat1", "seat:weat2")):
            per_seed = []  # mean over orderings within a seed, then over seeds
            for seed in range(5):
                per_seed.append(np.mean([1.0 + i - 0.1 * k + 0.01 * seed + 0.001 * o for o in range(3)]))
            p = np.mean([0.01 * (seed + 1) for seed in range(5)])
            floor = np.mean([0.2 + 0.01 * o for o in range(3)])
            line = f"| {family} | sum | {test} | {k} | {1.0 + i:.3g} | {np.mean(per_seed):.3g} | {floor:.3g} | {p:.3f} | 5 |"
            assert line in md, line


def test_the_report_imports_no_torch():
    code = "import sys, analysis.report, analysis.figures, analysis.dashboard; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


def _chromium(tmp_path, *args):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def test_console_errors_are_detectable(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    r = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert "Uncaught ReferenceError" in r.stderr and "CONSOLE" in r.stderr  # the check below can fail


def test_dashboard_in_headless_chromium(tmp_path):
    df = pd.concat([table(effect=1.0, seed=1, **{"compose.lam": 1.0}), table(effect=0.1, seed=2, **{"compose.lam": 0.5})],
                   ignore_index=True)
    df.loc[(df.family == "steer") & (df.k >= 3) & df.config.str.contains('"compose.lam": 0.5'), "collapsed"] = True  # shown first
    page = build(_write(df, tmp_path / "sweep")) / "dashboard.html"
    r = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert r.returncode == 0
    assert "CONSOLE" not in r.stderr, [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    dom = r.stdout
    assert dom.count('class="mean-curve"') == 3  # one mean curve per family, in the one setting shown
    assert dom.count('class="curve"') == 3 * 5 * 3  # every (family, seed, ordering) curve of that setting
    assert dom.count('class="band"') == 3  # a band across seeds per family
    assert dom.count("<option value=\"compose.lam=") == 2  # the setting selector, one setting at a time
    assert 'id="claims"' in dom and "H1 (lora, sum)" in dom and "supported" in dom and "p (Holm)" in dom
    assert re.search(r"<option value=\"quality_nll_delta\"", dom)
    assert 'class="point collapsed"' in dom  # collapsed rows drawn open
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "dashboard.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri())
    assert r.returncode == 0 and shot.stat().st_size > 10_000


def test_claims_on_collapsed_rows_say_why_they_are_missing():
    df = table(effect=1.0, h2=1.0)
    df.loc[(df.family == "steer") & (df.k >= 1), "collapsed"] = True
    claims = stats.analyse(df, SCHEMA, gaps=loo_table(df, 1.0, 0.0)).claims
    c = claim(claims, "H2 (steer vs lora, sum)")
    assert c.verdict == "not testable" and "collapsed rows at k = 1" in c.note
    for h in ("H3 leave-one-out", "H4a", "H4b"):  # every steering row with k >= 1 collapsed: nothing left to measure
        c = claim(claims, f"{h} (steer, sum)")
        assert c.verdict == "not testable" and "collapsed from k = 1" in c.note, h
    assert claim(claims, "H1 (steer, sum)").verdict != "not testable"  # quality is still measured


def test_gap_goal_takes_any_positive_gap_in_the_worlds_unit(tmp_path, capsys):
    assert main([str(tmp_path), "--gap-goal", "0"]) == 2
    assert "--gap-goal: out of range (got 0.0)" in capsys.readouterr().err
    main([str(tmp_path), "--gap-goal", "5"])  # 5 percentage points, say: in range; the empty dir is the error
    err = capsys.readouterr().err
    assert "out of range" not in err and "no results.parquet" in err


@pytest.mark.parametrize("prompt_loss, verdict", [(0.0, "supported"), (20.0, "not supported")])
def test_h5b_compares_the_preprocessors_measured_loss(prompt_loss, verdict):
    """The pre-processor's quality is measured on its rewritten inputs, so H5b can fail: planted
    trained-family loss 10 (slope 4 seed-SDs, k = 1..4) against a pre-processor losing 0 or 20."""
    df = simulate(1, effect=4.0, rng_seed=3, prompt_loss=prompt_loss)
    c = claim(stats.analyse(df, SCHEMA).claims, "H5b (prompt vs lora, sum)")
    assert c.verdict == verdict
    d = df[df.k >= 1]
    by_seed = (d[d.family == "lora"].groupby("seed").quality_nll_delta.mean()
               - d[d.family == "prompt"].groupby("seed").quality_nll_delta.mean())
    assert c.value == pytest.approx(by_seed.mean())
    loss = d[d.family == "prompt"].groupby("seed").quality_nll_delta.mean().mean()
    assert f"quality loss {loss:.3g}" in c.note and "0.625 prompt tokens added per input" in c.note
    assert "latency ×" in c.note


# ----------------------------------------------------------------------------- removal after use


def after_use_table(share=0.0, cost=0.0, seeds=5, seed=0, at=(0, 4)):
    """A simulated table with after-use columns planted at the k in `at` of ordering 0 (NaN elsewhere):
    per seed, the share of the reduction that comes back after removal is `share` plus seed noise,
    and the quality loss after removal at k >= 1 exceeds the k = 0 control's by `cost` plus noise."""
    df = table(effect=1.0, seeds=seeds, seed=seed)
    rng = np.random.default_rng([seed, 7])
    s_draw = {(f, s): share + rng.normal(0, 0.3) for f in ("lora", "steer") for s in range(seeds)}
    q_seed = {(f, s): rng.normal(0, 1.0) for f in ("lora", "steer") for s in range(seeds)}
    q_draw = {(f, s): cost + rng.normal(0, 0.3) for f in ("lora", "steer") for s in range(seeds)}
    on = df.space.isin(["weight", "output"]) & (df.ordering == 0) & df.k.isin(at)
    used = (df.bias_target_gap + 0.05).where(on)
    fs = list(zip(df.family, df.seed))
    back = pd.Series([s_draw.get(x, np.nan) for x in fs], index=df.index)
    df["after_use_gap"] = used
    df["removed_after_use_gap"] = used + back * (df.bias_base_gap - used)
    q = pd.Series([q_seed.get(x, np.nan) + (q_draw.get(x, np.nan) if k > 0 else 0.0) for x, k in zip(fs, df.k)],
                  index=df.index)
    df["removed_after_use_nll_delta"] = q.where(on)
    return df


def h3_after_use_by_hand(df, family):
    """Independent loop: the bias share and the quality difference per seed, at the largest measured k."""
    share, cost = [], []
    for seed in sorted(df.seed.unique()):
        g = df[(df.family == family) & (df.seed == seed) & df.after_use_gap.notna()].sort_values("k")
        top, zero = g.iloc[-1], g[g.k == 0].iloc[0]
        share.append((top.removed_after_use_gap - top.after_use_gap) / (top.bias_base_gap - top.after_use_gap))
        cost.append(top.removed_after_use_nll_delta - zero.removed_after_use_nll_delta)
    return np.array(share), np.array(cost)


@pytest.mark.parametrize("planted, verdict", [(1.0, "supported"), (0.0, None), (-1.0, "not supported")])
def test_h3_after_use_claims_follow_the_planted_effect(planted, verdict):
    """Bias: the share that comes back after use and removal; quality: the loss after removal at the
    largest k minus the training alone's (k = 0), paired within seed. Planted > 0: supported; 0:
    never supported; < 0: not supported."""
    df = after_use_table(share=planted, cost=planted)
    a = stats.analyse(df, SCHEMA)
    for family in ("lora", "steer"):
        share, cost = h3_after_use_by_hand(df, family)
        for cid, values in ((f"H3 after use, bias ({family}, sum)", share), (f"H3 after use, quality ({family}, sum)", cost)):
            c = claim(a.claims, cid)
            t = sps.ttest_1samp(values, 0.0, alternative="greater")
            assert c.n == 5 and c.value == pytest.approx(values.mean()) and c.p == pytest.approx(t.pvalue), cid
            assert c.verdict == verdict if verdict else c.verdict != "supported", (cid, c.verdict)
        # the per-seed offset the training alone gives (1 nat SD between seeds) cancels in the pairing
        c = claim(a.claims, f"H3 after use, quality ({family}, sum)")
        assert c.ci[1] - c.ci[0] < 2.0 and "k = 4 against k = 0" in c.note
    assert "k up to 4" in claim(a.claims, "H3 after use, bias (lora, sum)").note


def test_h3_after_use_says_why_it_is_not_testable():
    df = after_use_table(share=1.0, cost=1.0)
    df = df.assign(collapsed=df.collapsed | ((df.family == "lora") & (df.k >= 1)))  # every measured lora k >= 1
    for col in ("after_use_gap", "removed_after_use_gap", "removed_after_use_nll_delta"):
        df.loc[df.family == "steer", col] = np.nan  # not measured (steps=0, or no general text)
    ids = {c.id: c for c in stats.analyse(df, SCHEMA).claims}
    assert ids["H3 after use, bias (lora, sum)"].verdict == "not testable"
    assert "collapsed" in ids["H3 after use, bias (lora, sum)"].note
    assert ids["H3 after use, quality (lora, sum)"].n == 5  # quality is measured on collapsed rows too
    for h in ("bias", "quality"):
        c = ids[f"H3 after use, {h} (steer, sum)"]
        assert c.verdict == "not testable" and "eval.after_use.steps=0" in c.note
