"""Strength by training: a family's own step count and learning rate (`family.steps`, the `tuned`
block), their cache keys, and the reduction–quality frontier of adapters alone."""

import pytest

from conftest import TINY, compose_cfg
from lora_lab import training
from lora_lab.adapters.stage import adapter_key_payload, build_adapters, frontier, measure_single
from lora_lab.base import get_base
from lora_lab.cache import ArtifactCache, content_key
from lora_lab.catalog import build_task
from lora_lab.config import ConfigError, numbers_config, validate

# Adapter keys of the TINY config computed before `family.steps` existed (peft's version pinned below).
KEYS_BEFORE = {"lora": "e9dc4e45edc27eb8cb62", "steer": "041fed358d2c59bd9903",
               "null_lora": "fd09a992a0919b6a3916", "null_steer": "12eb5b72443d92a39e0b"}


def _cfg(*overrides):
    return validate(compose_cfg([*TINY, *overrides]))


def _key(cfg, monkeypatch):
    import peft

    monkeypatch.setattr(peft, "__version__", "0.0-test")
    t = build_task(cfg.world, cfg.seed).bias_targets("rebalance", 1)[0]
    return content_key("adapter", adapter_key_payload(cfg, "base-key", t, "data-key"))


@pytest.mark.parametrize("family", sorted(KEYS_BEFORE))
def test_unset_family_steps_keeps_adapter_keys_and_config_hash(family, monkeypatch):
    cfg = _cfg(f"family={family}")
    assert cfg.family.steps is None and "family.steps" not in numbers_config(cfg)
    assert _key(cfg, monkeypatch) == KEYS_BEFORE[family]
    # the shared budget spelled as the family's own trains the same adapter: the same key
    assert _key(_cfg(f"family={family}", f"family.steps={cfg.adapters.steps}"), monkeypatch) == KEYS_BEFORE[family]
    assert _key(_cfg(f"family={family}", "family.steps=7"), monkeypatch) != KEYS_BEFORE[family]


def test_tuned_block_sets_each_family_and_its_control():
    tuned = "+tuned={lora:{lr:0.001,steps:7},steer:{lr:0.2,steps:9}}"
    for fam, lr, steps in (("lora", 0.001, 7), ("null_lora", 0.001, 7), ("steer", 0.2, 9), ("null_steer", 0.2, 9)):
        c = _cfg(f"family={fam}", tuned)
        assert (c.family.lr, c.family.steps, c.adapters.steps_for(c.family)) == (lr, steps, steps)
    assert _cfg("family=steer").adapters.steps_for(_cfg("family=steer").family) == _cfg().adapters.steps
    with pytest.raises(ConfigError, match="^tuned: keys are trained real families"):
        _cfg("+tuned={prompt:{lr:0.1}}")
    with pytest.raises(ConfigError, match=r"^tuned.lora: sets only \['lr', 'steps'\]"):
        _cfg("+tuned={lora:{rank:2}}")
    with pytest.raises(ConfigError, match="^family.steps: must be > 0 or null"):
        _cfg("family.steps=0")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    cfg = _cfg()
    task, cache = build_task(cfg.world), ArtifactCache(tmp_path_factory.mktemp("cache"))
    return task, cache, get_base(cfg, task, cache, progress=False)


@pytest.mark.parametrize("family", ["lora", "steer"])
def test_family_steps_sets_the_training_steps(family, tiny_base, monkeypatch):
    task, cache, base = tiny_base
    seen = []

    def spy(*args, steps, **kwargs):
        seen.append(steps)
        return train(*args, steps=steps, **kwargs)

    train = training.train
    monkeypatch.setattr(training, "train", spy)
    for steps, expect in (("null", 3), ("2", 2)):
        ads = build_adapters(_cfg(f"family={family}", "adapters.n=1", "adapters.steps=3", f"family.steps={steps}"),
                             base, task, cache, progress=False)
        assert not ads[0].meta["cache_hit"] and seen[-1] == expect


def test_frontier_at_scale_one_is_the_adapter_alone(tiny_base):
    task, cache, base = tiny_base
    cfg = _cfg("family=lora", "adapters.n=1", "adapters.calibrate=true", "eval.frontier_scales=[1,3]")
    ads = build_adapters(cfg, base, task, cache, progress=False)
    ref = task.reference(base.model, base.tokenizer)
    rows = measure_single(ads, cfg, base, task, ref)
    points = frontier(ads, rows, cfg, base, task, ref)
    assert {p["adapter"] for p in points} == {ads[0].id}
    for row in rows:
        mine = {(p["scale"], p["calibrated"]): p for p in points if p["adapter"] == row["adapter"]}
        one = mine[(1.0, False)]
        assert one["gap"] == pytest.approx(row["gap"]) and one["reduction"] == pytest.approx(row["reduction"])
        assert one["base_gap"] == row["base_gap"] and "quality_nll_delta" in one and "removal_gap" not in one
        if row["cal_reachable"]:
            assert mine[(row["cal_scale"], True)]["reduction"] == pytest.approx(row["cal_reduction"])
        assert len(mine) == 2 + bool(row["cal_reachable"])
    assert frontier(ads, rows, _cfg("family=lora", "eval.frontier_adapters=0"), base, task, ref) == []
