"""`python -m lora_lab.pretrain [overrides]`: the base stage alone. Pretrains (or loads from the
cache) the base model the run would use, writes `base_report.json` and prints where the weights are.

    python -m lora_lab.pretrain world=shapes model=tiny_unet seed=0
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .cache import write_json_atomic
from .config import ConfigError, validate

log = logging.getLogger("lora_lab")


def pretrain(cfg: DictConfig, output_dir: Path) -> dict:
    c = validate(cfg)
    from . import catalog

    world = catalog.build_world(c.world, c.seed)
    import torch

    from .base import base_report, get_base
    from .cache import ArtifactCache, default_root
    from .threads import job_threads

    torch.set_num_threads(job_threads(c.threads))
    task = catalog.build_task(c.world, c.seed, world)
    cache = ArtifactCache(default_root(c.cache_dir))
    base = get_base(c, task, cache, progress=c.progress)
    report = base_report(base, task, cache)
    write_json_atomic(Path(output_dir) / "base_report.json", report)
    return report


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from .worlds.io import DataError

    try:
        report = pretrain(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (ConfigError, DataError) as e:
        print(f"lora_lab: {'config' if isinstance(e, ConfigError) else 'data'} error: {e}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
