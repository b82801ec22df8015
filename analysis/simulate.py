"""Simulated results tables with known truth, to calibrate the report's statistics.

`simulate(...)` draws `tables` independent results tables (each its own setting, `sim.table=i`),
with the structure a real sweep has: per seed, a world/base/adapter draw that shifts every
ordering of that seed alike (`seed_sd`), per adapter an effect of its own that every ordering
stacks in a different order and that all orderings share at k = N (`adapter_sd`), and per
measured point some noise (`point_sd`). Each hypothesis's quantity is planted with a chosen
`effect` (0 = the null):

| claim | planted quantity (true value) |
|---|---|
| H1 | quality loss slope per adapter of each trained family: `effect` (lora) and `effect` + `h2` (steer) |
| H2 | steer slope minus lora slope: `h2` |
| H3 | leave-one-out, `simulate_gaps(df, effect)`: own target's return share minus the others': `effect` |
| H4a, H4b | slopes of explicit accuracy and diversity: `-effect` |
| H5a | the pre-processor's target gap: `gap_goal - effect` |
| H5b | trained family's mean quality loss over k >= 1 minus the pre-processor's (`prompt_loss` at every k >= 1, drawn per seed) |
| H6 | latency ratio: lora merged `1 + flat_margin - effect` (the null sits on the margin); the others `exp(effect)` |
| H1 vs null | with `nulls=True`: the real family's slope minus its null's, `effect` (+ `h2` for steer) − `null_effect` |

Effects are in units of the per-seed spread: with `seed_sd=1`, `effect=1` is a one-seed-SD
effect. `python -m analysis.simulate` prints, per claim, the share of "supported" verdicts at
effect 0 (false positives), the CI coverage of the true value, and the power at a given effect.

A simulated table declares its columns as a sweep's table does: `SCHEMA` holds the synthetic
world's metric declarations and the lora, steer, prompt, null_lora and null_steer families'
inference modes, labels, colours and (for the nulls) `control_of`, copied here by value (the analysis imports no plugin module); pass it to `analyse`, and
write it into any parquet file made from a simulated table (`lora_lab.schema.write_table`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Dict, Optional

import numpy as np
import pandas as pd

from lora_lab.schema import Metric, Mode, TableSchema, diversity_metrics

from .stats import Analysis, Options, analyse

FAMILIES = (("lora", "weight"), ("steer", "output"), ("prompt", "input"))
NULLS = (("null_lora", "weight"), ("null_steer", "output"))  # the control families, with `nulls=True`
WORLD = "synthetic"  # the world whose table the simulation imitates (the rows' `world`)
# The synthetic world's declarations; the simulation fills every column but quality_fact_acc and
# bias_offtarget_drift.
METRICS = (
    Metric("quality_nll_delta", "held-out NLL − base (nats/token)", "nats/token", "lower", "quality",
           "Held-out quality loss", primary=True, help="held-out text's mean NLL per scored token minus the base's"),
    Metric("quality_ppl_ratio", "perplexity ÷ base (×)", "×", "lower", "quality", "Held-out perplexity", lo=0.0,
           log=True, help="exp(quality_nll_delta)"),
    Metric("quality_fact_acc", "fact accuracy (fraction)", "fraction", "higher", "quality", "Fact recall", 0.0, 1.0,
           help="share of role -> workplace / tool facts answered right"),
    Metric("bias_target_gap", "TV distance to target", "TV", "lower", "bias", "Bias gap on included targets", 0.0, 1.0,
           collapsible=True, help="mean gap of the included targets (k = 0: of all targets)"),
    Metric("bias_base_gap", "TV distance to target", "TV", "lower", "bias", "The base's gap on the same targets", 0.0, 1.0,
           figure=False, help="the base model's gap on the same targets: what the composition reduced"),
    Metric("bias_offtarget_drift", "TV distance from base", "TV", "lower", "bias", "Drift on other targets", 0.0, 1.0,
           collapsible=True, help="how far the targets no included adapter covers moved from the base"),
    Metric("control_explicit_acc", "explicit-prompt accuracy", "fraction", "higher", "control", "Controllability", 0.0,
           1.0, collapsible=True, help="a prompt with a marker word gets the marked attribute"),
    *diversity_metrics(),
    Metric("removal_gap", "TV distance to target", "TV", "lower", "bias", "Bias gap after removal", 0.0, 1.0,
           help="the gap on the included targets after the composition is removed again (the base's, exactly)"),
    Metric("axis_mass", "probability on the axis values", "fraction", "none", "diagnostic",
           "Attribute answers (collapse below the threshold)", 0.0, 1.0,
           help="probability the attribute probes put on the axis's own values (below eval.collapse_mass: collapsed)"),
)
MODES = (
    Mode("lora", "merged", "latency_ms", "latency_base_ms", "flat", "merged weights cost no inference time",
         label="lora merged", by_construction="a merged model has the base's shapes: the same FLOPs as the base",
         flops="flops_per_token"),
    Mode("lora", "unmerged", "latency_unmerged_ms", "latency_unmerged_base_ms", "grows",
         "unmerged adapters cost inference time, growing with k", label="lora unmerged", flops="flops_unmerged_per_token"),
    Mode("steer", "hooks", "latency_ms", "latency_base_ms", "costs", "steering hooks cost inference time",
         label="steer hooks", flops="flops_per_token"),
    Mode("prompt", "rewrite", "latency_ms", "latency_base_ms", "costs", "the prompt pre-processor costs inference time",
         label="prompt rewrite", flops="flops_per_token", tokens="cost_prompt_tokens"),
    Mode("null_lora", "merged", "latency_ms", "latency_base_ms", "flat", "merged weights cost no inference time",
         label="null_lora merged", by_construction="a merged model has the base's shapes: the same FLOPs as the base",
         flops="flops_per_token"),
    Mode("null_lora", "unmerged", "latency_unmerged_ms", "latency_unmerged_base_ms", "grows",
         "unmerged adapters cost inference time, growing with k", label="null_lora unmerged",
         flops="flops_unmerged_per_token"),
    Mode("null_steer", "hooks", "latency_ms", "latency_base_ms", "costs", "steering hooks cost inference time",
         label="null_steer hooks", flops="flops_per_token"),
)
SCHEMA = TableSchema(
    {WORLD: list(METRICS)}, list(MODES),
    {"lora": {"label": "LoRA merged (weight)", "color": "#0072B2", "space": "weight"},
     "steer": {"label": "steering (output)", "color": "#D55E00", "space": "output"},
     "prompt": {"label": "prompt rewrite (input)", "color": "#009E73", "space": "input"},
     "null_lora": {"label": "LoRA null (random, same norms)", "color": "#0072B2", "space": "weight", "control_of": "lora"},
     "null_steer": {"label": "steering null (random, same norms)", "color": "#D55E00", "space": "output",
                    "control_of": "steer"}})


def _cumulative(rng, shape_tsa, orders, mu, seed_sd, adapter_sd, point_sd, ks):
    """[tables, seeds, orderings, len(ks)]: Σ over the first k adapters (in each ordering) of
    (mu + seed effect + adapter effect), plus point noise at k >= 1."""
    t, s, n = shape_tsa
    per = mu + rng.normal(0, seed_sd, (t, s, 1)) + rng.normal(0, adapter_sd, (t, s, n))  # [t, s, adapter]
    stacked = np.take_along_axis(per[:, :, None, :], orders, axis=3)  # [t, s, o, position]
    cum = np.concatenate([np.zeros(stacked.shape[:3] + (1,)), np.cumsum(stacked, axis=3)], axis=3)[..., ks]
    noise = rng.normal(0, point_sd, cum.shape)
    noise[..., np.asarray(ks) == 0] = 0.0
    return cum + noise


def simulate(tables: int = 1000, seeds: int = 5, orderings: int = 3, n: int = 4, effect: float = 0.0, h2: float = 0.0,
             seed_sd: float = 1.0, adapter_sd: float = 0.5, point_sd: float = 0.3, opt: Optional[Options] = None,
             rng_seed: int = 0, nulls: bool = False, null_effect: float = 0.0, prompt_loss: float = 0.0) -> pd.DataFrame:
    """A stacked results table: `tables` settings x (lora, steer, prompt) x seeds x orderings x k = 0..n.
    `nulls`: also the control families null_lora and null_steer, each with quality slope
    `null_effect` (drawn after the others: the rest of the table is the same with and without).
    `prompt_loss`: the pre-processor's quality loss at every k >= 1 (it scores rewritten inputs),
    shifted per seed (`seed_sd`) and per point (`point_sd`); it adds one prompt token per input per
    k / n."""
    opt = opt or Options()
    rng = np.random.default_rng(rng_seed)
    ks = list(range(n + 1))
    t, s, o, K = tables, seeds, orderings, len(ks)
    orders = np.argsort(rng.random((t, s, o, n)), axis=3)  # each seed's orderings of its n adapters
    cols: Dict[str, np.ndarray] = {}
    frames = []
    for fam, space in (*FAMILIES, *(NULLS if nulls else ())):
        shape = (t, s, o, K)
        if space == "input":
            drawn = prompt_loss + rng.normal(0, seed_sd, (t, s, 1, 1)) + rng.normal(0, point_sd, shape)
            q = np.where(np.asarray(ks) == 0, 0.0, drawn)
            gap = np.broadcast_to(opt.gap_goal - 0.01 * effect + rng.normal(0, 0.01 * seed_sd, (t, s, 1, 1)), shape) \
                + rng.normal(0, 0.01 * point_sd, shape)
            control = np.ones(shape)
            diversity = np.ones(shape)
            removal = gap.copy()
            base = np.full(shape, 0.5)
        else:
            slope = null_effect if SCHEMA.families[fam].get("control_of") else effect + (h2 if fam == "steer" else 0.0)
            q = _cumulative(rng, (t, s, n), orders, slope, seed_sd, adapter_sd, point_sd, ks)
            control = 1.0 + _cumulative(rng, (t, s, n), orders, -effect, seed_sd, adapter_sd, point_sd, ks)
            diversity = 1.0 + _cumulative(rng, (t, s, n), orders, -effect, seed_sd, adapter_sd, point_sd, ks)
            gap = np.broadcast_to(np.where(np.asarray(ks) == 0, 0.5, 0.1), shape) + rng.normal(0, 0.01, shape)
            base = np.broadcast_to(gap[..., :1], shape)
            removal = base.copy()  # the whole composition removed: the base, exactly (H3 is leave-one-out)
        real = SCHEMA.families[fam].get("control_of") or fam  # a null is timed as its real family is
        lat = _latency(rng, real, (t, s, o, K), ks, effect, seed_sd, point_sd, opt)
        cols = {
            "quality_nll_delta": q, "bias_target_gap": gap, "control_explicit_acc": control,
            "diversity_entropy": diversity, "diversity_offtarget": diversity, "removal_gap": removal, "bias_base_gap": base, **lat,
        }
        ti, si, oi, ki = np.meshgrid(np.arange(t), np.arange(s), np.arange(o), ks, indexing="ij")
        frame = pd.DataFrame({k: v.reshape(-1) for k, v in cols.items()})
        frame["table"], frame["seed"], frame["ordering"], frame["k"] = ti.reshape(-1), si.reshape(-1), oi.reshape(-1), ki.reshape(-1)
        frame["family"], frame["space"] = fam, space
        if space == "input":
            frame["cost_prompt_tokens"] = frame.k / n
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    df["world"] = WORLD
    df["merge"] = "sum"
    df["collapsed"] = False
    df["axis_mass"] = 1.0
    df["quality_ppl_ratio"] = np.exp(df.quality_nll_delta)
    key = df.table.astype(str) + "-" + df.family + "-" + df.seed.astype(str)
    df["config_hash"] = key
    uniq = key.drop_duplicates()
    conf = {h: json.dumps({"sim.table": int(h.split("-")[0]), "family.name": h.split("-")[1], "seed": int(h.split("-")[2])})
            for h in uniq}
    df["config"] = key.map(conf)
    return df


def simulate_gaps(df: pd.DataFrame, effect: float = 0.0, seed_sd: float = 1.0, point_sd: float = 0.3,
                  orderings: int = 1, rng_seed: int = 0) -> pd.DataFrame:
    """The leave-one-out rows of a simulated results table's target-gaps table (target_gaps.parquet):
    every included adapter of the trained families' rows on the first `orderings` orderings at
    k >= 2, where a sweep measures them (its other rows carry NaN there and are left out). Each
    target has a base gap near 0.5 and a stacked gap near 0.1; leaving adapter i out brings back a
    share `others` of the other targets' reduction and `others` + d of its own, with d = `effect` +
    a per-seed draw (`seed_sd`) + noise per (k, i) (`point_sd`): H3's statistic, own share minus
    others', has the true value `effect`."""
    rng = np.random.default_rng([rng_seed, 3])
    cols = ["config_hash", "family", "merge", "ordering", "k", "seed", "adapter", "base_gap", "gap", "loo_gap", "loo_others"]
    rows = df[df.space.isin(("weight", "output")) & (df.k >= 2) & (df.ordering < orderings)]
    rows = rows.drop_duplicates(["config_hash", "merge", "ordering", "k"])
    if rows.empty:
        return pd.DataFrame(columns=cols)
    ks = rows.k.to_numpy()
    pos = np.concatenate([np.arange(k) for k in ks])  # the included adapters of each row: positions 0..k-1
    at = np.repeat(np.arange(len(rows)), ks)
    g = rows.iloc[at][["config_hash", "family", "merge", "ordering", "k", "seed"]].reset_index(drop=True)
    g["adapter"] = "a" + pos.astype(str)
    g["base_gap"] = 0.5 + rng.normal(0, 0.01, len(g))
    g["gap"] = 0.1 + rng.normal(0, 0.01, len(g))
    seed_draw = g.config_hash.map(dict(zip(rows.config_hash.unique(), rng.normal(0, seed_sd, rows.config_hash.nunique()))))
    others = 0.2 + rng.normal(0, point_sd, len(g))
    own = others + effect + seed_draw.to_numpy() + rng.normal(0, point_sd, len(g))
    key = [g.config_hash, g["merge"], g.ordering, g.k]
    n = g.k.to_numpy(float)
    rest_gap = (g.groupby(key).gap.transform("sum") - g.gap) / (n - 1)
    rest_base = (g.groupby(key).base_gap.transform("sum") - g.base_gap) / (n - 1)
    g["loo_gap"] = g.gap + own * (g.base_gap - g.gap)
    g["loo_others"] = rest_gap + others * (rest_base - rest_gap)
    return g[cols]


def _latency(rng, fam, shape, ks, effect, seed_sd, point_sd, opt) -> Dict[str, np.ndarray]:
    """Latency columns in ms around 2 ms: each timing and its paired base reference share a
    contention factor (another job slowing both windows), then get noise of their own. Ratios are
    planted on the log scale, growing log-linearly in k ("flat", "grows") or as a step ("costs")."""
    t, s, o, K = shape
    frac = np.asarray(ks, dtype=float) / max(ks)
    contention = np.exp(np.abs(rng.normal(0, 0.2 * point_sd, shape)))  # up to ×1.5 or so, both windows alike

    def timing():
        return 2.0 * contention * np.exp(rng.normal(0, 0.02 * point_sd, shape))

    nan = np.full(shape, np.nan)
    u = rng.normal(0, 0.02 * seed_sd, (t, s, 1, 1))
    if fam == "lora":
        merged = np.log(1 + opt.flat_margin) - 0.02 * effect + u
        unmerged = 0.02 * effect + rng.normal(0, 0.02 * seed_sd, (t, s, 1, 1))
        return {"latency_ms": timing() * np.exp(merged * frac), "latency_base_ms": timing(),
                "latency_unmerged_ms": timing() * np.exp(unmerged * frac), "latency_unmerged_base_ms": timing()}
    step = np.where(np.asarray(ks) == 0, 0.0, 0.02 * effect + u)
    return {"latency_ms": timing() * np.exp(step), "latency_base_ms": timing(), "latency_unmerged_ms": nan,
            "latency_unmerged_base_ms": nan}


def truth(effect: float, h2: float, n: int, opt: Options, null_effect: float = 0.0,
          prompt_loss: float = 0.0) -> Dict[str, float]:
    """The true value of each claim's statistic in `simulate`'s tables (by hypothesis and mode);
    the null families' with `nulls=True`."""
    mean_k = np.mean(range(1, n + 1))
    return {
        "H1 (null_lora, sum)": null_effect, "H1 (null_steer, sum)": null_effect,
        "H1 vs null (lora vs null_lora, sum)": effect - null_effect,
        "H1 vs null (steer vs null_steer, sum)": effect + h2 - null_effect,
        "H1 (lora, sum)": effect, "H1 (steer, sum)": effect + h2, "H2 (steer vs lora, sum)": h2,
        "H3 leave-one-out (lora, sum)": effect, "H3 leave-one-out (steer, sum)": effect,
        "H4a (lora, sum)": -effect, "H4a (steer, sum)": -effect, "H4b (lora, sum)": -effect, "H4b (steer, sum)": -effect,
        # the all-pairs entropy's own H4b line: drawn alike in these tables
        "H4b (lora, sum) on diversity_entropy": -effect, "H4b (steer, sum) on diversity_entropy": -effect,
        "H5a (prompt)": opt.gap_goal - 0.01 * effect,
        "H5b (prompt vs lora, sum)": effect * mean_k - prompt_loss,
        "H5b (prompt vs steer, sum)": (effect + h2) * mean_k - prompt_loss,
        "H6 (lora merged, sum)": float(np.exp(np.log(1 + opt.flat_margin) - 0.02 * effect)),
        "H6 (lora unmerged, sum)": float(np.exp(0.02 * effect * (n - 1) / n)),  # the rise from k = 1 to n
        "H6 (steer hooks, sum)": float(np.exp(0.02 * effect)), "H6 (prompt rewrite, sum)": float(np.exp(0.02 * effect)),
    }


def calibration(a: Analysis, true: Dict[str, float]) -> pd.DataFrame:
    """Per claim id: tables, share "supported", share of CIs covering the true value, CI level."""
    rows = [{"id": c.id, "supported": c.verdict == "supported", "level": c.ci_level,
             "covered": c.ci[0] <= true[c.id] <= c.ci[1] if c.id in true else np.nan} for c in a.claims if c.n > 0]
    d = pd.DataFrame(rows)
    return d.groupby("id").agg(tables=("supported", "size"), supported=("supported", "mean"), coverage=("covered", "mean"),
                               level=("level", "first"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.simulate", description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--orderings", type=int, default=3)
    ap.add_argument("--effect", type=float, default=1.0, help="planted effect for the power column, in seed SDs")
    ap.add_argument("--nulls", action="store_true",
                    help="add the null families (quality slope 0: H1 vs null's planted effect is the real family's slope)")
    args = ap.parse_args(argv)
    opt = Options(correction="none")  # per-claim rates; a report then corrects across its claims (Holm)
    n = 4
    null_df = simulate(args.tables, args.seeds, args.orderings, n, 0.0, 0.0, opt=opt, nulls=args.nulls)
    null = calibration(analyse(null_df, SCHEMA, opt, simulate_gaps(null_df)), truth(0, 0, n, opt))
    planted_df = simulate(args.tables, args.seeds, args.orderings, n, args.effect, args.effect, opt=opt, rng_seed=1,
                          nulls=args.nulls)
    planted = analyse(planted_df, SCHEMA, opt, simulate_gaps(planted_df, args.effect, rng_seed=1))
    power = calibration(planted, truth(args.effect, args.effect, n, opt))
    out = pd.DataFrame({"false_supported": null.supported, "coverage": null.coverage, "ci_level": null.level,
                        f"power_at_{args.effect:g}_sd": power.supported})
    print(f"{args.tables} simulated tables per column, {args.seeds} seeds, {args.orderings} orderings, alpha {opt.alpha}")
    print(out.to_string(float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
