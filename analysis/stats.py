"""Statistics for H1-H6 from the results table, with the seed as the unit of replication.

The protocol (docs/protocol.md) in code:
1. **Settings are never pooled.** Rows are split by every config field that differs between them
   (`analysis/settings.py`); each claim is about one setting and one merge method.
2. **The seed is the unit.** All orderings of a seed reuse the seed's world, base and adapters, so
   they are repeated measures of one draw. A statistic is computed per curve (seed, ordering),
   averaged over the orderings of the seed, and only then compared across seeds: a one-sided
   one-sample t-test and a t-based CI on the per-seed values (`n` is the number of seeds).
3. **Equivalence** ("flat": H6 for merged weights) is two one-sided tests (TOST) against a margin,
   with the 90% CI that TOST corresponds to.
4. **Multiple comparisons**: Holm across every claim of one report; the verdict uses the adjusted p.
5. **No verdict from nothing**: a NaN p-value never gives "supported"; per-seed values with no
   spread (the t statistic is undefined) give "inconclusive" with a note, never p = 0; one seed
   gives "inconclusive" (no test across seeds).
6. **Controls**: a family the table declares `control_of` another (a null family: random adapters
   of its real counterpart's sizes) gets its own H1 line and "H1 vs null", its real family's
   quality slope minus its own, paired by seed; it enters no other claim. Likewise a family
   declared `joint_of` a real one (one adapter trained on the union of k targets) gets its own H1
   line and "stack vs joint": the real family's quality loss minus the joint's at the same seed
   and k >= 2.
7. **Collapse**: rows marked `collapsed` (the model no longer answers with an attribute at all)
   are left out of every claim on attribute distributions, and H2's slopes stop before the first
   collapsed k of either family.

What each column means comes from the table itself, not from this module: the metrics each world
declares, and the inference modes each family declares, written into the table's metadata
(`lora_lab.schema.TableSchema`, read by `analysis.report.load`). Task quality is the world's first
declared primary quality metric that has values in a setting, turned into a loss by its direction;
H4a and H4b test the world's primary (else first) declared control and diversity metric, towards
worse, and each other metric of the role on a line of its own; H6 tests
every declared inference mode against its expectation.

Verdicts: `supported` when the (adjusted) p < alpha; `not supported` when the CI lies wholly on
the other side of the null (or, for equivalence, wholly outside the margin); otherwise
`inconclusive`. A hypothesis the table cannot speak to is `not testable`, with the reason.

Everything is vectorised over settings (pandas group-bys), so a stack of thousands of simulated
tables (`analysis/simulate.py`) is analysed in seconds by the very same code.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

from lora_lab.schema import (AFTER_USE_GAP, REMOVED_AFTER_USE_GAP, REMOVED_AFTER_USE_QUALITY, TRAINED, Metric, Mode,
                             TableSchema)

from .settings import ABSENT, FAMILY, assign, config_frame, labels

NAN = float("nan")


@dataclass
class Options:
    alpha: float = 0.05
    flat_margin: float = 0.20  # H6 "flat": latency ratio within 1 ± this (CPU timing noise is 5-10% run to run)
    gap_goal: float = 0.05  # H5: the pre-processor's target gap (in the world's gap unit) must be below this
    correction: str = "holm"  # or "none": raw p-values decide (what the calibration simulations check)


@dataclass
class Claim:
    id: str
    claim: str
    statistic: str
    setting: str = ""
    value: float = NAN
    ci: Tuple[float, float] = (NAN, NAN)
    ci_level: float = 0.95
    test: str = ""
    p: float = NAN
    p_adj: float = NAN
    n: int = 0  # seeds behind the statistic
    verdict: str = "not testable"
    note: str = ""
    kind: str = "greater"  # "greater" / "less" than `null`, or "equivalence" within `bounds`
    null: float = 0.0
    bounds: Tuple[float, float] = (NAN, NAN)
    hypothesis: str = ""  # "H1", "H2", ...: what the calibration simulations group by


@dataclass
class Analysis:
    claims: List[Claim]
    per_k: pd.DataFrame  # H2 at each k (secondary, Holm-corrected within the table)
    setting_fields: List[str]
    collapsed: pd.DataFrame  # per (setting, arm, merge): rows, collapsed rows, first collapsed k
    data: pd.DataFrame = field(repr=False, default=None)  # the table with `setting` and `arm`


# ----------------------------------------------------------------------------- what the table declares


def world_of(df: pd.DataFrame) -> str:
    """The world of these rows (the `world` column; "" when the table names none)."""
    if "world" not in df.columns or df.empty:
        return ""
    w = df["world"].dropna()
    return str(w.iloc[0]) if len(w) else ""


def setting_worlds(df: pd.DataFrame) -> Dict[str, str]:
    """{setting: its world}. A world's config is part of the setting, so a setting has one."""
    if "world" not in df.columns:
        return dict.fromkeys(df.setting.unique(), "")
    return df.groupby("setting", sort=True)["world"].first().fillna("").astype(str).to_dict()


def declared(schema: TableSchema, role: str, world: str) -> List[Metric]:
    """The metrics of `role` that `world` declares, in its order (every world's when the table
    names no world the schema knows)."""
    return schema.with_role(role, world if world in schema.metrics else None)


def gap_unit(schema: TableSchema, world: str) -> str:
    """The unit of a world's bias gaps (its `bias_target_gap`)."""
    m = schema.metric("bias_target_gap", world)
    return m.unit if m is not None else "gap"


def mode_label(mode: Mode, arm: Optional[str] = None) -> str:
    """A mode's label ("lora merged"), with the family replaced by `arm` ("lora [family.rank=8] merged")."""
    label = mode.label or f"{mode.family} {mode.name}"
    if arm and arm != mode.family and label.startswith(mode.family):
        label = arm + label[len(mode.family):]
    return label


def _by_world(df: pd.DataFrame):
    """(world, its rows) for each world in `df`."""
    if "world" not in df.columns:
        yield "", df
        return
    for world, g in df.groupby(df["world"].fillna("").astype(str), sort=True):
        yield world, g


# ----------------------------------------------------------------------------- inference


def seed_summary(per_seed: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per group: number of seeds, mean and SD (ddof 1) of the per-seed `value`."""
    g = per_seed.dropna(subset=["value"]).groupby(list(keys), sort=True, dropna=False)["value"]
    return g.agg(n="count", mean="mean", sd="std").reset_index()


def _inference(s: pd.DataFrame, level: float, pvalue) -> pd.DataFrame:
    """Adds lo, hi (t-based CI at `level`), p = `pvalue(mean, se, df)` and a note. One seed, or no
    spread (the t statistic is undefined): p is NaN, never 0, and the note says why."""
    s = s.copy()
    n, mean, sd = s.n.to_numpy(float), s["mean"].to_numpy(float), s.sd.to_numpy(float)
    one = n < 2
    flat = ~one & (np.nan_to_num(sd) <= 1e-12 * np.maximum(1.0, np.abs(mean)))
    with np.errstate(divide="ignore", invalid="ignore"):
        se, df = sd / np.sqrt(n), np.maximum(n - 1, 1)
        half = np.where(flat, 0.0, stats.t.ppf(0.5 + level / 2, df) * se)
        p = pvalue(mean, se, df)
    s["lo"], s["hi"] = np.where(one, NAN, mean - half), np.where(one, NAN, mean + half)
    s["p"] = np.where(one | flat, NAN, p)
    s["note"] = _notes(one, flat, mean)
    return s


def t_inference(s: pd.DataFrame, kind: str, null: float = 0.0, level: float = 0.95) -> pd.DataFrame:
    """One-sided t-test of mean > null (kind "greater") or < null ("less"), with the CI at `level`."""
    sign = 1.0 if kind == "greater" else -1.0
    return _inference(s, level, lambda mean, se, df: stats.t.sf(sign * (mean - null) / se, df))


def tost_inference(s: pd.DataFrame, low: float, high: float, level: float = 0.90) -> pd.DataFrame:
    """Equivalence: two one-sided t-tests (mean > low and mean < high), p = the larger of the two;
    the CI at `level` (90% for alpha 0.05) lies within [low, high] exactly when p < 0.05."""
    return _inference(s, level, lambda mean, se, df: np.maximum(stats.t.sf((mean - low) / se, df),
                                                                stats.t.cdf((mean - high) / se, df)))


def _notes(one: np.ndarray, flat: np.ndarray, mean: np.ndarray) -> List[str]:
    return ["one seed: a test across seeds needs two or more" if o else
            f"zero spread: every seed gives {m:.4g}, so the t statistic is undefined" if f else ""
            for o, f, m in zip(one, flat, mean)]


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979); NaN entries are left out and stay NaN."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, NAN)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def decide(c: Claim, alpha: float) -> str:
    """The verdict from the adjusted p and the CI (see the module docstring)."""
    if c.n == 0:
        return "not testable"
    if math.isnan(c.p) or math.isnan(c.p_adj):
        return "inconclusive"  # one seed or no spread: no test, so no verdict either way
    lo, hi = c.ci
    if c.p_adj < alpha:
        return "supported"
    if c.kind == "equivalence":
        if lo > c.bounds[1] or hi < c.bounds[0]:
            return "not supported"
    elif (c.kind == "greater" and hi < c.null) or (c.kind == "less" and lo > c.null):
        return "not supported"
    return "inconclusive"


# ----------------------------------------------------------------------------- per-curve and per-seed values


CURVE = ["seed", "ordering"]


def curve_slopes(df: pd.DataFrame, keys: Sequence[str], metric: str) -> pd.DataFrame:
    """Least-squares slope of `metric` vs k, one per curve: columns keys + seed, ordering, value."""
    d = df[[*keys, *CURVE, "k", metric]].dropna(subset=[metric])
    d = d.assign(_k=d.k.astype(float), _kk=d.k.astype(float) ** 2, _ky=d.k.astype(float) * d[metric])
    g = d.groupby([*keys, *CURVE], sort=False, dropna=False)
    s = g.agg(n=("_k", "size"), sk=("_k", "sum"), sy=(metric, "sum"), skk=("_kk", "sum"), sky=("_ky", "sum")).reset_index()
    den = s.n * s.skk - s.sk ** 2
    s["value"] = np.where(den > 1e-9, (s.n * s.sky - s.sk * s.sy) / den.where(den > 1e-9, 1.0), NAN)
    return s[[*keys, *CURVE, "value"]]


def per_seed(curves: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean over the orderings of each seed: one value per (keys, seed)."""
    return curves.groupby([*keys, "seed"], sort=False, dropna=False)["value"].mean().reset_index()


def quality_columns(df: pd.DataFrame, schema: TableSchema) -> Tuple[pd.DataFrame, Dict[str, Metric]]:
    """Adds `_q`, the task-quality loss (higher = worse) of each setting: the first primary quality
    metric its world declares that has values in the setting, times the metric's `loss_sign`.
    Returns the table and {setting: the metric used}."""
    q = pd.Series(NAN, index=df.index)
    used: Dict[str, Metric] = {}
    by_world: Dict[str, List[str]] = {}
    for setting, world in setting_worlds(df).items():
        by_world.setdefault(world, []).append(setting)
    for world, settings in by_world.items():
        in_world = df[df.setting.isin(settings)]
        for m in (m for m in declared(schema, "quality", world) if m.primary):
            if m.column not in df.columns:
                continue
            has = in_world[m.column].notna().groupby(in_world.setting).any()
            fresh = [s for s in has.index[has] if s not in used]
            rows = df.setting.isin(fresh)
            q[rows] = m.loss_sign * df.loc[rows, m.column]
            used.update(dict.fromkeys(fresh, m))
    return df.assign(_q=q), used


def collapse_table(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["setting", "arm", "merge"], sort=True)
    first = df[df.collapsed].groupby(["setting", "arm", "merge"]).k.min()
    out = g.agg(rows=("k", "size"), collapsed=("collapsed", "sum")).reset_index()
    out["first_collapsed_k"] = out.set_index(["setting", "arm", "merge"]).index.map(first)
    return out


# ----------------------------------------------------------------------------- the hypotheses


def _claims(summary: pd.DataFrame, make) -> List[Claim]:
    """One Claim per summary row; `make(row)` returns the Claim with id, claim, statistic, test."""
    out = []
    for r in summary.itertuples(index=False):
        c = make(r)
        c.setting = r.setting
        c.n = int(r.n)
        c.value, c.ci, c.p = float(r.mean), (float(r.lo), float(r.hi)), float(r.p)
        c.note = "; ".join(x for x in (r.note, c.note) if x)
        out.append(c)
    return out


GROUP = ["setting", "arm", "merge"]


def _absent(df: pd.DataFrame, made: List[Claim], hyp: str, claim: str, metric: str, label) -> List[Claim]:
    """A not-testable line, with the reason, for every (setting, arm, merge) of `df` that got no
    claim: the metric is not measured there, its rows collapsed, or too few k remain."""
    got = {(c.setting, c.id) for c in made}
    out = []
    for (setting, arm, merge), g in df.groupby(GROUP, sort=True):
        cid = label(arm, merge)
        if (setting, cid) in got:
            continue
        name = "task quality" if metric.startswith("_") else metric
        if metric not in g.columns or g[metric].isna().all():
            note = f"{name} is not measured in this world"
        elif g.collapsed.any():
            note = f"collapsed from k = {int(g[g.collapsed].k.min())}: too few rows left to measure {name}"
        else:
            note = f"too few k per curve to measure {name}"
        out.append(Claim(cid, claim, "", setting=setting, hypothesis=hyp, note=note))
    return out


def _slope_claims(df: pd.DataFrame, hyp: str, metric: str, kind: str, claim: str, what, drop_collapsed: bool,
                  tag: str = "") -> List[Claim]:
    """Per (setting, arm, merge): the per-seed slope of `metric` vs k, tested across seeds
    (without collapsed rows when `drop_collapsed`). `what(setting)` names the metric; `tag` ends
    each claim's id (a second metric of the same hypothesis)."""
    if metric not in df.columns:  # declared, but not in this table: not measured
        df = df.assign(**{metric: NAN})
    used = df[~df.collapsed] if drop_collapsed else df
    s = t_inference(seed_summary(per_seed(curve_slopes(used, GROUP, metric), GROUP), GROUP), kind)

    def make(r):
        return Claim(f"{hyp} ({r.arm}, {r.merge}){tag}", claim, f"slope of {what(r.setting)} per added adapter, per-seed mean over orderings",
                     test=f"one-sided t-test over seeds (slope {'>' if kind == 'greater' else '<'} 0)", kind=kind, hypothesis=hyp)

    made = _claims(s, make)
    return made + _absent(df, made, hyp, claim, metric, lambda arm, merge: f"{hyp} ({arm}, {merge}){tag}")


def _quality_name(quality: Dict[str, Metric], setting: str) -> Tuple[str, str]:
    m = quality.get(setting)
    return (m.column, m.unit) if m is not None else ("quality", "")


def h1(df: pd.DataFrame, quality: Dict[str, Metric]) -> List[Claim]:
    def what(setting):
        col, unit = _quality_name(quality, setting)
        return f"{col} ({unit}, as a loss)"

    return _slope_claims(df[df.space.isin(TRAINED)], "H1", "_q", "greater",
                         "stacking more bias adapters degrades task quality", what, drop_collapsed=False)


def control_families(schema: TableSchema) -> Dict[str, str]:
    """{control family: the real family it stands in for}, as the table's families declare
    (`control_of`: a null family, a random adapter of its real counterpart's size)."""
    return {f: d["control_of"] for f, d in schema.families.items() if d.get("control_of")}


H1_NULL = "stacking bias adapters degrades quality more than stacking random perturbations of the same size"


def h1_null(df: pd.DataFrame, quality: Dict[str, Metric], controls: Dict[str, str]) -> List[Claim]:
    """Per real family F with a control (null) family in the same setting and merge method, with
    the same family fields (`family.*` but the name): F's per-seed quality-loss slope minus its
    null's, paired by seed, tested > 0. A null arm with no counterpart gets a not-testable line."""
    t = df[df.space.isin(TRAINED) & df.family.isin([*controls, *controls.values()])]
    if t.empty or not controls:
        return []
    configs = config_frame(t)
    own = [c for c in configs.columns if c.startswith(FAMILY) and c != FAMILY + "name"]
    fields = labels(configs, own) if own else pd.Series("", index=configs.index)
    t = t.assign(_own=t.config_hash.map(fields).fillna(""))
    keys = ["setting", "merge", "family", "_own", "arm"]
    slopes = per_seed(curve_slopes(t, keys, "_q"), keys)
    real = slopes[~slopes.family.isin(controls)]
    null = slopes[slopes.family.isin(controls)]
    null = null.assign(family=null.family.map(controls))
    on = ["setting", "merge", "family", "_own", "seed"]
    paired = real.merge(null, on=on, suffixes=("_real", "_null"))
    paired = paired.assign(value=paired.value_real - paired.value_null)
    pair = ["setting", "merge", "arm_real", "arm_null"]
    s = t_inference(seed_summary(paired, pair), "greater")

    def make(r):
        col, unit = _quality_name(quality, r.setting)
        return Claim(f"H1 vs null ({r.arm_real} vs {r.arm_null}, {r.merge})", H1_NULL,
                     f"difference of per-seed slopes of {col} ({unit} per adapter, as a loss), {r.arm_real} minus "
                     f"{r.arm_null} (random adapters of the same norms), per-seed mean over orderings",
                     test="one-sided t-test over seeds, paired by seed (difference > 0)", hypothesis="H1 vs null")

    made = _claims(s, make)
    got = set(zip(s.setting, s.arm_null, s["merge"]))
    for (setting, arm, merge, family), _ in t[t.family.isin(controls)].groupby(["setting", "arm", "merge", "family"],
                                                                                  sort=True):
        if (setting, arm, merge) not in got:
            made.append(Claim(f"H1 vs null ({arm}, {merge})", H1_NULL, "", setting=setting, hypothesis="H1 vs null",
                              note=f"no {controls[family]} rows of the same seeds, family fields, setting and merge "
                                   "method to pair with"))
    return made


def joint_families(schema: TableSchema) -> Dict[str, str]:
    """{joint family: the real family it is the reference of}, as the table's families declare
    (`joint_of`: one adapter trained on the union of k targets, beside a stack of k)."""
    return {f: d["joint_of"] for f, d in schema.families.items() if d.get("joint_of")}


STACK_VS_JOINT = "a stack of k adapters costs more quality than one adapter trained for the same k targets"


def stack_vs_joint(df: pd.DataFrame, quality: Dict[str, Metric], joints: Dict[str, str]) -> List[Claim]:
    """Per real family F with a joint family in the same setting and merge method, with the same
    values of F's own fields: at each k >= 2 of the joint curve, F's quality loss (per-seed mean over
    orderings) minus the joint's (its orderings' mean), averaged over those k per seed, tested > 0
    across seeds. The note gives the bias-gap difference at the same points (collapsed rows left
    out). A joint arm with no partner rows gets a not-testable line."""
    t = df[df.family.isin([*joints, *joints.values()])]
    if t.empty or not joints:
        return []
    configs = config_frame(t)
    fams = configs.get(FAMILY + "name", pd.Series("", index=configs.index))
    real_rows = configs[fams.isin(set(joints.values()))]
    # the real family's own fields (a joint config adds its schedule, `ks` and `orderings`)
    own = [c for c in configs.columns if c.startswith(FAMILY) and c != FAMILY + "name" and (real_rows[c] != ABSENT).any()]
    fields = labels(configs, own) if own else pd.Series("", index=configs.index)
    t = t.assign(_own=t.config_hash.map(fields).fillna(""), _gap=t.bias_target_gap.where(~t.collapsed))
    keys = ["setting", "merge", "family", "_own", "arm", "k", "seed"]
    at_k = t[t.k >= 2].groupby(keys, sort=False)[["_q", "_gap"]].mean().reset_index()
    stack = at_k[~at_k.family.isin(joints)]
    joint = at_k[at_k.family.isin(joints)]
    joint = joint.assign(family=joint.family.map(joints))
    paired = stack.merge(joint, on=["setting", "merge", "family", "_own", "k", "seed"], suffixes=("_stack", "_joint"))
    paired = paired.assign(value=paired._q_stack - paired._q_joint, gap=paired._gap_stack - paired._gap_joint)
    pair = ["setting", "merge", "arm_stack", "arm_joint"]
    per = paired.groupby([*pair, "seed"], sort=False).agg(value=("value", "mean"), gap=("gap", "mean")).reset_index()
    s = t_inference(seed_summary(per, pair), "greater")
    extra = paired.groupby(pair).agg(ks=("k", lambda k: ", ".join(str(x) for x in sorted(set(k))))).join(
        per.groupby(pair).gap.mean()).reset_index()
    s = s.merge(extra, on=pair, how="left")

    def make(r):
        col, unit = _quality_name(quality, r.setting)
        return Claim(f"stack vs joint ({r.arm_stack} vs {r.arm_joint}, {r.merge})", STACK_VS_JOINT,
                     f"{col} ({unit}, as a loss) of the stack of k minus the joint adapter's, at the same seed and k "
                     f"(k = {r.ks}), per-seed mean over those k", test="one-sided t-test over seeds, paired by seed and "
                     "k (difference > 0)", hypothesis="stack vs joint",
                     note=f"bias gap, stack minus joint at the same points: {r.gap:.4g} (mean over seeds)")

    made = _claims(s, make)
    got = set(zip(s.setting, s.arm_joint, s["merge"]))
    for (setting, arm, merge, family), _ in t[t.family.isin(joints)].groupby(["setting", "arm", "merge", "family"],
                                                                              sort=True):
        if (setting, arm, merge) not in got:
            made.append(Claim(f"stack vs joint ({arm}, {merge})", STACK_VS_JOINT, "", setting=setting,
                              hypothesis="stack vs joint",
                              note=f"no {joints[family]} rows of the same seeds, family fields, setting and merge "
                                   "method at the joint's k >= 2 to pair with"))
    return made


def first_collapse(df: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Per group of `keys`: the first k with a collapsed row (any seed or ordering); the group's
    largest k + 1 when nothing collapsed."""
    kmax = df.groupby(list(keys)).k.max()
    first = df[df.collapsed].groupby(list(keys)).k.min()
    return first.reindex(kmax.index).fillna(kmax + 1).astype(int)


def h2(df: pd.DataFrame, quality: Dict[str, Metric]) -> Tuple[List[Claim], pd.DataFrame]:
    """Steering minus LoRA: the difference of per-seed quality slopes, paired by seed, over the k
    range before either of the two arms collapses; and, secondary, the difference at each k."""
    claim = "output steering degrades quality faster than weight-space merging"
    t = df[df.space.isin(TRAINED)]
    per_k_cols = ["setting", "merge", "weight", "output", "k", "diff", "lo", "hi", "p", "p_adj", "n", "in_range"]
    claims: List[Claim] = []
    for setting, g in t.groupby("setting", sort=True):  # a setting with one space: say so, per setting
        if g.space.nunique() < 2:
            claims.append(Claim("H2", claim, "", setting=setting, hypothesis="H2",
                                note=f"only {g.space.iloc[0]}-space families in this setting: H2 needs both"))
    arm = ["setting", "merge", "arm", "space"]
    arms = pd.concat([first_collapse(t, arm).rename("first"), t.groupby(arm).k.max().rename("k_top")], axis=1).reset_index()
    w = arms[arms.space == "weight"].drop(columns="space").rename(columns={"arm": "weight", "first": "fw", "k_top": "tw"})
    o = arms[arms.space == "output"].drop(columns="space").rename(columns={"arm": "output", "first": "fo", "k_top": "to"})
    pairs = w.merge(o, on=["setting", "merge"])
    if pairs.empty:
        return claims, pd.DataFrame(columns=per_k_cols)
    pairs = pairs.assign(k_top=np.minimum(pairs.tw, pairs.to), k_limit=np.minimum(pairs.fw, pairs.fo) - 1)
    pairs["k_limit"] = pairs[["k_limit", "k_top"]].min(axis=1)
    pair = ["setting", "merge", "weight", "output"]

    def side(name: str, space: str) -> pd.DataFrame:
        rows = t[t.space == space].rename(columns={"arm": name})
        return rows.merge(pairs[[*pair, "k_limit"]], on=["setting", "merge", name])

    slopes = []
    for name, space in (("weight", "weight"), ("output", "output")):
        d = side(name, space)
        v = per_seed(curve_slopes(d[d.k <= d.k_limit], pair, "_q"), pair)
        slopes.append(v.rename(columns={"value": name + "_slope"}))
    paired = slopes[0].merge(slopes[1], on=[*pair, "seed"])
    paired = paired.assign(value=paired.output_slope - paired.weight_slope)
    s = t_inference(seed_summary(paired, pair), "greater").merge(pairs[[*pair, "k_limit", "k_top"]], on=pair)

    def make(r):
        col, unit = _quality_name(quality, r.setting)
        return Claim(f"H2 ({r.output} vs {r.weight}, {r.merge})", claim,
                     f"difference of per-seed slopes of {col} ({unit} per adapter, as a loss), {r.output} minus {r.weight}, "
                     f"k = 0..{r.k_limit}", test="one-sided t-test over seeds, paired by seed (difference > 0)",
                     note="" if r.k_limit == r.k_top else f"k > {r.k_limit} left out: a family has collapsed rows there",
                     hypothesis="H2")

    claims += _claims(s[s.k_limit >= 1], make)
    for r in pairs[pairs.k_limit < 1].itertuples(index=False):  # no k range to compare: say why
        why = (f"no k range before collapse: a family has collapsed rows at k = {r.k_limit + 1}" if r.k_top >= 1
               else "no k >= 1 in the table")
        claims.append(Claim(f"H2 ({r.output} vs {r.weight}, {r.merge})", claim, "difference of per-seed quality slopes",
                            setting=r.setting, hypothesis="H2", note=why))
    # secondary: the difference at each k >= 1, paired by seed; `in_range` marks k before collapse
    at = []
    for name, space in (("weight", "weight"), ("output", "output")):
        d = side(name, space)
        at.append(d[d.k >= 1].groupby([*pair, "k", "seed"])["_q"].mean().rename(name + "_q"))
    diff = pd.concat(at, axis=1).dropna().reset_index()
    diff = diff.assign(value=diff.output_q - diff.weight_q)
    pk = t_inference(seed_summary(diff, [*pair, "k"]), "greater").merge(pairs[[*pair, "k_limit"]], on=pair)
    pk = pk.rename(columns={"mean": "diff"}).assign(in_range=lambda d: d.k <= d.k_limit, p_adj=lambda d: holm(d.p))
    return claims, pk[per_k_cols]


H3_CLAIM = "removing one adapter brings back its own target's bias and leaves the others"
LOO = ["loo_gap", "loo_others"]  # target_gaps.parquet: the leave-one-out measurements (eval.leave_one_out_orderings)
MOVED = 1e-9  # a share needs a reduction to return: |base gap - gap| above this


def loo_shares(df: pd.DataFrame, gaps: pd.DataFrame) -> pd.DataFrame:
    """Per (curve, k, left-out adapter i) at non-collapsed rows of trained families: `own`, the
    share of target i's reduction that comes back when i is left out of the k-stack,
    (loo gap_i - gap_i) / (base gap_i - gap_i); `others`, the same share of the other included
    targets, on their mean gaps (mean loo gap - mean gap) / (mean base gap - mean gap); and
    `value` = own - others. NaN where a reduction is within `MOVED` of zero (nothing to return)."""
    cols = [*GROUP, *CURVE, "k", "adapter", "own", "others", "value"]
    if gaps is None or not set(LOO) <= set(gaps.columns) or "base_gap" not in gaps.columns:
        return pd.DataFrame(columns=cols)
    rows = df[df.space.isin(TRAINED) & ~df.collapsed][["config_hash", "merge", "ordering", "k", *GROUP[:2], "seed"]]
    g = gaps.drop(columns=[c for c in ("seed", "family") if c in gaps.columns])
    g = g.merge(rows.drop_duplicates(["config_hash", "merge", "ordering", "k"]), on=["config_hash", "merge", "ordering", "k"])
    g = g[g.k >= 2].dropna(subset=LOO)
    if g.empty:
        return pd.DataFrame(columns=cols)
    at = g.groupby([*GROUP, *CURVE, "k"], sort=False)
    n = at.gap.transform("size")
    others_gap = (at.gap.transform("sum") - g.gap) / (n - 1)
    others_base = (at.base_gap.transform("sum") - g.base_gap) / (n - 1)
    own_red, others_red = g.base_gap - g.gap, others_base - others_gap
    with np.errstate(divide="ignore", invalid="ignore"):
        own = ((g.loo_gap - g.gap) / own_red).where(own_red.abs() > MOVED)
        others = ((g.loo_others - others_gap) / others_red).where(others_red.abs() > MOVED)
    return g.assign(own=own, others=others, value=own - others)[cols]


def h3(df: pd.DataFrame, gaps: Optional[pd.DataFrame]) -> List[Claim]:
    """Leave-one-out: from a merged k-stack, adapter i is left out (the others composed by the same
    method at the k-stack's parameters). Per curve the mean over (k >= 2, i) of target i's return
    share minus the other targets' (`loo_shares`), per-seed mean over orderings, one-sided t > 0.
    Removing the whole composition restores the base bit-exactly (`removal_gap`, an invariant the
    test suite checks), so only a partial removal can tell whether each adapter holds its own
    target's reduction."""
    t = df[df.space.isin(TRAINED) & (df.k >= 2)]
    if t.empty or gaps is None or not set(LOO) <= set(gaps.columns) or gaps[LOO].isna().all().all():
        return []  # `_untestable` says why
    sh = loo_shares(df, gaps)
    curves = sh.groupby([*GROUP, *CURVE], sort=False)[["own", "others", "value"]].mean().reset_index()
    s = t_inference(seed_summary(per_seed(curves[[*GROUP, *CURVE, "value"]], GROUP), GROUP), "greater")
    parts = {c: per_seed(curves[[*GROUP, *CURVE, c]].rename(columns={c: "value"}), GROUP).groupby(GROUP)["value"].mean()
             for c in ("own", "others")}
    unit = "share of each target's reduction that comes back"

    def make(r):
        key = (r.setting, r.arm, r.merge)
        return Claim(f"H3 leave-one-out ({r.arm}, {r.merge})", H3_CLAIM,
                     f"{unit} when one adapter is left out of the merged k-stack: its own target's share minus the "
                     "other included targets' share, (loo gap - gap) / (base gap - gap), mean over k >= 2 and the "
                     "left-out adapter, per-seed mean over orderings",
                     test="one-sided t-test over seeds (own share - others' share > 0)", hypothesis="H3",
                     note=f"own share {parts['own'].get(key, NAN):.3g}, others' share {parts['others'].get(key, NAN):.3g} "
                          "(means over seeds)")

    made = _claims(s, make)
    got = {(c.setting, c.id) for c in made}
    first = df[df.space.isin(TRAINED) & df.collapsed & (df.k >= 1)].groupby(GROUP).k.min()
    for (setting, arm, merge), g in t.groupby(GROUP, sort=True):
        cid = f"H3 leave-one-out ({arm}, {merge})"
        if (setting, cid) in got:
            continue
        if g.collapsed.all():
            note = f"collapsed from k = {int(first[(setting, arm, merge)])}: no k >= 2 left to leave an adapter out of"
        else:
            note = "no leave-one-out measurement with a reduction to return at a non-collapsed k >= 2 (loo_gap, loo_others)"
        made.append(Claim(cid, H3_CLAIM, "", setting=setting, hypothesis="H3", note=note))
    return made


H3_AFTER_USE_BIAS = "removing the adapters after further training brings the base bias back"
H3_AFTER_USE_QUALITY = "removing a used stack costs quality beyond what the training alone does"
AFTER_USE_OFF = ("not measured: the after-use columns are NaN (eval.after_use.steps=0, or the world declares no "
                 "general-text objective, as an encoder, which has no language-model objective, does not)")


def h3_after_use(df: pd.DataFrame) -> List[Claim]:
    """Removal after use (`eval.after_use`): the stack merged, the model trained further on general
    text, the stack removed.

    Bias: the share of the reduction that comes back, (removed_after_use_gap - after_use_gap) /
    (bias_base_gap - after_use_gap), at each curve's largest non-collapsed measured k >= 1, per-seed
    mean over the measured orderings, one-sided t > 0. Quality: removed_after_use_nll_delta (the
    world's primary quality metric as a loss) at each curve's largest measured k minus at its k = 0,
    where the same training ran on the bare base (the control), paired within the curve and so
    within the seed, one-sided t > 0."""
    every = df[df.space.isin(TRAINED)]
    if every.empty:
        return []
    for col in (AFTER_USE_GAP, REMOVED_AFTER_USE_GAP, REMOVED_AFTER_USE_QUALITY):
        if col not in every.columns:
            every = every.assign(**{col: NAN})
    keys = GROUP
    out: List[Claim] = []

    # bias: the largest non-collapsed measured k >= 1 of each curve
    t = every[(every.k > 0) & every[AFTER_USE_GAP].notna() & every[REMOVED_AFTER_USE_GAP].notna() & ~every.collapsed]
    top = t[t.k == t.groupby([*keys, *CURVE]).k.transform("max")]
    reduced = top.bias_base_gap - top[AFTER_USE_GAP]
    moved = reduced.abs() > 1e-9
    top = top.assign(value=((top[REMOVED_AFTER_USE_GAP] - top[AFTER_USE_GAP]) / reduced).where(moved))
    kmax = top.groupby(keys).k.max()
    sb = t_inference(seed_summary(per_seed(top[[*keys, *CURVE, "value"]], keys), keys), "greater")

    def make_bias(r):
        return Claim(f"H3 after use, bias ({r.arm}, {r.merge})", H3_AFTER_USE_BIAS,
                     "share of the reduction that comes back once the stack is removed after further training, "
                     "(removed gap - gap after use) / (base gap - gap after use), at each curve's largest "
                     "non-collapsed measured k", test="one-sided t-test over seeds (share > 0)",
                     hypothesis="H3 after use (bias)",
                     note=f"k up to {int(kmax.get((r.setting, r.arm, r.merge), 0))}")

    out += _claims(sb, make_bias)

    # quality: the largest measured k against k = 0 (the training alone) in the same curve
    q = every.dropna(subset=[REMOVED_AFTER_USE_QUALITY])
    at0 = q[q.k == 0].groupby([*keys, *CURVE])[REMOVED_AFTER_USE_QUALITY].mean().rename("control")
    q = q[q.k > 0]
    qtop = q[q.k == q.groupby([*keys, *CURVE]).k.transform("max")].set_index([*keys, *CURVE])
    qtop = qtop.join(at0, how="inner").reset_index()
    qtop = qtop.assign(value=qtop[REMOVED_AFTER_USE_QUALITY] - qtop.control)
    qk = qtop.groupby(keys).k.max()
    sq = t_inference(seed_summary(per_seed(qtop[[*keys, *CURVE, "value"]], keys), keys), "greater")

    def make_quality(r):
        return Claim(f"H3 after use, quality ({r.arm}, {r.merge})", H3_AFTER_USE_QUALITY,
                     "quality loss after use and removal at each curve's largest measured k minus the same at "
                     "k = 0 (the training alone), paired within seed", hypothesis="H3 after use (quality)",
                     test="one-sided t-test over seeds, paired by seed (difference > 0)",
                     note=f"k = {int(qk.get((r.setting, r.arm, r.merge), 0))} against k = 0")

    out += _claims(sq, make_quality)

    got = {(c.setting, c.id) for c in out}
    for (setting, arm, merge), g in every.groupby(GROUP, sort=True):
        measured = g[AFTER_USE_GAP].notna()
        for hyp, cid, claim in (("H3 after use (bias)", f"H3 after use, bias ({arm}, {merge})", H3_AFTER_USE_BIAS),
                                ("H3 after use (quality)", f"H3 after use, quality ({arm}, {merge})",
                                 H3_AFTER_USE_QUALITY)):
            if (setting, cid) in got:
                continue
            if not measured.any():
                note = AFTER_USE_OFF
            elif hyp.endswith("(bias)") and g[measured & (g.k > 0)].collapsed.all():
                note = f"every measured k >= 1 is collapsed (from k = {int(g[g.collapsed].k.min())})"
            elif not (measured & (g.k > 0)).any() or (hyp.endswith("(quality)") and not (measured & (g.k == 0)).any()):
                note = "needs after-use rows at k = 0 and at a k >= 1 (eval.after_use.at)"
            else:
                note = "the gap after use equals the base gap on every curve: there is no reduction to come back"
            out.append(Claim(cid, claim, "", setting=setting, hypothesis=hyp, note=note))
    return out


H4 = (("H4a", "control", "stacked adapters cost controllability"), ("H4b", "diversity", "stacked adapters cost diversity"))


def h4(df: pd.DataFrame, schema: TableSchema) -> List[Claim]:
    """Per world, the slope of its control (H4a) and diversity (H4b) metrics vs k, tested towards
    worse: down for a metric where higher is better, up where lower is. The headline line is the
    metric the world declares `primary` for the role, else the first it declares; every other
    metric of the role gets its own line, "H4b (arm, merge) on <column>" (on the synthetic world:
    the entropy over every (role, axis) pair, which rebalancing adapters raise on their own pairs by
    design and force adapters, "everything is manga", lower)."""
    t = df[df.space.isin(TRAINED)]
    out: List[Claim] = []
    for hyp, role, claim in H4:
        for world, rows in _by_world(t):
            metrics = [m for m in declared(schema, role, world) if m.direction != "none"]
            if not metrics:
                note = f"world {world} declares no {role} metric" if world else f"the table declares no {role} metric"
                out += [Claim(f"{hyp} ({arm}, {merge})", claim, "", setting=setting, hypothesis=hyp, note=note)
                        for (setting, arm, merge), _ in rows.groupby(GROUP, sort=True)]
                continue
            first = next((x for x in metrics if x.primary), metrics[0])
            for m in [first, *(x for x in metrics if x is not first)]:
                # the first (primary) metric is the headline line; each other one its own line, named by its column
                kind = "less" if m.direction == "higher" else "greater"
                out += _slope_claims(rows, hyp, m.column, kind, claim, lambda _, m=m: m.label, drop_collapsed=True,
                                     tag="" if m is first else f" on {m.column}")
    return out


def prompt_costs(every: pd.DataFrame, schema: TableSchema) -> Dict[Tuple[str, str], str]:
    """{(setting, arm): a note on what the pre-processor costs}, each a mean over seeds of the
    per-seed mean over k >= 1 (and orderings): its task-quality loss, its deployed mode's latency ÷
    the paired base timing (geometric), and the prompt tokens it adds per input (the mode's
    `tokens` column), where the table has them."""
    modes = {m.family: m for m in schema.modes}
    out: Dict[Tuple[str, str], str] = {}
    for (setting, arm), g in every.groupby(["setting", "arm"], sort=True):
        mode = modes.get(str(g.family.iloc[0]))
        parts = []
        cols = {"_q": "quality loss {:.3g}"}
        d = g
        if mode is not None and {mode.column, mode.reference} <= set(g.columns):
            d = d.assign(_lat=np.log(d[mode.column].astype(float)) - np.log(d[mode.reference].astype(float)))
            cols["_lat"] = "latency ×{:.3g} of the paired base timing"
        if mode is not None and mode.tokens and mode.tokens in g.columns:
            cols[mode.tokens] = "{:.3g} prompt tokens added per input"
        seeds = d.groupby("seed")[list(cols)].mean().mean()
        for col, fmt in cols.items():
            v = float(seeds[col])
            if v == v:
                parts.append(fmt.format(math.exp(v) if col == "_lat" else v))
        if parts:
            out[(setting, arm)] = "the pre-processor's costs, mean over k >= 1 and seeds: " + ", ".join(parts)
    return out


def h5(df: pd.DataFrame, schema: TableSchema, opt: Options) -> List[Claim]:
    """The prompt pre-processor (an input-space family): (a) its target gap is below `gap_goal`;
    (b) it loses less task quality than each trained family, paired by seed and k. The world scores
    its quality on the inputs as it rewrites them (held-out text, fact probes), so (b) compares two
    measured losses; the notes give its costs (`prompt_costs`)."""
    every = df[(df.space == "input") & (df.k >= 1)]
    if every.empty:
        return []
    worlds = setting_worlds(df)
    keys = GROUP
    costs = prompt_costs(every, schema)
    p = every[~every.collapsed]
    gap = p.groupby([*keys, *CURVE]).bias_target_gap.mean().rename("value").reset_index()
    sa = t_inference(seed_summary(per_seed(gap, keys), keys), "less", null=opt.gap_goal)

    def make_a(r):
        return Claim(f"H5a ({r.arm})", "an input-space family (prompt pre-processor, negative prompts) reaches the target proportions",
                     f"target gap ({gap_unit(schema, worlds.get(r.setting, ''))}) with the pre-processor, "
                     "mean over k >= 1, per-seed mean over orderings",
                     test=f"one-sided t-test over seeds (gap < {opt.gap_goal:g})", kind="less", null=opt.gap_goal,
                     hypothesis="H5a", note=costs.get((r.setting, r.arm), ""))

    out = _claims(sa, make_a)
    out += _absent(every, out, "H5a", "an input-space family (prompt pre-processor, negative prompts) reaches the target proportions", "bias_target_gap",
                   lambda arm, merge: f"H5a ({arm})")
    t = df[df.space.isin(TRAINED) & (df.k >= 1)]
    q = pd.concat([t, df[(df.space == "input") & (df.k >= 1)]])
    at_k = q.groupby(["setting", "space", "arm", "merge", "k", "seed"])["_q"].mean().rename("value").reset_index()
    pr = at_k[at_k.space == "input"].drop(columns=["space", "merge"]).rename(columns={"arm": "prompt", "value": "p"})
    tr = at_k[at_k.space != "input"].drop(columns="space")
    m = tr.merge(pr, on=["setting", "k", "seed"])
    m = m.assign(value=m.value - m.p).groupby(["setting", "prompt", "arm", "merge", "seed"])["value"].mean().reset_index()
    sb = t_inference(seed_summary(m, ["setting", "prompt", "arm", "merge"]), "greater")

    def make_b(r):
        return Claim(f"H5b ({r.prompt} vs {r.arm}, {r.merge})", "an input-space family (prompt pre-processor, negative prompts) loses less task quality than stacked adapters",
                     f"quality loss of {r.arm} minus the pre-processor's, mean over k >= 1 (paired by seed and k)",
                     test="one-sided t-test over seeds, paired by seed (difference > 0)", hypothesis="H5b",
                     note=costs.get((r.setting, r.prompt), ""))

    return out + _claims(sb, make_b)


def theil_sen(k: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Row-wise Theil-Sen line of y [curves, points] on k (NaN = no point): slope = median of the
    pairwise slopes, intercept = median(y) - slope * median(k), as `scipy.stats.theilslopes`
    (Sen 1968). Robust to a few outlying points: one timing taken while another job had the core
    moves it little, where it can tilt a least-squares line."""
    i, j = np.triu_indices(k.shape[1], 1)
    dk, dy = k[:, j] - k[:, i], y[:, j] - y[:, i]
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: a curve with one point
        slopes = np.where(dk != 0, dy / dk, NAN)
        slope = np.nanmedian(slopes, axis=1)
        ok = ~np.isnan(y)
        intercept = np.nanmedian(y, axis=1) - slope * np.nanmedian(np.where(ok, k, NAN), axis=1)
    return slope, intercept


def latency_curves(g: pd.DataFrame, column: str, reference: str, keys: Sequence[str]) -> pd.DataFrame:
    """Per timed curve (two or more k, from k = 0): the log ratio of each timing to its paired
    reference (the base timed right after it), and from those `fit` (the Theil-Sen line of the log
    ratios against k, at the largest k: "flat" means no cost there), `growth` (the rise of the
    Theil-Sen line over k >= 1, from the first composed k to the largest: "grows", so that a cost
    that is the same at every k does not count as growing) and `step` (their median over k >= 1: a cost that does not
    depend on k); plus the median ms of the mode and of its
    reference at the largest k, for the note. Robust estimates, because a timing is a wall-clock
    window that a concurrent job can slow down."""
    cols = [*keys, *CURVE, "k_max", "fit", "growth", "step", "top_ms", "ref_ms"]
    d = g.dropna(subset=[column, reference])
    d = d[d.groupby([*keys, *CURVE]).k.transform("min") == 0]
    if d.empty:
        return pd.DataFrame(columns=cols)
    d = d.assign(_r=np.log(d[column].astype(float)) - np.log(d[reference].astype(float)))
    wide = d.pivot_table(index=[*keys, *CURVE], columns="k", values="_r", aggfunc="mean")
    wide = wide[wide.notna().sum(axis=1) >= 2]
    if wide.empty:
        return pd.DataFrame(columns=cols)
    r = wide.to_numpy(float)
    k = np.broadcast_to(wide.columns.to_numpy(float), r.shape)
    slope, intercept = theil_sen(k, r)
    after, _ = theil_sen(k[:, 1:], r[:, 1:])  # k >= 1 only: growth, not the step from no adapter to one
    k_max = np.nanmax(np.where(np.isnan(r), NAN, k), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        step = np.nanmedian(r[:, 1:], axis=1)
    out = wide.index.to_frame(index=False)
    out["k_max"], out["fit"], out["step"] = k_max.astype(int), intercept + slope * k_max, step
    out["growth"] = after * (k_max - k[:, 1])
    top = d[d.k == d.groupby([*keys, *CURVE]).k.transform("max")].groupby([*keys, *CURVE])[[column, reference]].mean()
    out = out.join(top.rename(columns={column: "top_ms", reference: "ref_ms"}), on=[*keys, *CURVE])
    return out[cols]


def flops_at(g: pd.DataFrame, column: str, keys: Sequence[str]) -> pd.DataFrame:
    """Per group: the mode's FLOPs per token (a count, not a timing: the median over curves and
    seeds is the value) at its largest counted k and at k = 0; NaN where the mode declares none."""
    cols = [*keys, "flops_top", "flops_base"]
    if not column or column not in g.columns or g[column].isna().all():
        return pd.DataFrame(columns=cols).astype({"flops_top": float, "flops_base": float})
    d = g.dropna(subset=[column])
    top = d[d.k == d.groupby(list(keys)).k.transform("max")].groupby(list(keys))[column].median().rename("flops_top")
    base = d[d.k == 0].groupby(list(keys))[column].median().rename("flops_base")
    return pd.concat([top, base], axis=1).reset_index()[cols]


def h6(df: pd.DataFrame, schema: TableSchema, opt: Options) -> List[Claim]:
    """Per inference mode the families declare: latency with k adapters ÷ its paired bare-base
    reference, as a log ratio per curve (timing noise is multiplicative), averaged over a seed's
    timed curves, across seeds. A mode whose expectation holds by construction is still tested;
    its note says why it holds."""
    out = []
    keys = ["setting", "arm", "merge"]
    for mode in schema.modes:
        column, reference, expect, claim = mode.column, mode.reference, mode.expect, mode.claim
        g = df[df.family == mode.family]
        if g.empty:
            continue
        if any(c not in g.columns or g[c].isna().all() for c in (column, reference)):
            out.append(Claim(f"H6 ({mode_label(mode)})", claim, "latency ratio", hypothesis="H6",
                             note="latency not measured (results without latency columns, or latency.enabled=false)"))
            continue
        lc = latency_curves(g, column, reference, keys)
        lc = lc.assign(value={"costs": lc.step, "grows": lc.growth, "flat": lc.fit}[expect])
        summary = seed_summary(per_seed(lc[[*keys, *CURVE, "value"]], keys), keys)
        bounds = (math.log(1 - opt.flat_margin), math.log(1 + opt.flat_margin))
        if expect == "flat":
            s = tost_inference(summary, *bounds, level=1 - 2 * opt.alpha)
        else:
            s = t_inference(summary, "greater")
        ms = lc.groupby(keys).agg(top=("top_ms", "median"), ref=("ref_ms", "median"), k_max=("k_max", "max")).reset_index()
        s = s.merge(ms, on=keys, how="left").merge(flops_at(g, mode.flops, keys), on=keys, how="left")
        stat = {"costs": "latency ÷ its paired base timing, median over k >= 1 (×), geometric mean over seeds",
                "flat": "latency ÷ its paired base timing at the largest k (×), per-curve Theil-Sen line over k, "
                        "geometric mean over seeds",
                "grows": "growth of latency ÷ its paired base timing from the first composed k to the largest (×), "
                         "along the per-curve Theil-Sen line over k >= 1, geometric mean over seeds"}[expect]
        test = (f"equivalence (TOST) on per-seed log ratios, margin ×[{1 - opt.flat_margin:g}, {1 + opt.flat_margin:g}]"
                if expect == "flat" else "one-sided t-test over seeds on per-seed log ratios (> 0)")
        why = f"; expected by construction: {mode.by_construction}" if mode.by_construction else ""

        def make(r, mode=mode, claim=claim, stat=stat, test=test, expect=expect, why=why):
            return Claim(f"H6 ({r.arm} {mode.name}, {r.merge})", claim, stat, test=test, hypothesis="H6",
                         kind="equivalence" if expect == "flat" else "greater",
                         ci_level=1 - 2 * opt.alpha if expect == "flat" else 0.95,
                         bounds=(1 - opt.flat_margin, 1 + opt.flat_margin) if expect == "flat" else (NAN, NAN), null=1.0,
                         note=f"at k = {int(r.k_max)}: {r.top:.3g} ms, paired base {r.ref:.3g} ms (medians over timed curves)"
                              + (f"; forward FLOPs per token {r.flops_top:.4g}, at k = 0 {r.flops_base:.4g} "
                                 f"(×{r.flops_top / r.flops_base:.3g})" if r.flops_top == r.flops_top else "") + why)

        for c in _claims(s, make):
            c.value, c.ci = math.exp(c.value), (math.exp(c.ci[0]), math.exp(c.ci[1]))  # back to ratios
            out.append(c)
    return out


# ----------------------------------------------------------------------------- the report's analysis


def prepare(df: pd.DataFrame) -> Tuple[pd.DataFrame, List[str]]:
    """The table with `setting` and `arm` (and `world`, "" when the table names none); duplicates
    of one measurement (the same curve point written by two jobs) counted once."""
    if "collapsed" not in df.columns:
        df = df.assign(collapsed=False)
    if "world" not in df.columns:
        df = df.assign(world="")
    df, fields = assign(df)
    df = df.drop_duplicates(["setting", "arm", "merge", "seed", "ordering", "k"]).reset_index(drop=True)
    return df, fields


def analyse(df: pd.DataFrame, schema: TableSchema, opt: Optional[Options] = None,
            gaps: Optional[pd.DataFrame] = None) -> Analysis:
    """Every claim of H1-H6, Holm-adjusted across the report, with verdicts. `schema` says what the
    table's columns are: the metrics each world declares and the modes each family declares, as
    written into the table's metadata (`analysis.report.load` reads it). `gaps`: the per-target
    table (target_gaps.parquet), whose leave-one-out columns H3 tests; None: H3 is not testable."""
    opt = opt or Options()
    df, fields = prepare(df)
    df, quality = quality_columns(df, schema)
    controls, joints = control_families(schema), joint_families(schema)
    # null arms: their own H1 line and H1 vs null; joint arms: their own H1 line and stack vs joint; no other claim
    real = df[~df.family.isin([*controls, *joints])]
    c2, per_k = h2(real, quality)
    claims = [*h1(df, quality), *h1_null(df[~df.family.isin(joints)], quality, controls),
              *stack_vs_joint(df[~df.family.isin(controls)], quality, joints), *c2, *h3(real, gaps), *h3_after_use(real),
              *h4(real, schema), *h5(real, schema, opt), *h6(real, schema, opt)]
    claims += _untestable(schema, claims)
    p = [c.p if c.n > 0 else NAN for c in claims]
    adj = holm(p) if opt.correction == "holm" else np.asarray(p, dtype=float)
    for c, a in zip(claims, adj):
        c.p_adj = float(a)
        c.verdict = decide(c, opt.alpha)
    return Analysis(claims, per_k, fields, collapse_table(df), df)


def _untestable(schema: TableSchema, claims: List[Claim]) -> List[Claim]:
    """A line for each hypothesis the table cannot speak to, saying why."""
    have = {c.hypothesis for c in claims}
    modes = list(dict.fromkeys(m.claim for m in schema.modes))
    why = {
        "H1": ("stacking more bias adapters degrades task quality", "no weight- or output-space family in the table"),
        "H2": ("output steering degrades quality faster than weight-space merging",
               "needs a weight-space and an output-space family with a common merge method in one setting"),
        "H3": (H3_CLAIM, "needs leave-one-out measurements of trained families at k >= 2 in target_gaps.parquet "
                         "(loo_gap, loo_others, base_gap: eval.leave_one_out_orderings >= 1)"),
        "H3 after use (bias)": (H3_AFTER_USE_BIAS, "no trained-family rows in the table"),
        "H3 after use (quality)": (H3_AFTER_USE_QUALITY, "no trained-family rows in the table"),
        "H5a": ("an input-space family (prompt pre-processor, negative prompts) reaches the target proportions", "no input-space family in the table"),
        "H6": ("; ".join(modes) or "each inference mode costs what its family declares",
               "no family with latency in the table" if modes else "the table's families declare no inference mode"),
    }
    return [Claim(h, claim, "", note=note, hypothesis=h) for h, (claim, note) in why.items() if h not in have]


def band(df: pd.DataFrame, metric: str, level: float = 0.95) -> pd.DataFrame:
    """Per k: the mean over seeds of each seed's mean over orderings, and its t-based CI across
    seeds (columns k, mean, lo, hi, n = seeds, collapsed = collapsed rows at this k). Rows of one
    setting, family and merge method only: the caller splits, this never pools."""
    cols = ["k", "mean", "lo", "hi", "n", "collapsed"]
    d = df.dropna(subset=[metric])
    if d.empty:
        return pd.DataFrame(columns=cols)
    seeds = d.groupby(["k", "seed"])[metric].mean().rename("value").reset_index()
    s = t_inference(seed_summary(seeds, ["k"]), "greater", level=level)
    s["lo"], s["hi"] = s.lo.fillna(s["mean"]), s.hi.fillna(s["mean"])
    coll = df.groupby("k").collapsed.sum() if "collapsed" in df.columns else pd.Series(dtype=int)
    s["collapsed"] = s.k.map(coll).fillna(0).astype(int)
    return s[cols]
