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


def _job(d, family, seed, lr, steps, reduction, loss):
    """A job directory as a tune sweep writes it: adapters_report.json and frontier.parquet."""
    import json

    from lora_lab import catalog
    from lora_lab.results import frontier_frame
    from lora_lab.schema import TableSchema, write_table

    metrics = catalog.world("synthetic").metrics
    d.mkdir(parents=True)
    (d / "adapters_report.json").write_text(json.dumps({"summary": {"family": family, "reduction_mean": reduction}}))
    config = json.dumps({"family.lr": lr, "adapters.steps": 120, **({"family.steps": steps} if steps != 120 else {})})
    ident = {"run_id": d.name, "world": "synthetic", "model": "tiny", "family": family, "space": "weight", "seed": seed,
             "config_hash": d.name, "config": config}
    points = [{"adapter": f"a{i}", "scale": s, "calibrated": c, "base_gap": 0.5, "gap": 0.1,
               "reduction": reduction, "quality_nll_delta": loss + (0.0 if s == 1 else 9.0)}
              for i in range(2) for s, c in ((1.0, False), (2.0, False), (1.0, True))]
    write_table(frontier_frame(points, ident, metrics), d / "frontier.parquet", TableSchema({"synthetic": list(metrics)}, [], {}))


def test_tune_picks_the_least_damaging_budget_that_reaches_the_target(tmp_path, capsys):
    from analysis import tune

    # (lr, steps): reduction, quality loss. (1e-3, 60) falls short; (3e-3, 60) and (1e-2, 60) reach the
    # target at the same least loss: the smaller budget wins; (3e-3, 120) reaches it at a larger loss.
    grid = {(1e-3, 60): (0.70, 0.001), (3e-3, 60): (0.85, 0.02), (1e-2, 60): (0.95, 0.02), (3e-3, 120): (0.9, 0.05)}
    n = 0
    for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
        for (lr, steps), (red, loss) in grid.items():
            _job(tmp_path / "sweep" / str(n), "lora", seed, lr, steps, red + jitter, loss + jitter / 10)
            # steering reaches the target nowhere
            _job(tmp_path / "short" / str(n), "steer", seed, lr * 10, steps, red - 0.3, loss)
            n += 1
    assert tune.main([str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    assert '"lora": {"lr": 0.003, "steps": 60}' in out
    cfg = validate(compose_cfg([*TINY, "family=lora", *(f"+{k}" if k.startswith("tuned") else k for k in _overrides(
        tmp_path / "sweep" / "tuned.yaml"))]))
    assert (cfg.family.lr, cfg.family.steps, cfg.adapters.calibrate) == (0.003, 60, False)
    table = tune.summarise(tune.jobs(tmp_path / "sweep"))
    row = table[(table.lr == 3e-3) & (table.steps == 60)].iloc[0]
    assert row.n == 3 and row.reduction == pytest.approx(0.85) and row.reduction_lo < 0.85 < row.reduction_hi
    assert row.quality_loss == pytest.approx(0.02)  # scale-1 uncalibrated points only
    # a family that reaches the target nowhere: one line, exit 1, no tuned.yaml
    assert tune.main([str(tmp_path / "short")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["analysis.tune: no (lr, steps) reaches a mean gap reduction of 0.8 for steer"]
    assert not (tmp_path / "short" / "tuned.yaml").exists()
    assert tune.main([str(tmp_path / "short"), "--target", "0.5"]) == 0
    assert tune.main([str(tmp_path / "nothing")]) == 1


def _overrides(path):
    """The tuned.yaml's values as command-line overrides."""
    import yaml

    y = yaml.safe_load(path.read_text())
    return [f"adapters.calibrate={str(y['adapters']['calibrate']).lower()}",
            "tuned={" + ",".join(f"{f}:{{lr:{v['lr']},steps:{v['steps']}}}" for f, v in y["tuned"].items()) + "}"]


def test_frontier_figure_draws_one_panel_per_setting(tmp_path):
    import pandas as pd

    from analysis.figures import frontier_figure
    from analysis.report import load_frontier
    from lora_lab import catalog
    from lora_lab.schema import TableSchema

    for n, seed in enumerate((0, 1, 0, 1)):
        _job(tmp_path / str(n), "lora", seed, 3e-3, 120, 0.8 + n / 100, 0.01 * n)
    front = load_frontier(tmp_path)
    data = pd.DataFrame({"config_hash": [str(n) for n in range(4)], "world": "synthetic", "arm": "lora",
                         "setting": ["adapters.calibrate=true"] * 2 + ["adapters.calibrate=false"] * 2})
    schema = TableSchema({"synthetic": list(catalog.world("synthetic").metrics)}, [], {"lora": {"label": "LoRA", "color": "#0072B2", "space": "weight"}})
    paths = frontier_figure(front, data, schema, tmp_path / "report")
    assert [p.name for p in paths] == ["fig_frontier.pdf", "fig_frontier.png"] and paths[0].stat().st_size > 0
    assert load_frontier(tmp_path / "empty") is None
