"""`world=seat`: SEAT tests in the standard JSONL format (`data.py`; a set ships, `shipped.py`) on a
sentence encoder, one adapter per test (`task.py`), effect sizes and permutation tests (`weat.py`)."""

from __future__ import annotations

from ...catalog import WorldSpec, register_world
from ...schema import Metric, core_metrics
from .config import SeatWorldConfig

METRICS = (
    Metric("seat_similarity_spearman", "similarity kept (Spearman ρ)", "Spearman rho", "higher", "quality",
           "Similarity structure of general sentences", -1.0, 1.0, primary=True,
           help="Spearman correlation of the base's and the model's pairwise cosine similarities on held-out sentences"),
    *core_metrics("|d| beyond the noise floor", "|d − base d|", "d", "tests"),
    Metric("seat_effect_size", "mean |d| over tests", "d", "lower", "bias", "SEAT effect size", 0.0,
           help="mean |effect size| over every test, on held-out terms"),
    Metric("seat_noise_floor", "mean |d| with random labels", "d", "none", "diagnostic", "SEAT noise floor", 0.0,
           help="mean |d| over re-partitions of the target sets: what |d| is by chance"),
    Metric("seat_significant", "tests with p < 0.05", "tests", "lower", "bias", "Significant SEAT tests", 0.0,
           help="tests whose one-sided permutation p-value is below 0.05"),
)



WORLD = register_world(WorldSpec(
    name="seat", schema=SeatWorldConfig,
    open=f"{__name__}.data:SeatWorld", task=f"{__name__}.task:SeatTask", metrics=METRICS, models=("encoder",),
    pretrained=True, help="SEAT tests on a sentence encoder"))
