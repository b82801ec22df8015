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
    """Validate the config, then world -> base model (cached) -> `base_report.json`."""
    c = validate(cfg)  # every value check, before any work
    # Imported here so a bad config fails in well under a second, without loading torch.
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
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except ConfigError as e:
        print(f"lora_lab: config error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
