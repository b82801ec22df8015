import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import lora_lab.config  # noqa: F401  registers the schemas in the ConfigStore

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("WANDB_MODE", "disabled")


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs one worker per core), each worker keeps to a core of its
    own: torch then runs one intra-op thread per worker (lora_lab/threads.py reads the affinity),
    and two workers never spin at each other's barriers on a shared core."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})
        os.environ["OMP_NUM_THREADS"] = "1"  # before torch is first imported in this worker

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
