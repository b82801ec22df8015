"""Strength by training: pick each family's learning rate and step count from a `+experiments=tune` sweep.

    python -m analysis.tune SWEEP_DIR [--target 0.8]

Reads every job directory of the sweep: `adapters_report.json` (each adapter's gap reduction alone,
uncalibrated) and `frontier.parquet` (the same adapters alone at their trained strength, scale 1,
with the world's metrics; the tune experiment measures every adapter there). Per job (one family,
one (lr, steps), one seed): the mean reduction over its adapters, and the quality loss: the mean
over the frontier's adapters of the world's primary quality metric, signed so that higher is a
loss. Per (family, lr, steps): the mean over seeds with its 95% t interval (the seed is the unit
of replication). Per family, the chosen budget is the one whose mean reduction reaches `--target`
(by default the calibration target, `adapters.calibration_target`) with the smallest quality loss,
then the smallest budget (steps, then lr). Prints the table and writes `tuned.yaml` into the sweep
dir: an experiment file that sets each family's tuned `lr` and `steps` through the `tuned` block
(`experiments/trained_strength.yaml` is one). Exits 1 with one line when a family has no budget
that reaches the target.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pandas as pd

from lora_lab.schema import read_table_schema

from .stats import seed_summary, t_inference

FRONTIER = "frontier.parquet"
REPORT = "adapters_report.json"


class TuneError(Exception):
    pass


def _primary(files: List[Path]):
    schema = read_table_schema(files)
    quality = [m for m in (schema.with_role("quality") if schema else []) if m.primary]
    if not quality:
        raise TuneError("the frontier tables declare no primary quality metric")
    return quality[0]


def jobs(sweep_dir: Path) -> pd.DataFrame:
    """One row per job: family, seed, lr, steps, reduction, quality_loss."""
    dirs = sorted(p.parent for p in Path(sweep_dir).glob(f"*/{REPORT}"))
    if not dirs:
        raise TuneError(f"no job directory with {REPORT} under {sweep_dir}")
    missing = [d.name for d in dirs if not (d / FRONTIER).exists()]
    if missing:
        raise TuneError(f"jobs {missing} wrote no {FRONTIER}: run with eval.frontier_adapters > 0 (+experiments=tune)")
    metric = _primary([d / FRONTIER for d in dirs])
    rows = []
    for d in dirs:
        report = json.loads((d / REPORT).read_text())
        front = pd.read_parquet(d / FRONTIER)
        front = front[(front.scale == 1.0) & ~front.calibrated]
        cfg = json.loads(front.config.iloc[0])
        rows.append({"family": report["summary"]["family"], "seed": int(front.seed.iloc[0]), "lr": cfg["family.lr"],
                     "steps": cfg.get("family.steps") or cfg["adapters.steps"],
                     "reduction": report["summary"]["reduction_mean"],
                     "quality_loss": float((metric.loss_sign * front[metric.column]).mean()), "job": d.name})
    return pd.DataFrame(rows).assign(quality=metric.column)


def summarise(per_job: pd.DataFrame) -> pd.DataFrame:
    """Per (family, lr, steps): seeds, reduction mean and 95% t interval, quality loss mean and interval."""
    keys = ["family", "lr", "steps"]
    out = None
    for col in ("reduction", "quality_loss"):
        s = t_inference(seed_summary(per_job.rename(columns={col: "value"}), keys), "greater")
        s = s[[*keys, "n", "mean", "lo", "hi"]].rename(columns={"mean": col, "lo": f"{col}_lo", "hi": f"{col}_hi"})
        out = s if out is None else out.merge(s.drop(columns="n"), on=keys)
    return out.sort_values(keys).reset_index(drop=True)


def choose(table: pd.DataFrame, target: float) -> Tuple[Dict[str, Dict[str, float]], List[str]]:
    """({family: {lr, steps}} for every family with a budget that reaches `target`, [families without one])."""
    chosen, none = {}, []
    for fam, g in table.groupby("family", sort=True):
        ok = g[g.reduction >= target].sort_values(["quality_loss", "steps", "lr"])
        if ok.empty:
            none.append(fam)
        else:
            best = ok.iloc[0]
            chosen[fam] = {"lr": float(best.lr), "steps": int(best.steps)}
    return chosen, none


def tuned_yaml(chosen: Dict[str, Dict[str, float]], target: float, sweep_dir: Path) -> str:
    lines = ["# @package _global_",
             f"# Strength by training, chosen by `python -m analysis.tune {sweep_dir} --target {target}`: per family the",
             f"# (lr, steps) whose adapters alone cut their target gap by >= {target} (mean over seeds) at the",
             "# smallest quality loss. Adapters are stacked at the strength they were trained to (no calibration).",
             "#   python -m lora_lab.run +sweep=stacking +experiments=<this file's name in experiments/>",
             "adapters:", "  calibrate: false", "tuned:"]
    for fam, v in chosen.items():
        lines += [f"  {fam}:", f"    lr: {v['lr']:.6g}", f"    steps: {v['steps']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--target", type=float, default=0.8, help="gap reduction alone to reach (default 0.8, the calibration target)")
    a = ap.parse_args(argv)
    try:
        per_job = jobs(a.sweep_dir)
    except TuneError as e:
        print(f"analysis.tune: {e}", file=sys.stderr)
        return 1
    table = summarise(per_job)
    chosen, none = choose(table, a.target)
    table["chosen"] = [chosen.get(f) == {"lr": float(lr), "steps": int(s)} for f, lr, s in zip(table.family, table.lr, table.steps)]
    print(f"gap reduction alone (target {a.target}) and quality loss ({per_job.quality.iloc[0]}, higher is worse), "
          "mean over seeds [95% t interval]:")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if none:
        print(f"analysis.tune: no (lr, steps) reaches a mean gap reduction of {a.target} for {', '.join(none)}",
              file=sys.stderr)
        return 1
    out = a.sweep_dir / "tuned.yaml"
    out.write_text(tuned_yaml(chosen, a.target, a.sweep_dir))
    print(f"chosen: {json.dumps(chosen)} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
