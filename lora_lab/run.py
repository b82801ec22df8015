"""Entry point: `python -m lora_lab.run [overrides]`.

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
from omegaconf import DictConfig

from .cache import write_json_atomic
from .config import ConfigError, validate

log = logging.getLogger("lora_lab")


def _output_dir(output_dir: Optional[Path]) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path.cwd()


def run(cfg: DictConfig, output_dir: Optional[Path] = None) -> Dict[str, Any]:
    """Validate the config, then world -> base model (cached) -> adapters (cached), writing
    `base_report.json` and `adapters_report.json` (each adapter measured alone)."""
    c = validate(cfg)  # every value check, before any work
    # Imported here so a bad config fails in well under a second, without loading torch.
    from .adapters.stage import build_adapters, measure_single, summarise
    from .base import base_report, get_base
    from .cache import ArtifactCache, default_root
    from .world import build_world

    out = _output_dir(output_dir)
    t0 = time.perf_counter()
    world = build_world(c.world)
    cache = ArtifactCache(default_root(c.cache_dir))
    base = get_base(c, world, cache, progress=c.progress)
    report = base_report(base, world)
    report["wall_seconds"] = time.perf_counter() - t0
    write_json_atomic(out / "base_report.json", report)
    log.info(
        "base %s (%s): fit_tv=%.4f fact_acc=%.3f explicit_acc=%.3f ppl=%.3f -> %s",
        report["cache_key"] or base.path, "cache hit" if base.cache_hit else f"trained in {base.train_seconds:.1f}s",
        report["fit_tv"], report["fact_acc"], report["explicit_acc"], report["ppl"], out / "base_report.json",
    )
    t1 = time.perf_counter()
    adapters = build_adapters(c, base, world, cache, progress=c.progress)
    rows = measure_single(adapters, c, base, world)
    summary = {**summarise(rows), "family": c.family.name.value, "wall_seconds": time.perf_counter() - t1}
    write_json_atomic(out / "adapters_report.json", {"summary": summary, "adapters": rows})
    log.info(
        "%d %s adapters (%d params each): gap reduction mean %.3f min %.3f, fact_acc min %.3f -> %s",
        summary["n"], summary["family"], summary["n_params_per_adapter"], summary["reduction_mean"],
        summary["reduction_min"], summary["fact_acc_min"], out / "adapters_report.json",
    )
    return {"base": report, "adapters": {"summary": summary, "rows": rows}}


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ConfigError as e:
        print(f"lora_lab: config error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
