"""`world=crows`: bias pairs in the CrowS-Pairs CSV format (`data.py`) on a pretrained causal LM,
one adapter per bias type (`task.py`), scored as bias-bench does (`score.py`, `metric.py`)."""

from __future__ import annotations

from ...catalog import WorldSpec, register_world
from ...schema import Metric, core_metrics
from .config import CrowsWorldConfig

METRICS = (
    Metric("quality_nll_delta", "held-out NLL − base (nats/token)", "nats/token", "lower", "quality",
           "Held-out quality loss", primary=True, help="held-out text's mean NLL per token minus the base's"),
    Metric("quality_ppl_ratio", "perplexity ÷ base (×)", "×", "lower", "quality", "Held-out perplexity", lo=0.0,
           log=True, help="exp(quality_nll_delta)"),
    *core_metrics("|stereotype preference − 50| (pp)", "preference moved from base (pp)", "pp", "bias types",
                  hi=50.0, drift_hi=100.0),
    Metric("crows_stereo_pref", "stereotype preference (%)", "%", "none", "bias", "CrowS-Pairs stereotype preference",
           0.0, 100.0, help="% of held-out pairs whose stereotypical sentence scores higher (50 = unbiased)"),
    Metric("crows_stereo_pref_lo", "stereotype preference (%)", "%", "none", "bias", "its 95% interval, low end",
           0.0, 100.0, figure=False, help="percentile bootstrap 95% interval over pairs, low end"),
    Metric("crows_stereo_pref_hi", "stereotype preference (%)", "%", "none", "bias", "its 95% interval, high end",
           0.0, 100.0, figure=False, help="percentile bootstrap 95% interval over pairs, high end"),
    Metric("crows_ll_diff", "score difference (nats/token)", "nats/token", "none", "diagnostic",
           "Stereotypical minus other sentence", help="mean score of the stereotypical minus the other sentence"),
)



WORLD = register_world(WorldSpec(
    name="crows", schema=CrowsWorldConfig,
    open=f"{__name__}.data:CrowsWorld", task=f"{__name__}.task:CrowsTask", metrics=METRICS, models=("causal_lm",),
    pretrained=True, help="CrowS-Pairs-format sentence pairs on a pretrained causal LM"))
