import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from conftest import CONF, ROOT, compose_cfg
from lora_lab.config import Arch, Config, ConfigError, validate


def _group_options():
    for yaml in sorted(CONF.rglob("*.yaml")):
        rel = yaml.relative_to(CONF)
        if rel.parent != Path("."):
            yield str(rel.parent), rel.stem


def test_root_config_composes_and_validates():
    c = validate(compose_cfg())
    assert isinstance(c, Config) and c.world.roles == 32 and c.model.arch == Arch.gpt2


def _root_groups():
    from omegaconf import OmegaConf

    return {next(iter(d)) for d in OmegaConf.load(CONF / "config.yaml").defaults if not isinstance(d, str)}


def _partners(group, option, tmp_path):
    """What an option needs beside it: required fields, or the model/world it goes with."""
    csv_file, text = tmp_path / "pairs.csv", tmp_path / "text.txt"
    csv_file.write_text("sent_more,sent_less,stereo_antistereo,bias_type\n")
    text.write_text("a\nb\n")
    crows = ["world=crows", f"world.path={csv_file}", f"world.text_path={text}", "model=hf", "model.name_or_path=org/m"]
    return {
        ("model", "hf"): ["model.name_or_path=org/some-model"],
        ("model", "minilm"): ["world=seat"],
        ("world", "seat"): ["model=minilm"],
        ("world", "crows"): crows,
        ("world", "shapes"): ["model=tiny_unet"],
        ("model", "tiny_unet"): ["world=shapes"],
        ("family", "negative"): ["world=shapes", "model=tiny_unet"],
    }.get((group, option), [])


@pytest.mark.parametrize("group,option", list(_group_options()))
def test_every_shipped_yaml_composes_and_validates(group, option, tmp_path):
    plus = "" if group in _root_groups() else "+"  # optional groups (sweep) are appended
    cfg = compose_cfg([f"{plus}{group}={option}", *_partners(group, option, tmp_path)])
    validate(cfg)


@pytest.mark.parametrize(
    "override,field",
    [
        ("world.roles=0", "world.roles"),
        ("world.roles=-3", "world.roles"),
        ("world.bias_strength=1.0", "world.bias_strength"),
        ("world.bias_strength=0", "world.bias_strength"),
        ("+world.targets.pronoun=[1,1]", "world.targets.pronoun"),
        ("+world.targets.colour=[1,1,1]", "world.targets"),
        ("model.name_or_path=/no/such/model", "model.name_or_path"),
        ("model.d_model=30", "model.d_model"),
        ("train.lr=-1e-3", "train.lr"),
        ("train.steps=0", "train.steps"),
        ("train.epochs=0", "train.epochs"),
        ("latency.repeats=0", "latency.repeats"),
        ("latency.batch_size=0", "latency.batch_size"),
    ],
)
def test_bad_values_fail_naming_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg([override]))
    msg = str(e.value)
    assert msg.startswith(field + ":") and "\n" not in msg


@pytest.mark.parametrize(
    "override,exc",
    [
        ("world.rolez=3", ConfigCompositionException),  # typo
        ("world.roles=many", ConfigCompositionException),  # wrong type
        ("model.arch=transformerxl", ConfigCompositionException),  # not an Arch
        ("model=gpt5", ConfigCompositionException),  # unknown group option
    ],
)
def test_typos_and_types_fail_at_compose_time(override, exc):
    with pytest.raises(exc):
        compose_cfg([override])


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml")))
def test_every_experiment_composes_with_the_sweep_and_validates(name):
    cfg = compose_cfg(["+sweep=stacking", f"+experiments={name}"])
    validate(cfg)


def test_scale_experiment_reaches_256_adapters_with_enough_roles():
    c = validate(compose_cfg(["+sweep=stacking", "+experiments=scale", "world.roles=128", "adapters.n=256"]))
    assert c.compose.ks(c.adapters.n) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]
    with pytest.raises(ConfigError, match="^adapters.n: this world has 128 rebalance targets"):
        validate(compose_cfg(["+sweep=stacking", "+experiments=scale", "adapters.n=256"]))


def test_hub_ids_are_not_checked_as_paths():
    c = validate(compose_cfg(["model.name_or_path=org/some-model"]))
    assert c.model.name_or_path == "org/some-model"


def _cli(*args, cache):
    env = {**os.environ, "LORA_LAB_CACHE": str(cache), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "lora_lab.run", "hydra.run.dir=" + str(cache.parent / "out"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["world.roles=0"], "world.roles"),
        (["world.bias_strength=1.5"], "world.bias_strength"),
        (["model.name_or_path=./missing/dir"], "model.name_or_path"),
        (["model=gpt5"], "model"),
        (["world.rolez=3"], "rolez"),
    ],
)
def test_cli_bad_config_exits_nonzero_before_training(tmp_path, args, needle):
    cache = tmp_path / "cache"
    r = _cli(*args, cache=cache)
    assert r.returncode != 0
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not cache.exists()  # nothing trained, nothing cached


@pytest.mark.parametrize("overrides,field", [
    (["world=crows", "model=hf", "model.name_or_path=/tmp"], "world.path"),
    (["world=crows", "world.path=/nonexistent.csv", "model=hf", "model.name_or_path=/tmp"], "world.text_path"),
    (["model=hf"], "model.name_or_path"),
    (['world.axes=[{name:a,prompt:"the {role} x",values:[a,b]}]'], "world.axes[0].markers"),
])
def test_every_missing_mandatory_field_is_named(overrides, field):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg(overrides))
    assert str(e.value) == f"{field}: missing mandatory value; set {field}=..."


HF = ["model=hf", "model.name_or_path=/tmp"]


@pytest.mark.parametrize("overrides,message", [
    (["world=crows", "world.path=/nonexistent.csv", "world.text_path=/nonexistent.txt", *HF], "world.path: file does not exist"),
    (["world=crows", "world.path=/tmp", "world.text_path=/nonexistent.txt", *HF], "world.path: file does not exist"),
    (["world=seat", "model=minilm", "world.path=/nonexistent"], "world.path: directory does not exist"),
    (["world=seat", "model=minilm", "world.text_path=/nonexistent.txt"], "world.text_path: file does not exist"),
])
def test_every_missing_path_is_named(overrides, message):
    with pytest.raises(ConfigError, match=f"^{message}"):
        validate(compose_cfg(overrides))


def test_cli_missing_mandatory_value_is_one_line(tmp_path):
    r = _cli("world=crows", "world.path=/nonexistent.csv", "model=hf", "model.name_or_path=/tmp", cache=tmp_path / "cache")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["lora_lab: config error: world.text_path: missing mandatory value; "
                                            "set world.text_path=..."]


def test_cli_our_validation_is_one_line(tmp_path):
    r = _cli("world.roles=0", cache=tmp_path / "cache")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["lora_lab: config error: world.roles: must be > 0 (got 0)"]


def test_results_record_the_config_as_given():
    """`numbers_config`: every field that determines the numbers, with world.seed as given (None:
    follows the run seed), so seeds of one setting share everything but `seed`."""
    from lora_lab.config import numbers_config

    a, b = (numbers_config(validate(compose_cfg([f"seed={s}"]))) for s in (0, 1))
    assert {k for k in a if a[k] != b[k]} == {"seed"} and a["world.seed"] is None
    assert a["compose.lam"] == 1.0 and a["family.name"] == "lora" and a["eval.collapse_mass"] == 0.5
    assert "progress" not in a and "cache_dir" not in a and "threads" not in a and "logger.mode" not in a


def test_idle_cores_and_the_cgroup_quota_are_read_from_the_kernels_files(tmp_path, monkeypatch):
    from lora_lab import threads

    stat = tmp_path / "stat"
    snapshots = iter([
        "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 0 0 900 0 0 0 0 0 0\ncpu1 500 0 0 500 0 0 0 0 0 0\ncpu7 0 0 0 5 0 0 0 0 0 0\n",
        # cpu0: 10 ticks, all idle; cpu1: 10 ticks, 2 idle (+1 iowait) and 7 busy; cpu7 is not ours
        "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 0 0 910 0 0 0 0 0 0\ncpu1 507 0 0 502 1 0 0 0 0 0\ncpu7 0 0 0 99 0 0 0 0 0 0\n",
    ])
    stat.write_text(next(snapshots))
    monkeypatch.setattr(threads, "_cpus", lambda: {0, 1})
    monkeypatch.setattr(threads.time, "sleep", lambda s: stat.write_text(next(snapshots)))
    assert threads.idle_cores(path=str(stat)) == pytest.approx(1.0 + 0.3)
    assert threads.idle_cores(path=str(tmp_path / "absent")) is None
    stat.write_text("cpu  1 2 3 4 5\ncpu9 1 2 3 4 5 6 7 8\ncpu0 garbled\n")
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    assert threads.idle_cores(path=str(stat)) is None  # no line for our CPUs: unknown, not 0 idle
    quota = tmp_path / "cpu.max"
    for text, cores in (("max 100000", None), ("150000 100000", 2), ("50000 100000", 1), ("garbled", None)):
        quota.write_text(text)
        assert threads.cgroup_cores(str(quota)) == cores
    assert threads.cgroup_cores(str(tmp_path / "absent")) is None


def test_threads_fit_the_job(monkeypatch, caplog):
    import logging

    from lora_lab import threads

    assert threads.job_threads(3) == 3
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.setattr(threads, "parallel_jobs", lambda cores: 1)
    monkeypatch.setattr(threads, "idle_cores", lambda: None)  # not Linux: no idle count
    assert threads.job_threads() == 8
    monkeypatch.setattr(threads, "parallel_jobs", lambda cores: 3)
    assert threads.job_threads() == 2  # 8 cores, 3 jobs at once
    monkeypatch.setattr(threads, "idle_cores", lambda: 1.2)
    with caplog.at_level(logging.INFO, logger="lora_lab"):
        assert threads.job_threads() == 1  # other processes keep all but one core busy
    # the count and what set it, in the job's log (numbers from an empty cache depend on it)
    assert "torch threads: 1 (threads=0: 8 usable cores ÷ 3 parallel jobs, 1.2 cores idle at the start" in caplog.text
    monkeypatch.setattr(threads, "idle_cores", lambda: 0.1)
    assert threads.job_threads() == 1 and threads.job_threads(4) == 4  # at least one; a request stands
    monkeypatch.undo()
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for extra, expected in (([], 4), (["hydra.launcher.n_jobs=2"], 2), (["hydra.launcher.n_jobs=-2"], 3),
                                (["hydra/launcher=basic"], 1)):
            cfg = compose("config", overrides=["+sweep=stacking", *extra], return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            try:
                assert threads.parallel_jobs(4) == expected, extra  # joblib's n_jobs: -1 all cores, -2 all but one
            finally:
                HydraConfig.instance().cfg = None
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert threads.usable_cores() == 1 and threads.parallel_jobs(4) == 1  # no Hydra launcher here
    with pytest.raises(ConfigError, match="^threads:"):
        validate(compose_cfg(["threads=-1"]))
