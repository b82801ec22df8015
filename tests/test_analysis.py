"""The analysis report: statistics against hand computations on tables with known effects, the
report files, determinism, errors, and the dashboard in a real headless Chromium."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats
from analysis.report import build, main
from conftest import ROOT
from lora_lab.eval.metrics import METRICS
from lora_lab.stacking import IDENTITY

SPACE = {"lora": "weight", "steer": "output", "prompt": "input"}


def synthetic(slopes, seeds=(0, 1), orderings=4, n=8, noise=0.05, seed=0):
    """A results table whose ppl ratio grows by slopes[family] per adapter (plus noise), control
    accuracy falls by half that slope, and the bias gap drops to a floor and is restored on removal."""
    rng = np.random.default_rng(seed)
    rows = []
    for fam, slope in slopes.items():
        for s in seeds:
            for o in range(orderings):
                for k in range(n + 1):
                    ppl = 1.0 + slope * k + (rng.normal(0, noise) if k else 0.0)
                    rows.append({
                        "run_id": f"{fam}-{s}", "world": "synthetic", "model": "tiny_gpt2", "family": fam,
                        "space": SPACE[fam], "merge": "sum", "ordering": o, "k": k, "adapters": [f"a{i}" for i in range(k)],
                        "seed": s, "config_hash": f"h-{fam}-{s}", "quality_ppl_ratio": ppl,
                        "quality_fact_acc": 1.0, "bias_target_gap": 0.5 if k == 0 else 0.1 + rng.normal(0, 0.01),
                        "bias_offtarget_drift": 0.0, "control_explicit_acc": 1.0 - slope / 2 * k / n,
                        "diversity_entropy": 0.4, "removal_gap": 0.5,
                    })
    return pd.DataFrame(rows, columns=[*IDENTITY, *METRICS])


def _write(df, d):
    for i, (_, g) in enumerate(df.groupby("config_hash")):
        (d / str(i)).mkdir(parents=True)
        g.to_parquet(d / str(i) / "results.parquet", index=False)
    df.to_parquet(d / "results.parquet", index=False)  # the sweep-level copy: must not double count
    return d


def _claim(claims, cid):
    return next(c for c in claims if c.id == cid)


def test_planted_slope_is_detected_and_matches_a_hand_computation():
    df = synthetic({"lora": 0.5, "steer": 1.0})
    claims, _ = stats.all_claims(df)
    c = _claim(claims, "H1 (lora)")
    by_hand = []
    for _, g in df[df.family == "lora"].groupby(["seed", "ordering"]):
        k, y = g.k.to_numpy(float), g.quality_ppl_ratio.to_numpy()
        by_hand.append(((k - k.mean()) * (y - y.mean())).sum() / ((k - k.mean()) ** 2).sum())
    assert c.value == pytest.approx(np.mean(by_hand)) and c.value == pytest.approx(0.5, abs=0.02)
    assert c.n == 8 and c.ci[0] < c.value < c.ci[1]
    assert c.p == pytest.approx(sps.ttest_1samp(by_hand, 0, alternative="greater").pvalue)
    assert c.verdict == "supported"
    h2 = _claim(claims, "H2")
    assert h2.verdict == "supported" and h2.value == pytest.approx(0.5 * np.mean(range(1, 9)), abs=0.05)
    assert _claim(claims, "H4a (steer)").verdict == "supported"
    assert _claim(claims, "H3 (lora)").verdict == "supported"


def test_null_table_is_not_supported_or_inconclusive():
    df = synthetic({"lora": 0.0, "steer": 0.0})
    claims, _ = stats.all_claims(df)
    for cid in ("H1 (lora)", "H1 (steer)", "H2"):
        assert _claim(claims, cid).verdict in ("not supported", "inconclusive"), cid
    reversed_effect = synthetic({"lora": 0.5, "steer": 0.1})  # steering degrades *slower*
    assert _claim(stats.all_claims(reversed_effect)[0], "H2").verdict == "not supported"


def test_untestable_hypotheses_say_so():
    claims, _ = stats.all_claims(synthetic({"lora": 0.5}))
    assert _claim(claims, "H2").verdict == "not testable" and "output-space" in _claim(claims, "H2").note
    assert _claim(claims, "H5").verdict == "not testable"
    h6 = _claim(claims, "H6 (lora merged)")
    assert h6.verdict == "not testable" and "latency" in h6.note


def with_latency(df, seed=0):
    """Plant H6: LoRA merged flat at 2 ms, unmerged +0.1 ms per adapter, steering hooks +0.4 ms
    at every k >= 1; timing noise 1%."""
    rng = np.random.default_rng(seed)
    df = df.copy()
    jitter = 1 + rng.normal(0, 0.01, len(df))
    on = (df.k > 0).to_numpy()
    df["latency_ms"] = np.where(df.family == "steer", 2.0 + 0.4 * on, 2.0) * jitter
    df["latency_unmerged_ms"] = np.where(df.family == "lora", (2.0 + 0.1 * df.k) * jitter, np.nan)
    return df


def test_h6_flat_merged_growing_unmerged_costly_hooks():
    df = with_latency(synthetic({"lora": 0.5, "steer": 1.0}))
    claims, _ = stats.all_claims(df)
    merged, unmerged, hooks = (_claim(claims, f"H6 ({m})") for m in ("lora merged", "lora unmerged", "steer hooks"))
    assert merged.verdict == "supported" and merged.value == pytest.approx(1.0, abs=0.02)
    assert unmerged.verdict == "supported" and hooks.verdict == "supported"
    g = df[df.family == "lora"]
    by_hand = []  # the least-squares line through every k of a curve, at k = 8 over at k = 0
    for _, c in g.groupby(["seed", "ordering"]):
        k, y = c.k.to_numpy(float), c.latency_unmerged_ms.to_numpy()
        b = ((k - k.mean()) * (y - y.mean())).sum() / ((k - k.mean()) ** 2).sum()
        a = y.mean() - b * k.mean()
        by_hand.append((a + 8 * b) / a)
    assert unmerged.value == pytest.approx(np.mean(by_hand)) and unmerged.value == pytest.approx(1.4, abs=0.05)
    assert hooks.value == pytest.approx(1.2, abs=0.02) and unmerged.n == 8
    assert "ms per added adapter" in unmerged.note and "+0.1 ms" in unmerged.note
    slow = df.assign(latency_ms=np.where(df.family == "lora", 2.0 + 0.2 * df.k, df.latency_ms))  # merged that is not free
    assert _claim(stats.all_claims(slow)[0], "H6 (lora merged)").verdict == "not supported"


def test_prompt_baseline_h5():
    df = synthetic({"lora": 0.5, "prompt": 0.0}, noise=0.0)
    df.loc[df.family == "prompt", "bias_target_gap"] = np.where(df[df.family == "prompt"].k == 0, 0.5, 0.01)
    assert _claim(stats.all_claims(df)[0], "H5").verdict == "supported"


def test_bootstrap_ci_is_deterministic_and_covers_the_mean():
    x = np.random.default_rng(1).normal(3.0, 1.0, 50)
    a, b = stats.bootstrap_ci(x), stats.bootstrap_ci(x)
    assert a == b and a[0] < x.mean() < a[1]
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert a[1] - a[0] == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_report_files_deterministic_and_deduplicated(tmp_path):
    d = _write(with_latency(synthetic({"lora": 0.5, "steer": 1.0, "prompt": 0.0})), tmp_path / "sweep")
    out = build(d)
    pdfs, pngs = sorted(out.glob("fig_*.pdf")), sorted(out.glob("fig_*.png"))
    assert len(pdfs) == len(pngs) == len(METRICS) + 1  # + fig_latency; one merge per family: no merge figures
    assert (out / "fig_latency.pdf").exists()
    md = (out / "claims.md").read_text()
    assert "| H1 (lora) |" in md and "| H6 (lora merged) |" in md and "| H6 (prompt rewrite) |" in md
    assert "\\begin{tabular}" in (out / "claims.tex").read_text()
    first = {p.name: p.read_bytes() for p in [out / "claims.md", out / "claims.tex", out / "dashboard.html", *pdfs]}
    build(d)
    assert all((out / n).read_bytes() == b for n, b in first.items())
    assert "n | verdict" in md and re.search(r"\| 8 \| supported", md)  # 8 curves, not 16: no double count


@pytest.mark.parametrize("setup,needle", [
    (lambda d: None, "no such directory"),
    (lambda d: d.mkdir(), "no results.parquet found"),
    (lambda d: (d.mkdir(), synthetic({"lora": 0.1}).iloc[:0].to_parquet(d / "results.parquet")), "empty"),
    (lambda d: (d.mkdir(), (d / "results.parquet").write_bytes(b"PAR1garbage")), "cannot read results"),
])
def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys, setup, needle):
    d = tmp_path / "sweep"
    setup(d)
    assert main([str(d)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("analysis.report: error:") and needle in err[0]


def test_cli_runs_as_a_module(tmp_path):
    d = _write(synthetic({"lora": 0.5}), tmp_path / "sweep")
    r = subprocess.run([sys.executable, "-m", "analysis.report", str(d)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "dashboard.html" in r.stdout and (d / "report" / "dashboard.html").exists()


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
    d = _write(synthetic({"lora": 0.5, "steer": 1.0, "prompt": 0.0}), tmp_path / "sweep")
    page = build(d) / "dashboard.html"
    r = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert r.returncode == 0
    assert "CONSOLE" not in r.stderr, [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    dom = r.stdout
    assert dom.count('class="mean-curve"') == 3  # one mean curve per family (all filters on)
    assert dom.count('class="curve"') == 3 * 2 * 4  # every (family, seed, ordering) curve
    assert dom.count("<polyline") == 3 + 24
    assert 'id="claims"' in dom and "H1 (lora)" in dom and "supported" in dom
    assert re.search(r"<option value=\"quality_ppl_ratio\"", dom)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "dashboard.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri())
    assert r.returncode == 0 and shot.stat().st_size > 10_000
