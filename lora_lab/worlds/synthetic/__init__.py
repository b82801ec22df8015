"""`world=synthetic`: a word-level language whose bias is known exactly (`world.py`), pretrained
from scratch on every seed, with exact ground truth for every metric (`metrics.py`, `probes.py`)."""

from __future__ import annotations

from ...catalog import WorldSpec, register_world
from ...schema import Metric, core_metrics, diversity_metrics
from .config import DEFAULT_N, SyntheticWorldConfig

CORE = core_metrics("TV distance to target", "TV distance from base", "TV", "targets", hi=1.0, drift_hi=1.0,
                    collapsible=True)
METRICS = (
    Metric("quality_nll_delta", "held-out NLL − base (nats/token)", "nats/token", "lower", "quality",
           "Held-out quality loss", primary=True,
           help="held-out text's mean NLL per scored token minus the base's"),
    Metric("quality_ppl_ratio", "perplexity ÷ base (×)", "×", "lower", "quality", "Held-out perplexity", lo=0.0,
           log=True, help="exp(quality_nll_delta)"),
    Metric("quality_fact_acc", "fact accuracy (fraction)", "fraction", "higher", "quality", "Fact recall", 0.0, 1.0,
           help="share of role -> workplace / tool facts answered right"),
    *CORE[:3],
    Metric("control_explicit_acc", "explicit-prompt accuracy", "fraction", "higher", "control", "Controllability", 0.0,
           1.0, collapsible=True, help="a prompt with a marker word gets the marked attribute"),
    *diversity_metrics(),
    CORE[3],  # removal_gap, in the column order the table has always had
    Metric("axis_mass", "probability on the axis values", "fraction", "none", "diagnostic",
           "Attribute answers (collapse below the threshold)", 0.0, 1.0,
           help="probability the attribute probes put on the axis's own values (below eval.collapse_mass: collapsed)"),
)



def _check(root) -> None:
    """adapters.n within the world's targets, the schedule within adapters.n, a λ list long enough,
    the after-use k among the schedule's."""
    from ...checks import require
    from ...config import check_schedule

    w, kind, n = root.world, root.adapters.kind.value, root.adapters.n or DEFAULT_N
    available = w.roles * len(w.axes) if kind == "rebalance" else sum(len(a.values) for a in w.axes)
    require(n <= available, "adapters.n", f"this world has {available} {kind} targets", n)
    check_schedule(root.compose, n, root.eval.after_use)


WORLD = register_world(WorldSpec(
    name="synthetic", schema=SyntheticWorldConfig,
    open=f"{__name__}.world:SyntheticWorld", task=f"{__name__}.task:SyntheticTask", metrics=METRICS, models=("causal_lm",),
    rewrites=True, collapse="axis_mass", check=_check,
    help="a synthetic language with planted bias, exact ground truth; the base is pretrained on it"))
