"""Entry point: `python -m lora_lab.run [overrides]`, and `+sweep=stacking` for the headline sweep.

`main` is a thin Hydra wrapper; `run(cfg)` does the work and is what tests call.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .cache import write_json_atomic
from .config import ConfigError, validate

log = logging.getLogger("lora_lab")


def _output_dir(output_dir: Optional[Path]) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def _group() -> str:
    """The W&B group: the sweep's directory name in a multirun, else 'single'."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().sweep.dir).name
    return "single"


def run(cfg: DictConfig, output_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Validate, then world -> base (cached) -> N adapters (cached) -> compositions -> results.

    Writes `base_report.json`, `adapters_report.json`, `results.parquet`, `target_gaps.parquet`
    (each adapter's own gap in every composition) and, for a trained family with
    `eval.frontier_adapters` > 0, `frontier.parquet` (adapters alone over a scale sweep) into the output dir.
    """
    c = validate(cfg)  # every value check, before any work
    from . import catalog

    spec, family = catalog.world(c.world.name), catalog.family(c.family.name)
    needs = getattr(family, "needs", None)  # an input-space family runs on worlds declaring this flag
    if needs and not getattr(spec, needs):
        # A sweep over families reaches this job for every world; it has nothing to run here.
        able = [w for w, s in catalog.worlds().items() if getattr(s, needs)]
        log.warning("skipped: family=%s needs a world with %s; world=%s has none (worlds that do: %s)",
                    family.name, needs, c.world.name, ", ".join(able))
        return {"skipped": f"family={family.name} needs a world with {needs}: {able}"}
    world = catalog.build_world(c.world, c.seed)  # reads and checks the data files: bad data stops here too
    # Imported here so a bad config or data file fails in about a second, without loading torch.
    import torch

    from .adapters.stage import build_adapters, measured, summarise
    from .base import base_report, get_base
    from .cache import ArtifactCache, default_root
    from .results import FRONTIER, RESULTS, TARGET_GAPS, frontier_frame, table_schema, target_gaps_frame, to_frame
    from .schema import SAMPLES_DIR, write_table
    from .stacking import run_identity, stack
    from .tracking import tracker
    from .threads import job_threads

    torch.set_num_threads(job_threads(c.threads))
    out = _output_dir(output_dir)
    t0 = time.perf_counter()
    task = catalog.build_task(c.world, c.seed, world)
    cache = ArtifactCache(default_root(c.cache_dir))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with tracker(c.logger, resolved, name=f"{family.name}-s{c.seed}", group=_group(), out_dir=out) as track:
        base = get_base(c, task, cache, progress=c.progress)
        report = base_report(base, task, cache)
        write_json_atomic(out / "base_report.json", report)
        track.log_summary("base", report)
        log.info("base %s (%s): %s", report["cache_key"],
                 "cache hit" if base.cache_hit else f"trained in {base.train_seconds:.1f}s",
                 " ".join(f"{k}={v:.4g}" for k, v in report.items() if isinstance(v, float) and k != "train_seconds"))

        ref = task.reference(base.model, base.tokenizer)  # what every adapter and composition is compared with
        adapters = build_adapters(c, base, task, cache, progress=c.progress)
        joints = None
        if catalog.joint_of(family):  # one adapter per k, on the union of the k targets (adapters/joint.py)
            from .adapters.joint import build_joint, measure_joint
            from .stacking import orderings

            orders = orderings(len(adapters), c.family.orderings, c.seed)
            joints = build_joint(c, base, task, cache, [a.target for a in adapters], orders, progress=c.progress)
            rows, points = measure_joint(joints, c, base, task), []
        else:
            rows, points = measured(adapters, c, base, task, ref, cache)  # alone, and the frontier (cached)
        summary = {**summarise(rows, spec.metrics), "family": family.name}
        write_json_atomic(out / "adapters_report.json", {"summary": summary, "adapters": rows})
        track.log_summary("adapters", summary)
        log.info(
            "%d %s adapters (%d params each): alone, gap reduction mean %.3f min %.3f",
            summary["n"], summary["family"], summary["n_params_per_adapter"], summary["reduction_mean"],
            summary["reduction_min"],
        )

        if points:
            write_table(frontier_frame(points, run_identity(c), spec.metrics), out / FRONTIER,
                        table_schema(spec.name, spec.metrics, family))

        curves = stack(c, base, task, adapters, ref, cache, on_curve=track.log_curve, progress=c.progress, joints=joints,
                       samples_dir=out / SAMPLES_DIR)
        # each target's gap alone (a joint job trains no single adapters: NaN)
        alone = {r["adapter"]: r["stacked_gap"] for r in rows} if joints is None else {a.id: float("nan") for a in adapters}
        base_gaps = ({r["adapter"]: r["base_gap"] for r in rows} if joints is None
                     else task.target_gaps(base.model, base.tokenizer, [a.target for a in adapters]))
        schema = table_schema(spec.name, spec.metrics, family)
        write_table(target_gaps_frame(curves, alone, base_gaps), out / TARGET_GAPS, schema)
        df = to_frame(curves, spec.metrics, family.modes)
        write_table(df, out / RESULTS, schema)
        track.log_table(df)
    log.info("%d compositions in %.1fs -> %s", len(df), time.perf_counter() - t0, out / RESULTS)
    return {"base": report, "adapters": {"summary": summary, "rows": rows}, "results": df}


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from .worlds.io import DataError

    try:
        run(cfg)
    except ConfigError as e:
        print(f"lora_lab: config error: {e}", file=sys.stderr)
        sys.exit(2)
    except DataError as e:
        print(f"lora_lab: data error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
