"""Running on several processes or a cluster: Hydra launchers, and a cache shared by concurrent jobs."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF, ROOT, TINY, compose_cfg
from lora_lab.run import run

KEY = ["family", "merge", "ordering", "k"]


def numbers(df):
    """Everything a seed determines: all but the wall-clock latency columns, in a fixed row order."""
    return df.drop(columns=[c for c in df.columns if c.startswith("latency")]).sort_values(KEY, ignore_index=True)


def _multirun(sweep_dir, cache, *extra):
    cmd = [sys.executable, "-m", "lora_lab.run", "-m", *TINY, "family=lora", "compose.merge=[sum],[mean]",
           f"cache_dir={cache}", f"hydra.sweep.dir={sweep_dir}", *extra]
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return numbers(pd.read_parquet(sweep_dir / "results.parquet"))


def _entries(cache, kind):
    return [e.name for e in (cache / kind).iterdir()]


def test_concurrent_submitit_jobs_build_shared_artifacts_once(tmp_path):
    """Two jobs (merge sum and mean) launched at once by submitit on an empty cache need the same base
    and the same 3 adapters: each is built once, and the results equal a serial run's."""
    cache = tmp_path / "cache"
    together = _multirun(tmp_path / "together", cache, "hydra/launcher=submitit_local")
    assert len(_entries(cache, "base")) == 1  # no .tmp-* or .corrupt-* left either
    assert len(_entries(cache, "adapter_lora")) == 3
    assert len(_entries(cache, "curve")) == 2 * 2  # (sum, mean) x 2 orderings
    assert sorted(together["merge"].unique()) == ["mean", "sum"]
    serial = pd.concat([  # one job after the other, in this process, on a cache of its own
        run(compose_cfg([*TINY, "family=lora", f"compose.merge={m}", f"cache_dir={tmp_path / 'serial_cache'}"]),
            output_dir=tmp_path / "serial" / m)["results"] for m in ("[sum]", "[mean]")
    ]).pipe(numbers)
    pd.testing.assert_frame_equal(together, serial)


@pytest.mark.parametrize("launcher, target", [
    ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
    ("submitit_local", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"),
    ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
])
def test_launchers_compose_with_the_sweep(launcher, target):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+sweep=stacking", f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == target
    assert cfg.hydra.sweeper.params.family == "lora,steer,prompt,negative"
