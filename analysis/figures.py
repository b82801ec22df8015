"""Paper figures: one style, a colour-blind-safe palette (Okabe & Ito), single-column width.

Every figure is written as PDF (vector, for the paper) and PNG (300 dpi, for a quick look).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .stats import band  # noqa: E402

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
OKABE_ITO = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
FAMILY_LABEL = {"lora": "LoRA merged (weight)", "steer": "steering (output)", "prompt": "prompt rewrite (input)"}
FAMILY_COLOR = {"lora": OKABE_ITO[0], "steer": OKABE_ITO[1], "prompt": OKABE_ITO[2]}

# metric -> (axis label with unit, figure title); a world's own columns fall back to their names
METRIC_LABEL = {
    "crows_stereo_pref": ("stereotype preference (%)", "CrowS-Pairs stereotype preference"),
    "crows_ll_diff": ("log-likelihood difference (nats)", "Stereotypical minus other sentence"),
    "quality_ppl_ratio": ("perplexity ÷ base (×)", "Held-out perplexity"),
    "quality_fact_acc": ("fact accuracy (fraction)", "Fact recall"),
    "bias_target_gap": ("TV distance to target", "Bias gap on included targets"),
    "bias_offtarget_drift": ("TV distance from base", "Drift on other targets"),
    "control_explicit_acc": ("explicit-prompt accuracy", "Controllability"),
    "diversity_entropy": ("normalised entropy", "Attribute diversity"),
    "removal_gap": ("TV distance to target", "Bias gap after removal"),
    "latency_ms": ("latency (ms per batch)", "Forward latency as deployed"),
    "latency_unmerged_ms": ("latency (ms per batch)", "Forward latency, LoRA unmerged (PEFT)"),
}
K_LABEL = "adapters stacked, k"

STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False,
    "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5, "lines.linewidth": 1.4,
    "legend.frameon": False, "figure.dpi": 150, "savefig.dpi": 300, "pdf.fonttype": 42,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO),
}


def _family_order(families) -> List[str]:
    known = [f for f in FAMILY_LABEL if f in set(families)]
    return known + sorted(set(families) - set(known))


def _save(fig, out: Path, name: str) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.pdf", out / f"{name}.png"]
    fig.savefig(paths[0], bbox_inches="tight", metadata={"CreationDate": None})
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def primary_merge(g: pd.DataFrame) -> str:
    return sorted(g["merge"].unique(), key=lambda m: (m != "sum", m))[0]


def _legend_below(ax, ncol: int = 1) -> None:
    """Outside the axes, under the x label: never on top of the data, whatever it looks like."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=ncol, handlelength=2.2)


def _line_with_band(ax, b: pd.DataFrame, color: str, label: str, marker: Optional[str] = None) -> None:
    ax.plot(b.k, b["mean"], color=color, label=label, marker=marker, markersize=2.5)
    ax.fill_between(b.k, b.lo, b.hi, color=color, alpha=0.2, linewidth=0)


def metric_columns(df: pd.DataFrame) -> List[str]:
    from lora_lab.stacking import IDENTITY

    return [c for c in df.columns if c not in IDENTITY and pd.api.types.is_float_dtype(df[c]) and df[c].notna().any()]


def metric_figure(df: pd.DataFrame, metric: str, out: Path) -> List[Path]:
    """One metric vs k: each family at its primary merge, mean over orderings and seeds, 95% band."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
        for fam in _family_order(df.family.unique()):
            g = df[df.family == fam]
            merge = primary_merge(g)
            _line_with_band(ax, band(g[g["merge"] == merge], metric), FAMILY_COLOR.get(fam, "0.3"),
                            f"{FAMILY_LABEL.get(fam, fam)}, {merge}")
        label, title = METRIC_LABEL.get(metric, (metric, metric.replace("_", " ")))
        if metric == "quality_ppl_ratio":
            ax.set_yscale("log")
            ax.axhline(1.0, color="0.5", linewidth=0.6, linestyle=":")
        ax.set(xlabel=K_LABEL, ylabel=label, title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend_below(ax)
        return _save(fig, out, f"fig_{metric}")


def merge_figure(df: pd.DataFrame, family: str, out: Path) -> List[Path]:
    """Merge methods compared within one family: quality and bias gap vs k."""
    g = df[df.family == family]
    merges = sorted(g["merge"].unique(), key=lambda m: (m != "sum", m))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, 1, figsize=(COLUMN_WIDTH, 3.6), sharex=True)
        for metric, ax in zip(("quality_ppl_ratio", "bias_target_gap"), axes):
            for i, m in enumerate(merges):
                _line_with_band(ax, band(g[g["merge"] == m], metric), OKABE_ITO[i % len(OKABE_ITO)], m)
            ax.set_ylabel(METRIC_LABEL[metric][0])
            if metric == "quality_ppl_ratio":
                ax.set_yscale("log")
        axes[0].set_title(f"Merge methods, {FAMILY_LABEL.get(family, family)}")
        axes[1].set_xlabel(K_LABEL)
        axes[1].xaxis.get_major_locator().set_params(integer=True)
        fig.align_ylabels(axes)
        _legend_below(axes[1], ncol=min(5, len(merges)))
        return _save(fig, out, f"fig_merges_{family}")


def interference_figure(gaps: pd.DataFrame, out: Path) -> List[Path]:
    """Per adapter: its own target gap inside a stack of k minus its gap alone (0 = no interference),
    every adapter as a faint point, the mean over adapters, orderings and seeds with a 95% band."""
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is deterministic
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4))
        for i, fam in enumerate(_family_order(gaps.family.unique())):
            g = gaps[gaps.family == fam]
            g = g[g["merge"] == primary_merge(g)].assign(interference=lambda d: d.gap - d.alone_gap)
            color = FAMILY_COLOR.get(fam, "0.3")
            offset = (i - 1) * 0.18
            ax.scatter(g.k + offset + rng.uniform(-0.06, 0.06, len(g)), g.interference, s=2, color=color, alpha=0.25,
                       linewidths=0, rasterized=True)
            per_k = g.groupby(["seed", "ordering", "k"]).interference.mean().reset_index()
            _line_with_band(ax, band(per_k, "interference"), color, FAMILY_LABEL.get(fam, fam))
        ax.axhline(0.0, color="0.4", linewidth=0.6, linestyle="--")
        ax.set(xlabel=K_LABEL, ylabel="gap in stack − gap alone (TV)", title="Interference between stacked adapters")
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend_below(ax)
        return _save(fig, out, "fig_interference")


def latency_figure(df: pd.DataFrame, out: Path) -> List[Path]:
    """H6: forward latency vs k per inference mode, each family at its primary merge, 95% band."""
    from .stats import LATENCY_MODES

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
        for (mode, fam, column, _, _), color, marker in zip(LATENCY_MODES, OKABE_ITO, ("o", "s", "^", "D")):
            g = df[df.family == fam]
            if g.empty or column not in g or g[column].isna().all():
                continue
            _line_with_band(ax, band(g[g["merge"] == primary_merge(g)], column), color, mode, marker)
        ax.set(xlabel=K_LABEL, ylabel=METRIC_LABEL["latency_ms"][0], title="Inference cost per mode")
        ax.set_ylim(bottom=0)
        ax.xaxis.get_major_locator().set_params(integer=True)
        _legend_below(ax, ncol=2)
        return _save(fig, out, "fig_latency")


def all_figures(df: pd.DataFrame, gaps: Optional[pd.DataFrame], out: Path) -> Dict[str, List[Path]]:
    """A figure per measured metric (a world's own columns included; all-NaN ones skipped), and
    the latency modes together in one figure."""
    from lora_lab.latency import LATENCY

    metrics = metric_columns(df)
    figs = {m: metric_figure(df, m, out) for m in metrics if m not in LATENCY}
    if any(m in LATENCY for m in metrics):
        figs["latency"] = latency_figure(df, out)
    for fam in _family_order(df.family.unique()):
        if df[df.family == fam]["merge"].nunique() > 1:
            figs[f"merges_{fam}"] = merge_figure(df, fam, out)
    if gaps is not None and not gaps.empty:
        figs["interference"] = interference_figure(gaps, out)
    return figs

