"""The results table: one row per evaluated composition, as parquet, written atomically.

A Hydra callback combines every job's `results.parquet` into the sweep dir when a multirun ends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from .catalog import control_of, joint_of
from .schema import COLLAPSED, IDENTITY, PIPELINE_METRICS, Metric, Mode, TableSchema, columns, read_table_schema, write_table

log = logging.getLogger("lora_lab")
RESULTS = "results.parquet"
TARGET_GAPS = "target_gaps.parquet"
FRONTIER = "frontier.parquet"
FRONTIER_COLUMNS = ("adapter", "scale", "calibrated", "base_gap", "gap", "reduction")


def to_frame(rows: Sequence[Dict[str, Any]], metrics: Sequence[Metric], modes: Sequence[Mode]) -> pd.DataFrame:
    """The identity columns, the world's declared metric columns, `collapsed`, then the latency
    columns of the family's inference modes (`schema.columns`)."""
    cols = columns(metrics, modes)
    floats = [m.column for m in (*metrics, *PIPELINE_METRICS)] + [c for mode in modes for c in mode.columns()]
    df = pd.DataFrame(list(rows), columns=cols)
    return df.astype({"ordering": "int64", "k": "int64", "seed": "int64", COLLAPSED: "bool", **{m: "float64" for m in floats}})


def family_declaration(family) -> Dict[str, str]:
    """What a table says about a family: label, colour, space, `control_of` (the real family a
    control family stands in for; only a control family has it) and `joint_of` (the real family a
    joint family is the reference of; only a joint family has it)."""
    real, joint = control_of(family), joint_of(family)
    return {"label": family.label, "color": family.color, "space": family.space,
            **({"control_of": real} if real is not None else {}), **({"joint_of": joint} if joint is not None else {})}


def table_schema(world: str, metrics: Sequence[Metric], family) -> TableSchema:
    """What a job's tables declare about themselves: its world's metrics, its family's modes and labels."""
    return TableSchema({world: [*metrics, *PIPELINE_METRICS]}, list(family.modes), {family.name: family_declaration(family)})


def target_gaps_frame(rows: Sequence[Dict[str, Any]], alone: Dict[str, float], base: Dict[str, float]) -> pd.DataFrame:
    """Long table: one row per (composition, included adapter) with the target's gap on the base
    model (`base_gap`), the adapter's own gap there and alone (k = 1, at the strength it is stacked
    with). A task's per-target value is a gap, or a dict with "gap" and extra float fields (SEAT:
    the effect size, p-value, noise floor; leave-one-out: `loo_gap`, `loo_others`), which become
    columns after `alone_gap` (NaN where a value has no such field)."""
    from .stacking import TARGET_GAPS

    names = ["run_id", "family", "merge", "ordering", "k", "seed", "config_hash", "adapter", "position", "base_gap", "gap",
             "alone_gap"]
    out, extra = [], {}
    for r in rows:
        for i, (a, g) in enumerate(r[TARGET_GAPS].items()):
            fields = dict(g) if isinstance(g, dict) else {"gap": g}
            extra.update(dict.fromkeys(k for k in fields if k != "gap"))
            out.append({"run_id": r["run_id"], "family": r["family"], "merge": r["merge"], "ordering": r["ordering"],
                        "k": r["k"], "seed": r["seed"], "config_hash": r["config_hash"], "adapter": a, "position": i + 1,
                        "base_gap": base[a], "alone_gap": alone[a], **fields})
    return pd.DataFrame(out, columns=[*names, *extra]).astype({c: "float64" for c in extra})


def frontier_frame(points: Sequence[Dict[str, Any]], identity: Dict[str, Any], metrics: Sequence[Metric]) -> pd.DataFrame:
    """The frontier table (`adapters.stage.frontier`): per point the job's identity columns, the
    adapter, its strength (`scale`, a multiple of its trained strength; `calibrated` marks its
    calibrated strength), its gap alone and the base's, the reduction, and the world's metric columns
    that `Task.evaluate` returns (every declared one but `removal_gap`)."""
    ident = [c for c in IDENTITY if c in identity]
    cols = [*ident, *FRONTIER_COLUMNS, *(m.column for m in metrics if m.column != "removal_gap")]
    df = pd.DataFrame([{**identity, **p} for p in points], columns=cols)
    floats = [c for c in cols[len(ident):] if c not in ("adapter", "calibrated")]
    return df.astype({"seed": "int64", "calibrated": "bool", **{c: "float64" for c in floats}})


def combine(sweep_dir: Path) -> Tuple[pd.DataFrame, Optional[TableSchema]]:
    """Concatenate every job's tables under `sweep_dir` into `sweep_dir/results.parquet` (and
    `target_gaps.parquet`, and `frontier.parquet` where jobs wrote one), their declarations merged; returns the results table and its schema."""
    sweep_dir = Path(sweep_dir)
    for name in (FRONTIER, TARGET_GAPS, RESULTS):
        files = sorted(sweep_dir.glob(f"*/{name}"))
        parts: List[pd.DataFrame] = [pd.read_parquet(p) for p in files]
        if not parts and name == FRONTIER:
            continue  # no job drew one (eval.frontier_adapters=0, or no trained family)
        if not parts:
            raise FileNotFoundError(f"no {name} under {sweep_dir}/*/")
        df = pd.concat(parts, ignore_index=True)
        schema = read_table_schema(files)
        write_table(df, sweep_dir / name, schema)
    return df, schema


class CombineResults(Callback):
    """Registered in conf/config.yaml (hydra.callbacks): runs once when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            df, schema = combine(sweep_dir)
        except FileNotFoundError as e:
            log.warning("%s", e)
            return
        print(summary(df, sweep_dir / RESULTS, schema))


def summary(df: pd.DataFrame, path: Path, schema: Optional[TableSchema]) -> str:
    """The one-screen end-of-sweep summary: each setting and family at its largest k, the mean
    over seeds of each seed's mean over orderings (settings apart, as the report keeps them), of
    the worlds' quality and control metrics and the bias gap."""
    from analysis.settings import assign

    df, fields = assign(df)
    keys = ["setting", "arm", "merge"] if fields else ["arm", "merge"]
    def declared(role: str) -> List[str]:
        return [m.column for m in (schema.with_role(role) if schema else []) if m.figure and not m.log]

    cols = [c for c in dict.fromkeys([*declared("quality"), "bias_target_gap", *declared("control"), COLLAPSED])
            if c in df.columns and df[c].notna().any()]
    last = df[df.k == df.groupby(keys).k.transform("max")].astype({"collapsed": float})
    table = last.groupby([*keys, "seed"])[["k", *cols]].mean().groupby(keys).mean()
    table = table.rename(columns={"collapsed": "collapsed_share"}).rename_axis(index={"arm": "family"})
    return "\n".join([
        "",
        f"lora_lab: {len(df)} compositions, {df.family.nunique()} families, {df.seed.nunique()} seeds x "
        f"{df.ordering.nunique()} orderings, k = 0..{df.k.max()}" + (f", settings differ in {', '.join(fields)}" if fields else ""),
        f"results: {path}",
        "",
        "at the largest k (mean over seeds of each seed's mean over orderings):",
        table.to_string(float_format=lambda x: f"{x:.3f}"),
        "",
        f"figures, H1-H6 statistics and dashboard:   python -m analysis.report {path.parent}",
        f"the table in pandas:   pd.read_parquet('{path}')",
        "",
    ])
