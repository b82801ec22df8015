"""Statistics for H1-H6 from the results table.

The unit of replication is a curve: one (seed, ordering) of one family and merge method. Points on
a curve are nested prefixes, so they are not independent; confidence intervals resample whole
curves (cluster bootstrap, fixed seed, so the report is deterministic given the table).

Verdicts: `supported` when the 95% CI lies on the claimed side of the null value and the test's
p < 0.05; `not supported` when the CI lies on the other side; otherwise `inconclusive`. A
hypothesis the table cannot speak to says `not testable` and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

BOOTSTRAP = 4000
SEED = 0
ALPHA = 0.05
UNIT = ["seed", "ordering"]
SPACE_ORDER = ("weight", "output", "input")


@dataclass
class Claim:
    id: str
    claim: str
    statistic: str  # what the number is
    value: float = float("nan")
    ci: Tuple[float, float] = (float("nan"), float("nan"))
    test: str = ""
    p: float = float("nan")
    n: int = 0  # units (curves or pairs) behind the statistic
    verdict: str = "not testable"
    note: str = ""


def bootstrap_ci(values: Sequence[float], fn: Callable[[np.ndarray], float] = np.mean, level: float = 0.95,
                 seed: int = SEED) -> Tuple[float, float]:
    """Percentile bootstrap CI of fn over the units in `values` (rows of a 1-D or 2-D array)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(BOOTSTRAP, len(x)))
    boots = np.array([fn(x[i]) for i in idx])
    lo, hi = np.nanpercentile(boots, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def band(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per k: mean over curves and its 95% bootstrap band (columns k, mean, lo, hi, n)."""
    rows = []
    for k, g in df.groupby("k"):
        v = g[metric].dropna().to_numpy(dtype=np.float64)
        if len(v) == 0:
            continue  # not defined at this k (e.g. no off-target left when every target is included)
        lo, hi = bootstrap_ci(v) if len(v) > 1 else (v.mean(), v.mean())
        rows.append({"k": k, "mean": v.mean(), "lo": lo, "hi": hi, "n": len(v)})
    return pd.DataFrame(rows)


def curve_slopes(df: pd.DataFrame, metric: str) -> np.ndarray:
    """Least-squares slope of metric vs k, one per curve (seed, ordering)."""
    out = []
    for _, g in df.groupby(UNIT):
        if g.k.nunique() >= 2:
            out.append(np.polyfit(g.k.to_numpy(float), g[metric].to_numpy(float), 1)[0])
    return np.asarray(out)


def verdict(ci: Tuple[float, float], p: float, direction: int, null: float = 0.0) -> str:
    lo, hi = ci
    if np.isnan(lo) or np.isnan(p):
        return "inconclusive"
    if (direction > 0 and lo > null) or (direction < 0 and hi < null):
        return "supported" if p < ALPHA else "inconclusive"
    if (direction > 0 and hi < null) or (direction < 0 and lo > null):
        return "not supported"
    return "inconclusive"


def _one_sided_t(x: np.ndarray, direction: int) -> float:
    if len(x) < 2 or np.allclose(x, x[0]):
        # no spread: a t-test is undefined; all curves agree exactly
        return 0.0 if len(x) >= 2 and np.sign(x[0]) == direction and x[0] != 0 else float("nan")
    return float(stats.ttest_1samp(x, 0.0, alternative="greater" if direction > 0 else "less").pvalue)


def slope_claim(cid: str, claim: str, df: pd.DataFrame, metric: str, direction: int, unit: str) -> Claim:
    c = Claim(cid, claim, f"slope of {metric} per added adapter ({unit})", test="one-sample t-test on per-curve slopes")
    if metric not in df.columns or df[metric].isna().all():
        c.note = f"{metric} is not measured in this world"
        return c
    s = curve_slopes(df.dropna(subset=[metric]), metric)
    if len(s) == 0:
        c.note = "no curve with two or more k"
        return c
    c.value, c.n = float(s.mean()), len(s)
    c.ci = bootstrap_ci(s)
    c.p = _one_sided_t(s, direction)
    c.verdict = "inconclusive" if len(s) < 2 else verdict(c.ci, c.p, direction)
    if len(s) < 2:
        c.note = "one curve: add orderings or seeds for a CI"
    return c


def _trained(df: pd.DataFrame) -> List[Tuple[str, str, pd.DataFrame]]:
    """(family, merge, rows) for each trained family, at its first merge method (sum when present)."""
    out = []
    for fam, g in df[df.space.isin(["weight", "output"])].groupby("family"):
        merges = sorted(g["merge"].unique(), key=lambda m: (m != "sum", m))
        out.append((fam, merges[0], g[g["merge"] == merges[0]]))
    return sorted(out, key=lambda t: SPACE_ORDER.index(t[2].space.iloc[0]))


# Task quality, in order of preference, with the direction in which it degrades.
QUALITY = (("quality_ppl_ratio", +1), ("seat_similarity_spearman", -1))


def quality_metric(df: pd.DataFrame) -> Tuple[str, int]:
    """The quality measure this table has: perplexity ratio, else a world's own (SEAT: similarity)."""
    for metric, direction in QUALITY:
        if metric in df.columns and df[metric].notna().any():
            return metric, direction
    return QUALITY[0]


def h1(df: pd.DataFrame) -> List[Claim]:
    metric, direction = quality_metric(df)
    claims = [slope_claim(f"H1 ({fam})", "stacking more bias adapters degrades task quality", g,
                          metric, direction, f"{fam}, {merge}") for fam, merge, g in _trained(df)]
    return claims or [Claim("H1", "stacking more bias adapters degrades task quality", "slope of quality vs k",
                            note="no trained family (lora or steer) in the table")]


def _paired(df: pd.DataFrame, metric: str) -> Optional[Tuple[pd.DataFrame, str, str, str]]:
    w, o = df[df.space == "weight"], df[df.space == "output"]
    common = sorted(set(w["merge"]) & set(o["merge"]), key=lambda m: (m != "sum", m))
    if w.empty or o.empty or not common:
        return None
    m = common[0]
    key = [*UNIT, "k"]
    a = w[w["merge"] == m].groupby(key)[metric].mean()
    b = o[o["merge"] == m].groupby(key)[metric].mean()
    both = pd.concat({"weight": a, "output": b}, axis=1).dropna().reset_index()
    return both, m, w.family.iloc[0], o.family.iloc[0]


def h2(df: pd.DataFrame) -> Tuple[Claim, pd.DataFrame]:
    metric, direction = quality_metric(df)
    sign = "output - weight" if direction > 0 else "weight - output"
    c = Claim("H2", "output steering degrades quality faster than weight-space merging",
              f"mean over k >= 1 of {metric} ({sign}), paired by seed, ordering and k",
              test="Wilcoxon signed-rank, one-sided, over all paired (seed, ordering, k)")
    per_k = pd.DataFrame(columns=["k", "diff", "p", "n"])
    pair = _paired(df, metric)
    if pair is None:
        c.note = "needs a weight-space and an output-space family with a common merge method"
        return c, per_k
    both, merge, wf, of = pair
    both = both[both.k >= 1]
    both["diff"] = direction * (both.output - both.weight)  # > 0: steering is the worse one
    c.statistic += f" ({of} vs {wf}, {merge})"
    unit_means = both.groupby(UNIT)["diff"].mean().to_numpy()
    c.value, c.n = float(both["diff"].mean()), len(both)
    c.ci = bootstrap_ci(unit_means)
    if len(both) >= 2 and not np.allclose(both["diff"], 0):
        c.p = float(stats.wilcoxon(both["diff"], alternative="greater").pvalue)
    c.verdict = verdict(c.ci, c.p, +1) if len(unit_means) >= 2 else "inconclusive"
    if len(unit_means) < 2:
        c.note = "one (seed, ordering) pair: add orderings or seeds for a CI"
    rows = []
    for k, g in both.groupby("k"):
        p = stats.wilcoxon(g["diff"], alternative="greater").pvalue if len(g) >= 2 and not np.allclose(g["diff"], 0) else float("nan")
        rows.append({"k": int(k), "diff": float(g["diff"].mean()), "p": float(p), "n": len(g)})
    return c, pd.DataFrame(rows)


def h3(df: pd.DataFrame) -> List[Claim]:
    claims = []
    for fam, merge, g in _trained(df):
        c = Claim(f"H3 ({fam})", "removing the adapters makes the base bias resurface",
                  f"share of the removed reduction that resurfaces at k = N: (removal - applied) / (base - applied) ({fam}, {merge})",
                  test="Wilcoxon signed-rank, one-sided: removal gap > applied gap, all k >= 1")
        kmax = g.k.max()
        base = g[g.k == 0].set_index(UNIT).bias_target_gap
        last = g[g.k == kmax].set_index(UNIT)
        if kmax == 0 or base.empty:
            c.note = "needs k = 0 and k > 0"
            claims.append(c)
            continue
        removed = (last.bias_target_gap - base).abs()
        share = ((last.removal_gap - last.bias_target_gap) / (base - last.bias_target_gap)).where(removed > 1e-9)
        share = share.dropna().to_numpy()
        c.value, c.n = float(np.mean(share)) if len(share) else float("nan"), len(share)
        c.ci = bootstrap_ci(share)
        applied = g[g.k >= 1]
        d = (applied.removal_gap - applied.bias_target_gap).to_numpy()
        if len(d) >= 2 and not np.allclose(d, 0):
            c.p = float(stats.wilcoxon(d, alternative="greater").pvalue)
        lo, hi = c.ci
        if np.isnan(lo) or np.isnan(c.p):
            c.verdict = "inconclusive"
        elif lo >= 0.9 and hi <= 1.1 and c.p < ALPHA:
            c.verdict = "supported"
            c.note = "fully: the base is restored exactly, so its bias returns with it" if lo >= 0.999 else ""
        elif hi < 0.5:
            c.verdict = "not supported"
        else:
            c.verdict = "inconclusive"
        claims.append(c)
    return claims or [Claim("H3", "removing the adapters makes the base bias resurface", "removal gap vs base gap",
                            note="no trained family in the table")]


def h4(df: pd.DataFrame) -> List[Claim]:
    out = []
    for fam, merge, g in _trained(df):
        out.append(slope_claim(f"H4a ({fam})", "stacked adapters cost controllability", g, "control_explicit_acc", -1,
                               f"{fam}, {merge}"))
        out.append(slope_claim(f"H4b ({fam})", "stacked adapters cost diversity", g, "diversity_entropy", -1,
                               f"{fam}, {merge}"))
    return out or [Claim("H4", "stacked adapters cost controllability and diversity", "slopes vs k",
                         note="no trained family in the table")]


def h5(df: pd.DataFrame) -> Claim:
    c = Claim("H5", "a prompt pre-processor reaches the target proportions with no quality loss",
              "mean |ppl ratio - 1| over k >= 1 (prompt); its max target gap is in the note",
              test="Wilcoxon signed-rank, one-sided: trained family's ppl ratio > prompt's, paired")
    p = df[(df.space == "input") & (df.k >= 1)]
    if p.empty:
        c.note = "no prompt-family rows in the table"
        return c
    dev = (p.quality_ppl_ratio - 1).abs()
    c.value, c.n = float(dev.mean()), len(p)
    unit = p.groupby(UNIT).quality_ppl_ratio.apply(lambda s: float((s - 1).abs().mean())).to_numpy()
    c.ci = bootstrap_ci(unit) if len(unit) >= 2 else (c.value, c.value)
    gap = float(p.bias_target_gap.max())
    trained = df[df.space.isin(["weight", "output"]) & (df.k >= 1)]
    if not trained.empty:
        key = [*UNIT, "k"]
        t = trained.groupby(key).quality_ppl_ratio.mean()
        q = p.groupby(key).quality_ppl_ratio.mean()
        d = (t - q).dropna().to_numpy()
        if len(d) >= 2 and not np.allclose(d, 0):
            c.p = float(stats.wilcoxon(d, alternative="greater").pvalue)
    c.note = f"max target gap with the pre-processor: {gap:.3f} (goal <= 0.05)"
    no_loss = c.ci[1] <= 0.01
    if gap <= 0.05 and no_loss and (np.isnan(c.p) or c.p < ALPHA):
        c.verdict = "supported"
    elif gap > 0.05 or c.ci[0] > 0.01:
        c.verdict = "not supported"
    else:
        c.verdict = "inconclusive"
    return c


# Inference modes (family, results column) and what H6 says of each: "flat" (no cost, whatever k),
# "grows" (cost rising with k), "costs" (slower than the bare base).
LATENCY_MODES = (
    ("lora merged", "lora", "latency_ms", "flat", "merged weights cost no inference time"),
    ("lora unmerged", "lora", "latency_unmerged_ms", "grows", "unmerged adapters cost inference time, growing with k"),
    ("steer hooks", "steer", "latency_ms", "costs", "steering hooks cost inference time"),
    ("prompt rewrite", "prompt", "latency_ms", "costs", "the prompt pre-processor costs inference time"),
)
FLAT_MARGIN = 0.20  # "flat": the 95% CI of the ratio lies within 1 ± this (CPU timing noise is 5-10% run to run)


def latency_curves(g: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per curve (seed, ordering): latency at k = 0 and at the largest k (ms, as measured), and two
    ratios that use every k of the curve, so one noisy measurement cannot decide them:
    `fit_ratio`, the least-squares line through all k at the largest k ÷ at k = 0 (for "flat" and
    "grows"), and `step_ratio`, the mean over k >= 1 ÷ k = 0 (for a cost that does not depend on k)."""
    rows = []
    for _, c in g.dropna(subset=[column]).groupby(UNIT):
        c = c.sort_values("k")
        if c.k.iloc[0] != 0 or c.k.nunique() < 2:
            continue
        k, y = c.k.to_numpy(float), c[column].to_numpy(float)
        slope, intercept = np.polyfit(k, y, 1)
        rows.append({"base_ms": y[0], "top_ms": y[-1], "k_max": int(k[-1]), "slope_ms": slope,
                     "fit_ratio": (intercept + slope * k[-1]) / intercept, "step_ratio": y[1:].mean() / y[0]})
    return pd.DataFrame(rows, columns=["base_ms", "top_ms", "k_max", "slope_ms", "fit_ratio", "step_ratio"])


def h6(df: pd.DataFrame) -> List[Claim]:
    """Per inference mode, latency with k adapters ÷ the bare base, over curves."""
    out = []
    for mode, fam, column, expect, claim in LATENCY_MODES:
        g = df[df.family == fam]
        if g.empty:
            continue
        stat = ("latency at k >= 1 ÷ at k = 0 (×), mean over k and curves" if expect == "costs" else
                "latency at the largest k ÷ at k = 0 (×), per-curve least-squares line, mean over curves")
        c = Claim(f"H6 ({mode})", claim, stat)
        if column not in g.columns or g[column].isna().all():
            c.note = "latency not measured (results without latency columns, or latency.enabled=false)"
            out.append(c)
            continue
        g = g[g["merge"] == sorted(g["merge"].unique(), key=lambda m: (m != "sum", m))[0]]
        lc = latency_curves(g, column)
        if lc.empty:
            c.note = "no curve from k = 0 with two or more k"
            out.append(c)
            continue
        ratio = (lc.step_ratio if expect == "costs" else lc.fit_ratio).to_numpy()
        c.value, c.n = float(ratio.mean()), len(lc)
        c.ci = bootstrap_ci(ratio) if len(lc) >= 2 else (c.value, c.value)
        c.note = (f"{lc.base_ms.median():.3g} ms at k = 0 -> {lc.top_ms.median():.3g} ms at k = {lc.k_max.max()} "
                  f"(medians over curves); slope {lc.slope_ms.mean():+.3g} ms per added adapter")
        lo, hi = c.ci
        if expect == "flat":
            c.test = f"equivalence: 95% CI of the ratio within 1 ± {FLAT_MARGIN:g}"
            if lo >= 1 - FLAT_MARGIN and hi <= 1 + FLAT_MARGIN and len(lc) >= 2:
                c.verdict = "supported"
            elif lo > 1 + FLAT_MARGIN or hi < 1 - FLAT_MARGIN:
                c.verdict = "not supported"
            else:
                c.verdict = "inconclusive"
        else:
            # Timing noise is multiplicative (a slow moment scales every pass): test on the log scale.
            c.test = "one-sided t-test: per-curve log ratio > 0"
            c.p = _one_sided_t(np.log(ratio), +1)
            c.verdict = "inconclusive" if len(lc) < 2 else verdict(c.ci, c.p, +1, null=1.0)
        out.append(c)
    return out or [Claim("H6", "merged weights cost no inference time; unmerged adapters and steering do",
                         "latency vs k per mode", note="no family with latency in the table")]


def all_claims(df: pd.DataFrame) -> Tuple[List[Claim], pd.DataFrame]:
    c2, per_k = h2(df)
    return [*h1(df), c2, *h3(df), *h4(df), h5(df), *h6(df)], per_k
