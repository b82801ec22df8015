"""Paper figures: one style, a colour-blind-safe palette (Okabe & Ito), single-column width.

Every label, unit, range and scale comes from the table's schema: the metrics each world declares
and the labels, colours and inference modes each family declares, written into the table's
metadata (`lora_lab.schema.TableSchema`). A panel uses the declarations of its rows' world; a float
column no world declares is still drawn, labelled with its name.

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

from lora_lab.schema import SAMPLES_DIR, SHIFT, Metric, TableSchema, parse_sample_file  # noqa: E402

from .stats import TRAINED, band, gap_unit, mode_label, world_of  # noqa: E402

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
LINESTYLES = ["-", ":", "-.", (0, (3, 1, 1, 1, 1, 1))]  # a real family's arms, one after the other
DASHED = ["--", (0, (6, 2)), (0, (2, 2))]  # a control family's (a null: `control_of`), in its real family's colour
SPACE_ORDER = (*TRAINED, "input")  # families in legends: weight space, output space, input space
K_LABEL = "adapters stacked, k"

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


def control_of(schema: TableSchema, family: str) -> Optional[str]:
    """The real family a control family stands in for, as the table declares (None: a real family)."""
    return schema.families.get(family, {}).get("control_of")


def joint_of(schema: TableSchema, family: str) -> Optional[str]:
    """The real family a joint family is the reference of, as the table declares (None: not a joint)."""
    return schema.families.get(family, {}).get("joint_of")


def family_order(schema: TableSchema) -> List[str]:
    """The declared families, by space (weight, output, input), then by name, each control or joint
    family right after the real family it stands in for."""
    fams = schema.families

    def key(f):
        space = fams[f].get("space", "")
        real = control_of(schema, f) or joint_of(schema, f)
        return (SPACE_ORDER.index(space) if space in SPACE_ORDER else len(SPACE_ORDER), real or f, real is not None, f)

    return sorted(fams, key=key)


def arm_order(schema: TableSchema, arms) -> List[str]:
    known = family_order(schema)
    return sorted(set(arms), key=lambda a: (known.index(arm_family(a)) if arm_family(a) in known else len(known), a))


def family_label(schema: TableSchema, family: str) -> str:
    return schema.families.get(family, {}).get("label") or family


def family_color(schema: TableSchema, family: str) -> str:
    return schema.families.get(family, {}).get("color") or "0.3"


def arm_style(schema: TableSchema, arms) -> Dict[str, dict]:
    """Colour by family (as the family declares it: a control family declares its real family's);
    a second arm of the same family gets the next line style. A control family's arms (declared
    `control_of`) are dashed, a real family's never are. A joint family's (declared `joint_of`: a
    few k only) are drawn with square markers in its own colour, so its points stand out."""
    out, seen = {}, {}
    for a in arm_order(schema, arms):
        fam = arm_family(a)
        i = seen.get(fam, 0)
        seen[fam] = i + 1
        label = family_label(schema, fam) + (a[len(fam):] if a != fam else "")
        styles = DASHED if control_of(schema, fam) else LINESTYLES
        out[a] = {"color": family_color(schema, fam), "linestyle": styles[i % len(styles)], "label": label,
                  "marker": "s" if joint_of(schema, fam) else "o"}
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
    """Outside the axes, under the x label: never on top of the data, whatever it looks like (none
    on a panel with nothing drawn)."""
    if not ax.get_legend_handles_labels()[0]:
        return
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=ncol, handlelength=2.2)


def _line_with_band(ax, b: pd.DataFrame, color: str, label: str, linestyle: str = "-", marker: Optional[str] = "o") -> None:
    if b.empty:  # nothing measured (e.g. a joint family's interference: it has no adapter alone to compare with)
        return
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


def latency_columns(schema: TableSchema) -> List[str]:
    """Every declared mode's timing column and its paired reference: drawn together in one figure."""
    return list(dict.fromkeys(c for mode in schema.modes for c in (mode.column, mode.reference)))


def geometric_band(g: pd.DataFrame, column: str) -> pd.DataFrame:
    """`stats.band` of a ratio on the log scale, back as ratios: geometric means across seeds."""
    b = band(g.assign(_log=np.log(g[column].astype(float))), "_log")
    for c in ("mean", "lo", "hi"):
        b[c] = np.exp(b[c].astype(float))
    return b


def metric_label(schema: TableSchema, world: str, column: str):
    """(axis label, title) of a column as `world` declares it; an undeclared column: its name. A
    timing column that several families' modes share is titled after all of them."""
    m = schema.metric(column, world)
    if m is None:
        return column, column.replace("_", " ")
    modes = [t.title for mode in schema.modes for t in mode.metrics() if t.column == column]
    if len(modes) > 1 and not any(d.column == column for d in schema.metrics.get(world, ())):
        return m.label, "; ".join(dict.fromkeys(modes))
    return m.label, m.title or column.replace("_", " ")


def value_range(schema: TableSchema, world: str, column: str):
    """The ends a column's values cannot pass in `world` (None: unbounded, or undeclared)."""
    m = schema.metric(column, world)
    if m is None or (m.lo is None and m.hi is None):
        return None
    return m.lo, m.hi


def is_log(schema: TableSchema, world: str, column: str) -> bool:
    """A ratio: averaged on the log scale, drawn on a log axis."""
    m = schema.metric(column, world)
    return m is not None and m.log


def _reference_line(m: Optional[Metric]) -> Optional[float]:
    """Where "no change from the base" lies: 1 for a ratio; 0 for an unbounded quality measure
    (a difference from the base's); none otherwise."""
    if m is None:
        return None
    if m.log:
        return 1.0
    if m.role == "quality" and m.lo is None and m.hi is None:
        return 0.0
    return None


def _band(g: pd.DataFrame, schema: TableSchema, world: str, metric: str) -> pd.DataFrame:
    """`stats.band`; collapsible metrics leave collapsed rows out (their renormalised
    distributions mean nothing) but still mark the k where that happened; ratios are averaged on
    the log scale (a ratio of ×90 in one seed must not swamp the rest); a band stops at the ends
    the metric cannot pass."""
    if is_log(schema, world, metric):
        return geometric_band(g, metric)
    collapsible = metric in schema.collapsible()
    b = band(g[~g.collapsed] if collapsible else g, metric)
    if collapsible:  # still mark the k where rows were left out
        coll = g.groupby("k").collapsed.sum()
        b["collapsed"] = b.k.map(coll).fillna(0).astype(int)
    ends = value_range(schema, world, metric)
    if ends is not None:
        b["lo"], b["hi"] = b.lo.astype(float).clip(*ends), b.hi.astype(float).clip(*ends)
    return b


def primary_quality(schema: TableSchema, world: str, g: pd.DataFrame) -> Optional[str]:
    """The world's quality metric to show: its primary one where it has values, else the next
    declared quality metric that has."""
    ms = schema.with_role("quality", world if world in schema.metrics else None)
    for m in sorted(ms, key=lambda m: not m.primary):
        if m.column in g.columns and g[m.column].notna().any():
            return m.column
    return None


def metric_figure(df: pd.DataFrame, schema: TableSchema, metric: str, out: Path) -> List[Path]:
    """One metric vs k: each family at its primary merge method, one panel per setting, labelled
    as the setting's world declares the metric."""
    settings = _settings(df)
    styles = arm_style(schema, df.arm.unique())
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings))
        for i, (setting, ax) in enumerate(zip(settings, axes.flat)):
            d = df[df.setting == setting]
            world = world_of(d)
            label, title = metric_label(schema, world, metric)
            for arm in arm_order(schema, d.arm.unique()):
                g = d[d.arm == arm]
                merge = primary_merge(g)
                b = _band(g[g["merge"] == merge], schema, world, metric)
                if not b.empty:
                    st = styles[arm]
                    _line_with_band(ax, b, st["color"], f"{st['label']}, {merge}", st["linestyle"], st["marker"])
            if is_log(schema, world, metric):
                ax.set_yscale("log")
            line = _reference_line(schema.metric(metric, world))
            if line is not None:
                ax.axhline(line, color="0.5", linewidth=0.6, linestyle=":")
            ax.set(xlabel=K_LABEL, ylabel=label)
            _panel_title(ax, setting, title)
            ax.xaxis.get_major_locator().set_params(integer=True)
            if i == 0:
                _collapse_note(ax, d)
                _legend_below(ax)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, f"fig_{metric}")


def merge_figure(df: pd.DataFrame, schema: TableSchema, arm: str, out: Path) -> List[Path]:
    """Merge methods compared within one family: its world's quality measure and bias gap vs k,
    one column per setting."""
    g0 = df[df.arm == arm]
    settings = sorted(g0.setting.unique())
    merges = sorted(g0["merge"].unique(), key=lambda m: (m != "sum", m))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, len(settings), figsize=(COLUMN_WIDTH * len(settings), 3.6), sharex=True, squeeze=False)
        for j, setting in enumerate(settings):
            g = g0[g0.setting == setting]
            world = world_of(g)
            for metric, ax in zip((primary_quality(schema, world, g), "bias_target_gap"), axes[:, j]):
                if metric is None or metric not in g.columns:
                    continue
                for i, m in enumerate(merges):
                    b = _band(g[g["merge"] == m], schema, world, metric)
                    if not b.empty:
                        _line_with_band(ax, b, OKABE_ITO[i % len(OKABE_ITO)], m)
                ax.set_ylabel(metric_label(schema, world, metric)[0])
                if is_log(schema, world, metric):
                    ax.set_yscale("log")
            _panel_title(axes[0, j], setting, f"Merge methods, {arm_style(schema, [arm])[arm]['label']}")
            axes[1, j].set_xlabel(K_LABEL)
            axes[1, j].xaxis.get_major_locator().set_params(integer=True)
        fig.align_ylabels(axes[:, 0])
        _legend_below(axes[1, 0], ncol=min(5, len(merges)))
        name = arm_family(arm) if arm == arm_family(arm) else "".join(ch if ch.isalnum() else "_" for ch in arm)
        return _save(fig, out, f"fig_merges_{name}")


def interference_figure(gaps: pd.DataFrame, df: pd.DataFrame, schema: TableSchema, out: Path) -> List[Path]:
    """Per adapter: its own target gap inside a stack of k minus its gap alone (0 = no interference),
    every adapter as a faint point, the mean over seeds with a 95% band; one panel per setting."""
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is deterministic
    ids = df.drop_duplicates("config_hash").set_index("config_hash")[["setting", "arm"]]
    gaps = gaps.join(ids, on="config_hash").dropna(subset=["setting"])
    # a collapsed composition's per-target gaps are renormalised noise: left out, as in the claims
    row = ["config_hash", "merge", "ordering", "k"]
    gaps = gaps.join(df.drop_duplicates(row).set_index(row).collapsed, on=row)
    gaps = gaps[~gaps.collapsed.fillna(False).astype(bool)]
    if gaps.empty:  # every composition collapsed: nothing to draw
        return []
    settings = sorted(gaps.setting.unique())
    styles = arm_style(schema, gaps.arm.unique())
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings), height=2.4)
        for n, (setting, ax) in enumerate(zip(settings, axes.flat)):
            d = gaps[gaps.setting == setting]
            arms = arm_order(schema, d.arm.unique())
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
            unit = gap_unit(schema, world_of(df[df.setting == setting]))
            ax.set(xlabel=K_LABEL, ylabel=f"gap in stack − gap alone ({unit})")
            _panel_title(ax, setting, "Interference between stacked adapters")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if n == 0:
                _legend_below(ax)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, "fig_interference")


def latency_figure(df: pd.DataFrame, schema: TableSchema, out: Path) -> List[Path]:
    """H6: each declared inference mode's latency ÷ its paired base timing vs k, each family (arm)
    at its primary merge, geometric mean over seeds with a 95% band; one panel per setting."""
    settings = _settings(df)
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings))
        for n, (setting, ax) in enumerate(zip(settings, axes.flat)):
            d = df[df.setting == setting]
            lines = [(mode, arm) for mode in schema.modes for arm in arm_order(schema, d[d.family == mode.family].arm.unique())]
            for (mode, arm), color, marker in zip(lines, OKABE_ITO * 2, ("o", "s", "^", "D") * 4):
                g = d[d.arm == arm]
                if any(c not in g or g[c].isna().all() for c in (mode.column, mode.reference)):
                    continue
                g = g[g["merge"] == primary_merge(g)]
                b = geometric_band(g.assign(collapsed=False, _ratio=g[mode.column] / g[mode.reference]), "_ratio")
                _line_with_band(ax, b, color, mode_label(mode, arm), marker=marker)
            ax.axhline(1.0, color="0.5", linewidth=0.6, linestyle=":")
            ax.set(xlabel=K_LABEL, ylabel="latency ÷ paired base (×)")
            _panel_title(ax, setting, "Inference cost per mode")
            ax.xaxis.get_major_locator().set_params(integer=True)
            if n == 0:
                _legend_below(ax, ncol=2)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, "fig_latency")


def own_figure(schema: TableSchema, worlds, column: str) -> bool:
    """Whether a column gets a figure of its own: not a mode's timing (those share one figure), and
    not declared `figure=False` (a reference, or an interval's end) by any of `worlds`."""
    if column in latency_columns(schema):
        return False
    return all(m is None or m.figure for m in (schema.metric(column, w) for w in worlds))


def _panels(d0: pd.DataFrame, settings: List[str], axes):
    """(index, setting, its axes, its rows, its world) for each setting's panel."""
    for i, (setting, ax) in enumerate(zip(settings, axes.flat)):
        d = d0[d0.setting == setting] if "setting" in d0.columns else d0
        yield i, setting, ax, d, world_of(d)


def shift_figure(df: pd.DataFrame, schema: TableSchema, out: Path) -> List[Path]:
    """Quality against activation shift (`activation_shift`): each arm at its primary merge method,
    at each k the mean over seeds of each seed's mean over orderings of both, joined in order of k;
    one panel per setting. Two families compare at equal shift where their curves share an x: the
    one lower there loses less quality for moving the model as far."""
    d0 = df[df[SHIFT].notna()] if SHIFT in df.columns else df.iloc[:0]
    settings = _settings(d0)
    if d0.empty:
        return []
    styles = arm_style(schema, d0.arm.unique())
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings))
        for i, setting, ax, d, world in _panels(d0, settings, axes):
            quality = primary_quality(schema, world, d)
            if quality is None:
                continue
            for arm in arm_order(schema, d.arm.unique()):
                g = d[d.arm == arm]
                g = g[g["merge"] == primary_merge(g)]
                curve = g.groupby(["k", "seed"])[[SHIFT, quality]].mean().groupby("k").mean()
                st = styles[arm]
                ax.plot(curve[SHIFT], curve[quality], color=st["color"], linestyle=st["linestyle"], marker="o",
                        markersize=2.5, label=f"{st['label']}, {primary_merge(g)}")
            label, _ = metric_label(schema, world, quality)
            shift_label, _ = metric_label(schema, world, SHIFT)
            ax.set(xlabel=shift_label, ylabel=label)
            _panel_title(ax, setting, "Quality at equal activation shift")
            if i == 0:
                _legend_below(ax)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, "fig_quality_vs_shift")


# Retention of untouched concepts reported for a closed-form multi-concept editor of a Stable
# Diffusion model after 1, 5, 10 and 100 edits: an outside reference point drawn beside the
# retention curves, not a number measured here
RETENTION_ANCHOR = ((1, 0.94), (5, 0.91), (10, 0.84), (100, 0.38))
DRIFT = "bias_offtarget_drift"


def retention_figure(df: pd.DataFrame, schema: TableSchema, out: Path) -> List[Path]:
    """Retention of what a composition does not target, 1 − off-target drift (the total variation
    between the base's and the composed model's distributions on the (role, axis) pairs no included
    adapter targets), vs k ≥ 1 on a log axis: every arm at every merge method and composition
    operator, mean over seeds of each seed's mean over orderings, beside `RETENTION_ANCHOR`. One
    panel per setting; none where drift was not measured."""
    d0 = df[(df.k > 0) & df[DRIFT].notna()] if DRIFT in df.columns else df.iloc[:0]
    if d0.empty:
        return []
    settings = _settings(d0)
    styles = arm_style(schema, d0.arm.unique())
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings))
        for i, setting, ax, d, world in _panels(d0, settings, axes):
            for arm in arm_order(schema, d.arm.unique()):
                g, st = d[d.arm == arm], styles[arm]
                for j, merge in enumerate(sorted(g["merge"].unique(), key=lambda m: (m != "sum", m))):
                    b = _band(g[g["merge"] == merge], schema, world, DRIFT)
                    b = b.assign(mean=1 - b["mean"].astype(float), lo=1 - b.hi.astype(float), hi=1 - b.lo.astype(float))
                    _line_with_band(ax, b, st["color"], f"{st['label']}, {merge}", LINESTYLES[j % len(LINESTYLES)],
                                    st["marker"])
            ks, kept = zip(*RETENTION_ANCHOR)
            ax.plot(ks, kept, color="0.45", linestyle="none", marker="x", markersize=4,
                    label="closed-form multi-concept editor, Stable Diffusion (reported)")
            ax.set_xscale("log")
            ax.set(xlabel=K_LABEL, ylabel="retention, 1 − off-target drift", ylim=(0, 1.02))
            _panel_title(ax, setting, "Retention of untargeted attributes")
            if i == 0:
                _collapse_note(ax, d)
                _legend_below(ax)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, "fig_retention")


def all_figures(df: pd.DataFrame, schema: TableSchema, gaps: Optional[pd.DataFrame], out: Path) -> Dict[str, List[Path]]:
    """A figure per measured metric (a world's own columns included; all-NaN ones skipped), the
    latency modes together in one figure, merge methods per family, interference, quality against
    shift, retention of untargeted attributes. `df` carries
    `setting` and `arm` (`stats.prepare`); `schema` declares its columns."""
    metrics = metric_columns(df)
    worlds = sorted(df["world"].fillna("").astype(str).unique()) if "world" in df.columns else [""]
    figs = {m: metric_figure(df, schema, m, out) for m in metrics if own_figure(schema, worlds, m)}
    if any(m in latency_columns(schema) for m in metrics):
        figs["latency"] = latency_figure(df, schema, out)
    for arm in arm_order(schema, df.arm.unique()):
        if df[df.arm == arm]["merge"].nunique() > 1:
            figs[f"merges_{arm}"] = merge_figure(df, schema, arm, out)
    if gaps is not None and not gaps.empty:
        drawn = interference_figure(gaps, df, schema, out)
        if drawn:
            figs["interference"] = drawn
    drawn = shift_figure(df, schema, out)
    if drawn:
        figs["quality_vs_shift"] = drawn
    drawn = retention_figure(df, schema, out)
    if drawn:
        figs["retention"] = drawn
    return figs


def frontier_figure(front: pd.DataFrame, data: pd.DataFrame, schema: TableSchema, out: Path) -> List[Path]:
    """The reduction–quality frontier at k = 1 (`frontier.parquet`): x the gap reduction of an adapter
    alone, y the loss in the world's primary quality metric (signed so that up is worse), one curve
    per arm through its strengths (multiples of the trained one), a cross at the calibrated strength.
    Per strength: the mean over adapters per seed, then the mean over seeds, with 95% t intervals on
    both axes; one panel per setting (`data`'s `setting` and `arm` by `config_hash`)."""
    from scipy import stats

    ids = data.drop_duplicates("config_hash").set_index("config_hash")[["setting", "arm"]]
    f = front.join(ids, on="config_hash").dropna(subset=["setting", "arm"])
    if f.empty:
        return []
    settings = sorted(f.setting.unique())
    styles = arm_style(schema, f.arm.unique())
    with plt.rc_context(STYLE):
        fig, axes = _facets(len(settings))
        for i, (setting, ax) in enumerate(zip(settings, axes.flat)):
            d = f[f.setting == setting]
            world = world_of(d)
            quality = primary_quality(schema, world, d)
            if quality is None:
                continue
            m = next(x for x in schema.with_role("quality", world) if x.column == quality)
            d = d.assign(loss=m.loss_sign * d[quality])
            for arm in arm_order(schema, d.arm.unique()):
                st = styles[arm]
                for calibrated, g in d[d.arm == arm].groupby("calibrated"):
                    key = ["seed"] if calibrated else ["scale", "seed"]
                    seeds = g.groupby(key)[["reduction", "loss"]].mean().reset_index()
                    by = seeds.groupby("scale") if not calibrated else seeds.assign(scale=0.0).groupby("scale")
                    mean, sd, n = by[["reduction", "loss"]].mean(), by[["reduction", "loss"]].std(), by.seed.count()
                    half = sd.mul(stats.t.ppf(0.975, (n - 1).clip(lower=1)) / n.pow(0.5), axis=0).fillna(0.0)
                    ax.errorbar(mean.reduction, mean.loss, xerr=half.reduction, yerr=half.loss, color=st["color"],
                                linestyle="none" if calibrated else st["linestyle"], marker="x" if calibrated else "o",
                                markersize=4 if calibrated else 2.5, elinewidth=0.6,
                                label=f"{st['label']}, calibrated" if calibrated else st["label"])
            label, _ = metric_label(schema, world, quality)
            ax.set(xlabel="gap reduction alone", ylabel=f"loss in {label}")
            _panel_title(ax, setting, "Reduction–quality frontier (k = 1)")
            if i == 0:
                _legend_below(ax)
        for ax in list(axes.flat)[len(settings):]:
            ax.set_visible(False)
        return _save(fig, out, "fig_frontier")


def sample_grids(sweep_dir: Path, data: pd.DataFrame) -> pd.DataFrame:
    """Every sample grid a run of the sweep wrote (`<job>/samples/*.png`, an image world's), with the
    setting and arm of its job (read from the job's own results.parquet)."""
    rows = []
    for folder in sorted(Path(sweep_dir).rglob(SAMPLES_DIR)):
        table = folder.parent / "results.parquet"
        if not folder.is_dir() or not table.exists():
            continue
        chash = pd.read_parquet(table, columns=["config_hash"]).config_hash.iloc[0]
        job = data[data.config_hash == chash]
        if job.empty:
            continue
        for png in sorted(folder.glob("*.png")):
            meta = parse_sample_file(png.name)
            if meta is not None:
                rows.append({**meta, "path": png, "setting": job.setting.iloc[0], "arm": job.arm.iloc[0]})
    return pd.DataFrame(rows)


def samples_figure(sweep_dir: Path, data: pd.DataFrame, schema: TableSchema, out: Path) -> List[Path]:
    """Sample grids side by side, one figure per setting: a row per family (arm), columns k = 0, 1
    and the largest k it composed; the lowest seed and the primary merge method. Each grid is one
    row per role (its neutral prompt) of images from the same noise at every k. [] without grids."""
    grids = sample_grids(sweep_dir, data)
    if grids.empty:
        return []
    paths: List[Path] = []
    for i, setting in enumerate(sorted(grids.setting.unique())):
        g = grids[grids.setting == setting]
        arms = arm_order(schema, g.arm.unique())
        labels = arm_style(schema, arms)
        cells = []
        for arm in arms:
            a = g[(g.arm == arm) & (g.seed == g[g.arm == arm].seed.min())]
            a = a[a["merge"] == primary_merge(a)]
            ks = sorted({0, 1, int(a.k.max())} & set(a.k))
            cells.append([(arm, k, a[a.k == k].path.iloc[0]) for k in ks])
        ncol = max(len(c) for c in cells)
        fig, axes = plt.subplots(len(cells), ncol, figsize=(2.0 * ncol, 2.2 * len(cells)), squeeze=False)
        for r, row in enumerate(cells):
            for c in range(ncol):
                ax = axes[r][c]
                ax.set_xticks([])
                ax.set_yticks([])
                for side in ax.spines.values():
                    side.set_visible(False)
                if c >= len(row):
                    continue
                arm, k, path = row[c]
                ax.imshow(plt.imread(str(path)), interpolation="nearest")
                ax.set_title(f"k = {k}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(textwrap.fill(labels[arm]["label"], 18), fontsize=8)
        fig.suptitle("Samples per k (one row per role, its neutral prompt; same noise at every k)"
                     + (f"\n{setting}" if setting else ""), fontsize=9)
        name = "fig_samples" if i == 0 else f"fig_samples_{i}"
        paths += _save(fig, out, name)
    return paths
