"""The results table: one row per evaluated composition, as parquet, written atomically.

A Hydra callback combines every job's `results.parquet` into the sweep dir when a multirun ends.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("lora_lab")
RESULTS = "results.parquet"


def to_frame(rows: Sequence[Dict[str, Any]]) -> pd.DataFrame:
    from .eval.metrics import METRICS
    from .stacking import IDENTITY

    df = pd.DataFrame(list(rows), columns=[*IDENTITY, *METRICS])
    return df.astype({"ordering": "int64", "k": "int64", "seed": "int64", **{m: "float64" for m in METRICS}})


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    df.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def combine(sweep_dir: Path) -> pd.DataFrame:
    """Concatenate every job's table under `sweep_dir` into `sweep_dir/results.parquet`."""
    sweep_dir = Path(sweep_dir)
    parts: List[pd.DataFrame] = [pd.read_parquet(p) for p in sorted(sweep_dir.glob(f"*/{RESULTS}"))]
    if not parts:
        raise FileNotFoundError(f"no {RESULTS} under {sweep_dir}/*/")
    df = pd.concat(parts, ignore_index=True)
    write_parquet_atomic(df, sweep_dir / RESULTS)
    return df


class CombineResults(Callback):
    """Registered in conf/config.yaml (hydra.callbacks): runs once when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            df = combine(sweep_dir)
        except FileNotFoundError as e:
            log.warning("%s", e)
            return
        print(summary(df, sweep_dir / RESULTS))


def summary(df: pd.DataFrame, path: Path) -> str:
    """The one-screen end-of-sweep summary."""
    last = df[df.k == df.groupby(["family", "merge"]).k.transform("max")]
    table = last.groupby(["family", "merge"])[["k", "quality_ppl_ratio", "quality_fact_acc", "bias_target_gap",
                                               "control_explicit_acc"]].mean()
    return "\n".join([
        "",
        f"lora_lab: {len(df)} compositions, {df.family.nunique()} families, {df.ordering.nunique()} orderings, "
        f"k = 0..{df.k.max()}",
        f"results: {path}",
        "",
        "at the largest k (mean over orderings and seeds):",
        table.to_string(float_format=lambda x: f"{x:.3f}"),
        "",
        f"open it:   python -c \"import pandas as pd; print(pd.read_parquet('{path}'))\"",
        "",
    ])
