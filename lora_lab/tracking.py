"""Weights & Biases: the only module that knows about wandb.

`tracker(...)` opens a run (offline by default: no account, no network) and always finishes it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence

from .config import LoggerConfig


class Tracker:
    def __init__(self, run):
        self.run = run
        run.define_metric("k")
        run.define_metric("*", step_metric="k")

    def log_summary(self, prefix: str, values: Dict[str, Any]) -> None:
        for key, v in values.items():
            if isinstance(v, (int, float, bool, str)):
                self.run.summary[f"{prefix}/{key}"] = v

    @staticmethod
    def _metrics(row: Dict[str, Any]) -> Dict[str, float]:
        """The measured numbers of a row: the shared metric columns and the task's own; NaN (not measured
        in this world) is left out."""
        from .schema import IDENTITY

        return {k: v for k, v in row.items() if k not in IDENTITY and not k.startswith("_")
                and isinstance(v, float) and v == v}

    def log_curve(self, rows: Sequence[Dict[str, Any]]) -> None:
        """One (merge, ordering) curve: a chart per metric against k."""
        for r in rows:
            self.run.log({"k": r["k"], **{f"{m}/{r['merge']}/ordering_{r['ordering']}": v for m, v in self._metrics(r).items()}})

    def log_table(self, df) -> None:
        import wandb

        from .schema import IDENTITY

        flat = df.assign(adapters=df.adapters.map(lambda a: "|".join(a)))
        self.run.log({"results": wandb.Table(dataframe=flat)})
        measured = [m for m in df.columns if m not in IDENTITY and df[m].notna().any()]
        for (merge, k), g in df.groupby(["merge", "k"]):  # mean over orderings: the headline curves
            means = g[measured].mean()  # NaN-skipping; NaN only where nothing was measured at this k
            self.run.log({"k": int(k), **{f"{m}/{merge}/mean": float(v) for m, v in means.items() if v == v}})


@contextmanager
def tracker(cfg: LoggerConfig, config: Dict[str, Any], name: str, group: str, out_dir: Path) -> Iterator[Tracker]:
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project=cfg.project, entity=cfg.entity, mode=cfg.mode.value, dir=str(out_dir), config=config, name=name,
        group=group, tags=list(cfg.tags), reinit="finish_previous",
    )
    try:
        yield Tracker(run)
    finally:
        run.finish()
