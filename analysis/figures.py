"""Paper figures: one style, a colour-blind-safe palette (Okabe & Ito), single-column width.

Every figure is written as PDF (vector, for the paper) and PNG (300 dpi, for a quick look).
Curves are means over seeds of each seed's mean over orderings, with t-based 95% bands across
seeds (`stats.band`: the same unit as the claims). Settings are never pooled: a table with
several settings gets one panel per setting. Points at a k with collapsed rows are drawn open;
attribute metrics leave those rows out of the mean and band, as the claims do.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .stats import ATTRIBUTE_METRICS, LATENCY_MODES, band  # noqa: E402

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
FAMILY_LABEL = {"lora": "LoRA merged (weight)", "steer": "steering (output)", "prompt": "prompt rewrite (input)"}
FAMILY_COLOR = {"lora": OKABE_ITO[0], "steer": OKABE_ITO[1], "prompt": OKABE_ITO[2]}
LINESTYLES = ["-", "--", ":", "-."]
LATENCY_COLUMNS = tuple(sorted({c for mode in LATENCY_MODES for c in mode[2:4]}))
REFERENCE_COLUMNS = ("bias_base_gap",)  # the base's own numbers beside a row's: no figure of their own
INTERVAL_COLUMNS = ("crows_stereo_pref_lo", "crows_stereo_pref_hi")  # a metric's interval ends: no figure of their own

# metric -> (axis label with unit, figure title); a world's own columns fall back to their names
METRIC_LABEL = {
    "crows_stereo_pref": ("stereotype preference (%)", "CrowS-Pairs stereotype preference"),
    "crows_ll_diff": ("score difference (nats/token)", "Stereotypical minus other sentence"),
    "quality_nll_delta": ("held-out NLL − base (nats/token)", "Held-out quality loss"),
    "quality_ppl_ratio": ("perplexity ÷ base (×)", "Held-out perplexity"),
    "quality_fact_acc": ("fact accuracy (fraction)", "Fact recall"),
    "bias_target_gap": ("TV distance to target", "Bias gap on included targets"),
    "bias_offtarget_drift": ("TV distance from base", "Drift on other targets"),
    "control_explicit_acc": ("explicit-prompt accuracy", "Controllability"),
    "diversity_entropy": ("normalised entropy", "Attribute diversity"),
    "removal_gap": ("TV distance to target", "Bias gap after removal"),
    "axis_mass": ("probability on the axis values", "Attribute answers (collapse below the threshold)"),
    "latency_ms": ("latency (ms per batch)", "Forward latency as deployed"),
    "latency_base_ms": ("latency (ms per batch)", "Forward latency of the bare base, paired"),
    "latency_unmerged_ms": ("latency (ms per batch)", "Forward latency, LoRA unmerged (PEFT)"),
    "latency_unmerged_base_ms": ("latency (ms per batch)", "Forward latency, PEFT with adapters off, paired"),
}
K_LABEL = "adapters stacked, k"
# Metrics that live in [0, 1]: a t band over few seeds can reach past the ends; it is clipped there.
UNIT_INTERVAL = ("quality_fact_acc", "bias_target_gap", "bias_offtarget_drift", "control_explicit_acc",
                 "diversity_entropy", "removal_gap", "axis_mass")
# CrowS-Pairs measures a bias type's gap as |stereotype preference − 50| in percentage points, not as a
# TV distance: its labels, and the ends (pp) its values and bands cannot pass
CROWS_LABEL = {
    "bias_target_gap": ("|stereotype preference − 50| (pp)", "Bias gap on included bias types"),
    "bias_offtarget_drift": ("preference moved from base (pp)", "Drift on other bias types"),
    "removal_gap": ("|stereotype preference − 50| (pp)", "Bias gap after removal"),
}
CROWS_RANGE = {"bias_target_gap": (0, 50), "removal_gap": (0, 50), "bias_offtarget_drift": (0, 100),
               "crows_stereo_pref": (0, 100)}
# SEAT measures a test's gap as its effect size beyond the noise floor, max(|d| - floor, 0): no TV
# distance, no upper end at 1
SEAT_LABEL = {
    "bias_target_gap": ("|d| beyond the noise floor", "Bias gap on included tests"),
    "bias_offtarget_drift": ("|d − base d|", "Drift on other tests"),
    "removal_gap": ("|d| beyond the noise floor", "Bias gap after removal"),
}
SEAT_RANGE = {"bias_target_gap": (0, None), "removal_gap": (0, None), "bias_offtarget_drift": (0, None)}
# a world's marker column -> its labels and ranges, where they differ from the synthetic world's
WORLD_SCALES = {"crows_stereo_pref": (CROWS_LABEL, CROWS_RANGE), "seat_effect_size": (SEAT_LABEL, SEAT_RANGE)}

STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5, "lines.linewidth": 1.4,
    "legend.frameon": False, "figure.dpi": 150, "savefig.dpi": 300, "pdf.fonttype": 42,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
}


def arm_family(arm: str) -> str:
    """'lora [family.rank=8]' -> 'lora'."""
    return arm.split(" [")[0]


def arm_order(arms) -> List[str]:
    known = list(FAMILY_LABEL)
    return sorted(set(arms), key=lambda a: (known.index(arm_family(a)) if arm_family(a) in known else len(known), a))


def arm_style(arms) -> Dict[str, dict]:
    """Colour by family; a second arm of the same family gets the next line style."""
    out, seen = {}, {}
    for a in arm_order(arms):
        fam = arm_family(a)
        i = seen.get(fam, 0)
        seen[fam] = i + 1
        label = FAMILY_LABEL.get(fam, fam) + (a[len(fam):] if a != fam else "")
        out[a] = {"color": FAMILY_COLOR.get(fam, "0.3"), "linestyle": LINESTYLES[i % len(LINESTYLES)], "label": label}
    return out


def _save(fig, out: Path, name: str) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    fig.savefig(paths[0], bbox_inches="tight", metadata={"CreationDate": None})
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def primary_merge(g: pd.DataFrame) -> str:
    return sorted(g["merge"].unique(), key=lambda m: (m != "sum", m))[0]


def _settings(df: pd.DataFrame) -> List[str]:
    return sorted(df.setting.unique()) if "setting" in df.columns else [""]


def _facets(n_panels: int, rows_per_panel: int = 1, height: float = 2.3):
    """A grid with one column (or row of panels) per setting, at most 3 settings across."""
    cols = min(3, n_panels)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows * rows_per_panel, cols, figsize=(COLUMN_WIDTH * cols, height * rows * rows_per_panel),
                             squeeze=False, sharex=True)
    return fig, axes


def _panel_title(ax, setting: str, title: str) -> None:
    ax.set_title(title if not setting else "\n".join(textwrap.wrap(f"{title}\n{setting}", 48)))


def _legend_below(ax, ncol: int = 1) -> None:
    """Outside the axes, under the x label: never on top of the data, whatever it looks like."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=ncol, handlelength=2.2)


def _line_with_band(ax, b: pd.DataFrame, color: str, label: str, linestyle: str = "-", marker: Optional[str] = "o") -> None:
    ax.plot(b.k, b["mean"], color=color, label=label, linestyle=linestyle, marker=marker, markersize=2.5)
    ax.fill_between(b.k, b.lo.astype(float), b.hi.astype(float), color=color, alpha=0.2, linewidth=0)
    hit = b[b.collapsed > 0]
    if len(hit):  # open markers: this k has collapsed rows
        ax.plot(hit.k, hit["mean"], linestyle="none", marker="o", markersize=4.5, markerfacecolor="white",
                markeredgecolor=color, markeredgewidth=1.0)


def _collapse_note(ax, df: pd.DataFrame) -> None:
    if "collapsed" in df.columns and df.collapsed.any():
        ax.plot([], [], linestyle="none", marker="o", markersize=4.5, markerfacecolor="white", markeredgecolor="0.3",
                label="open: k with collapsed rows")


def metric_columns(df: pd.DataFrame) -> List[str]:
    """The measured numbers of the table: float columns with at least one value."""
    return [c for c in df.columns if not c.startswith("_") and pd.api.types.is_float_dtype(df[c]) and df[c].notna().any()]


def geometric_band(g: pd.DataFrame, column: str) -> pd.DataFrame:
    """`stats.band` of a ratio on the log scale, back as ratios: geometric means across seeds."""
    b = band(g.assign(_log=np.log(g[column].astype(float))), "_log")
    for c in ("mean", "lo", "hi"):
        b[c] = np.exp(b[c].astype(float))
    return b


def _has(df: pd.DataFrame, column: str) -> bool:
    return column in df.columns and bool(df[column].notna().any())


def is_crows(df: pd.DataFrame) -> bool:
    return _has(df, "crows_stereo_pref")


def gap_unit(df: pd.DataFrame) -> str:
    """The unit of this table's world's bias gaps."""
    return "pp" if is_crows(df) else "d" if _has(df, "seat_effect_size") else "TV"


def _scale(df: pd.DataFrame):
    """(labels, ranges) of this table's world where they differ from the synthetic world's."""
    return next((scale for marker, scale in WORLD_SCALES.items() if _has(df, marker)), ({}, {}))


def metric_label(df: pd.DataFrame, metric: str):
    """(axis label, title) of a metric in this table's world."""
    labels, _ = _scale(df)
    return labels.get(metric) or METRIC_LABEL.get(metric, (metric, metric.replace("_", " ")))


def value_range(df: pd.DataFrame, metric: str):
    """The ends a metric's values cannot pass in this table's world (None: unbounded)."""
    _, ranges = _scale(df)
    if metric in ranges:
        return ranges[metric]
    return (0, 1) if metric in UNIT_INTERVAL else None


def _band(g: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`stats.band`; attribute metrics leave collapsed rows out (their renormalised distributions
    mean nothing) but still mark the k where that happened; perplexity ratios are averaged on the
    log scale (a ratio of ×90 in one seed must not swamp the rest); a band stops at the ends the
    metric cannot pass."""
    if metric == "quality_ppl_ratio":
        return geometric_band(g, metric)
    b = band(g[~g.collapsed] if metric in ATTRIBUTE_METRICS else g, metric)
    if metric in ATTRIBUTE_METRICS:  # still mark the k where rows were left out
        coll = g.groupby("k").collapsed.sum()
        b["collapsed"] = b.k.map(coll).fillna(0).astype(int)
    ends = value_range(g, metric)
    if ends is not None:
        b["lo"], b["hi"] = b.lo.astype(float).clip(*ends), b.hi.astype(float).clip(*ends)
    return b


def metric_figure(df: pd.DataFrame, metric: str, out: Path) -> List[Path]:
    """One metric vs k: each family at its primary merge method, one panel per setting."""
    settings = _settings(df)
    styles = arm_style(df.arm.unique())
    label, title = metric_label(df, metric)
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings))
        for i, (setting, ax) in enumerate(zip(settings, axes.flat)):
            d = df[df.setting == setting]
            for arm in arm_order(d.arm.unique()):
                g = d[d.arm == arm]
                merge = primary_merge(g)
                b = _band(g[g["merge"] == merge], metric)
                if not b.empty:
                    st = styles[arm]
                    _line_with_band(ax, b, st["color"], f"{st['label']}, {merge}", st["linestyle"])
            if metric == "quality_ppl_ratio":
                ax.set_yscale("log")
                ax.axhline(1.0, color="0.5", linewidth=0.6, linestyle=":")
            elif metric == "quality_nll_delta":
                ax.axhline(0.0, color="0.5", linewidth=0.6, linestyle=":")
            ax.set(xlabel=K_LABEL, ylabel=label)
            _panel_title(ax, setting, title)
            ax.xaxis.get_major_locator().set_params(integer=True)
            if i == 0:
                _collapse_note(ax, d)
                _legend_below(ax)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, f"fig_{metric}")


def merge_figure(df: pd.DataFrame, arm: str, out: Path) -> List[Path]:
    """Merge methods compared within one family: quality and bias gap vs k, one column per setting."""
    g0 = df[df.arm == arm]
    settings = sorted(g0.setting.unique())
    merges = sorted(g0["merge"].unique(), key=lambda m: (m != "sum", m))
    metrics = ("quality_nll_delta" if g0.quality_nll_delta.notna().any() else "quality_ppl_ratio", "bias_target_gap") \
        if "quality_nll_delta" in g0.columns else ("quality_ppl_ratio", "bias_target_gap")
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, len(settings), figsize=(COLUMN_WIDTH * len(settings), 3.6), sharex=True, squeeze=False)
        for j, setting in enumerate(settings):
            g = g0[g0.setting == setting]
            for metric, ax in zip(metrics, axes[:, j]):
                for i, m in enumerate(merges):
                    b = _band(g[g["merge"] == m], metric)
                    if not b.empty:
                        _line_with_band(ax, b, OKABE_ITO[i % len(OKABE_ITO)], m)
                ax.set_ylabel(metric_label(g0, metric)[0])
                if metric == "quality_ppl_ratio":
                    ax.set_yscale("log")
            _panel_title(axes[0, j], setting, f"Merge methods, {arm_style([arm])[arm]['label']}")
            axes[1, j].set_xlabel(K_LABEL)
            axes[1, j].xaxis.get_major_locator().set_params(integer=True)
        fig.align_ylabels(axes[:, 0])
        _legend_below(axes[1, 0], ncol=min(5, len(merges)))
        name = arm_family(arm) if arm == arm_family(arm) else "".join(ch if ch.isalnum() else "_" for ch in arm)
        return _save(fig, out, f"fig_merges_{name}")


def interference_figure(gaps: pd.DataFrame, df: pd.DataFrame, out: Path) -> List[Path]:
    """Per adapter: its own target gap inside a stack of k minus its gap alone (0 = no interference),
    every adapter as a faint point, the mean over seeds with a 95% band; one panel per setting."""
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is deterministic
    ids = df.drop_duplicates("config_hash").set_index("config_hash")[["setting", "arm"]]
    gaps = gaps.join(ids, on="config_hash").dropna(subset=["setting"])
    # a collapsed composition's per-target gaps are renormalised noise: left out, as in the claims
    row = ["config_hash", "merge", "ordering", "k"]
    gaps = gaps.join(df.drop_duplicates(row).set_index(row).collapsed, on=row)
    gaps = gaps[~gaps.collapsed.fillna(False).astype(bool)]
    settings = sorted(gaps.setting.unique())
    styles = arm_style(gaps.arm.unique())
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings), height=2.4)
        for n, (setting, ax) in enumerate(zip(settings, axes.flat)):
            d = gaps[gaps.setting == setting]
            arms = arm_order(d.arm.unique())
            for i, arm in enumerate(arms):
                g = d[d.arm == arm]
                g = g[g["merge"] == primary_merge(g)].assign(interference=lambda x: x.gap - x.alone_gap)
                st = styles[arm]
                offset = (i - (len(arms) - 1) / 2) * 0.18
                ax.scatter(g.k + offset + rng.uniform(-0.06, 0.06, len(g)), g.interference, s=2, color=st["color"], alpha=0.25,
                           linewidths=0, rasterized=True)
                per_curve = g.groupby(["seed", "ordering", "k"]).interference.mean().reset_index().assign(collapsed=False)
                _line_with_band(ax, band(per_curve, "interference"), st["color"], st["label"], st["linestyle"])
            ax.axhline(0.0, color="0.4", linewidth=0.6, linestyle="--")
            ax.set(xlabel=K_LABEL, ylabel=f"gap in stack − gap alone ({gap_unit(df)})")
            _panel_title(ax, setting, "Interference between stacked adapters")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if n == 0:
                _legend_below(ax)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, "fig_interference")


def latency_figure(df: pd.DataFrame, out: Path) -> List[Path]:
    """H6: each inference mode's latency ÷ its paired base timing vs k, each family (arm) at its
    primary merge, geometric mean over seeds with a 95% band; one panel per setting."""
    settings = _settings(df)
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings))
        for n, (setting, ax) in enumerate(zip(settings, axes.flat)):
            d = df[df.setting == setting]
            lines = [(mode, fam, column, reference, arm) for mode, fam, column, reference, *_ in LATENCY_MODES
                     for arm in arm_order(d[d.family == fam].arm.unique())]
            for (mode, fam, column, reference, arm), color, marker in zip(lines, OKABE_ITO * 2, ("o", "s", "^", "D") * 4):
                g = d[d.arm == arm]
                if any(c not in g or g[c].isna().all() for c in (column, reference)):
                    continue
                g = g[g["merge"] == primary_merge(g)]
                b = geometric_band(g.assign(collapsed=False, _ratio=g[column] / g[reference]), "_ratio")
                _line_with_band(ax, b, color, mode.replace(fam, arm, 1), marker=marker)
            ax.axhline(1.0, color="0.5", linewidth=0.6, linestyle=":")
            ax.set(xlabel=K_LABEL, ylabel="latency ÷ paired base (×)")
            _panel_title(ax, setting, "Inference cost per mode")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if n == 0:
                _legend_below(ax, ncol=2)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, "fig_latency")


def all_figures(df: pd.DataFrame, gaps: Optional[pd.DataFrame], out: Path) -> Dict[str, List[Path]]:
    """A figure per measured metric (a world's own columns included; all-NaN ones skipped), the
    latency modes together in one figure, merge methods per family, interference. `df` carries
    `setting` and `arm` (`stats.prepare`)."""
    metrics = metric_columns(df)
    figs = {m: metric_figure(df, m, out) for m in metrics
            if m not in LATENCY_COLUMNS and m not in REFERENCE_COLUMNS and m not in INTERVAL_COLUMNS}
    if any(m in LATENCY_COLUMNS for m in metrics):
        figs["latency"] = latency_figure(df, out)
    for arm in arm_order(df.arm.unique()):
        if df[df.arm == arm]["merge"].nunique() > 1:
            figs[f"merges_{arm}"] = merge_figure(df, arm, out)
    if gaps is not None and not gaps.empty:
        figs["interference"] = interference_figure(gaps, df, out)
    return figs
