import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import lora_lab.config  # noqa: F401  registers the schemas in the ConfigStore

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("WANDB_MODE", "disabled")

# A world and model small enough to pretrain in a couple of seconds on one core.
TINY = [
    "world.roles=6",
    "world.bias_samples=20",
    "world.general_train=200",
    "world.general_heldout=50",
    "model.d_model=32",
    "model.n_layer=1",
    "train.steps=40",
    "adapters.n=3",
    "adapters.samples=16",
    "adapters.steps=10",
    "adapters.batch_size=8",
    "compose.orderings=2",
    "latency.warmup=1",  # latency is measured in every row; its statistics are tested on planted tables
    "latency.repeats=2",
    "latency.settle_s=0",
    "eval.after_use.at=ends",  # removal after use at k = 0 and the largest k only: its own tests cover more
    "logger.mode=disabled",
    "progress=false",
]


def compose_cfg(overrides=(), config_name="config"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("LORA_LAB_CACHE", str(d))
    return d


@pytest.fixture
def tiny_cfg(cache_dir):
    """Compose the tiny config (cache under tmp); call with extra overrides."""
    return lambda *extra: compose_cfg([*TINY, *extra])
