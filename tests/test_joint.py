"""The joint reference: one adapter of a real family trained on the union of k targets' data, with
the same budget per target, beside the stack of k single adapters (families/joint.py,
adapters/joint.py, the "stack vs joint" claim)."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, compose_cfg
from lora_lab import catalog
from lora_lab.adapters.joint import build_joint, joint_payload, joint_target
from lora_lab.adapters.stage import adapter_key_payload, build_adapters
from lora_lab.base import get_base
from lora_lab.cache import ArtifactCache
from lora_lab.catalog import build_task
from lora_lab.checks import ConfigError
from lora_lab.config import validate
from lora_lab.families.joint import joint_ks
from lora_lab.results import family_declaration
from lora_lab.run import run
from lora_lab.training import Encoded, Interleaved, LMObjective, union

from analysis import figures, stats
from analysis.simulate import SCHEMA, simulate
from test_analysis import claim, with_config


QUICK = [*TINY, "adapters.n=4", "adapters.steps=4", "compose.schedule=pow2", "latency.enabled=false"]


def _cfg(*overrides):
    return validate(compose_cfg([*QUICK, *overrides]))


def test_joint_families_declare_their_real_family_and_its_fields():
    for joint, real in (("joint_lora", "lora"), ("joint_steer", "steer")):
        j, r = catalog.family(joint), catalog.family(real)
        assert catalog.joint_of(j) == real and catalog.joint_of(r) is None and catalog.control_of(j) is None
        assert (j.space, j.format, j.factored) == (r.space, r.format, r.factored) and j.color != r.color
        assert [m.column for m in j.modes] == [m.column for m in r.modes] and all(m.family == joint for m in j.modes)
        assert family_declaration(j)["joint_of"] == real and issubclass(j.schema, r.schema)
    with pytest.raises(ConfigError, match="family.orderings"):
        _cfg("family=joint_lora", "family.orderings=0")
    with pytest.raises(ConfigError, match="family.ks"):
        _cfg("family=joint_steer", "family.ks=[-1]")


def test_joint_ks_are_powers_of_four_and_the_largest_k_within_the_schedule():
    fcfg = _cfg("family=joint_lora").family
    assert joint_ks(fcfg, [0, 1, 2, 4, 8, 16]) == [0, 1, 4, 16]
    assert joint_ks(fcfg, [0, 1, 2, 4, 8, 16, 32]) == [0, 1, 4, 16, 32]
    assert joint_ks(fcfg, [0, 2, 3]) == [0, 3]
    assert joint_ks(dataclasses.replace(fcfg, ks=[2, 5, 8]), [0, 1, 2, 4, 8]) == [0, 2, 8]


def test_union_objective_is_the_concatenated_corpora_and_k_times_the_steps():
    a = Encoded(torch.tensor([[1, 2, 3]]), torch.tensor([[False, True, True]]), torch.tensor([3]))
    b = Encoded(torch.tensor([[4, 5], [6, 0]]), torch.tensor([[False, True], [False, True]]), torch.tensor([2, 1]))
    u = union([LMObjective(a, 0), LMObjective(b, 0)])
    assert isinstance(u, LMObjective) and u.data.ids.tolist() == [[1, 2, 3], [4, 5, 0], [6, 0, 0]]
    assert u.data.scored.tolist() == [[False, True, True], [False, True, False], [False, True, False]]
    assert u.data.lengths.tolist() == [3, 2, 1]
    one = LMObjective(a, 0)
    assert union([one]) is one

    class Counting:  # a world's own objective: batches tagged by who drew them
        def __init__(self, name):
            self.name = name

        def batches(self, batch_size, steps, seed):
            return ((self.name, seed, i) for i in range(steps))

        def loss(self, model, batch):
            return batch

    mixed = union([Counting("x"), Counting("y")])
    assert isinstance(mixed, Interleaved)
    drawn = [mixed.loss(None, b) for b in mixed.batches(8, 6, 10)]  # k x s = 2 x 3 steps: 3 batches each
    assert drawn == [("x", 10, 0), ("y", 11, 0), ("x", 10, 1), ("y", 11, 1), ("x", 10, 2), ("y", 11, 2)]


def test_joint_payload_of_one_target_is_the_single_adapters_and_k_targets_train_k_times_the_steps():
    cfg, single = _cfg("family=joint_lora"), _cfg("family=lora")
    task = build_task(cfg.world)
    targets = task.bias_targets(cfg.adapters.kind.value, cfg.adapters.n)
    assert joint_payload(cfg, "b", joint_target(targets[:1]), "d") == adapter_key_payload(single, "b", targets[0], "d")
    two = joint_payload(cfg, "b", joint_target(targets[1::-1]), "d")
    assert two["train"]["steps"] == 2 * cfg.adapters.steps and two["train"]["batch_size"] == cfg.adapters.batch_size
    assert two["targets"] == [dataclasses.asdict(t) for t in sorted(targets[:2], key=lambda t: t.id)]  # the set, sorted


@pytest.fixture(scope="module")
def base_and_cache(tmp_path_factory):
    cfg, cache = _cfg(), ArtifactCache(tmp_path_factory.mktemp("cache"))
    task = build_task(cfg.world)
    return task, get_base(cfg, task, cache, progress=False), cache


@pytest.mark.parametrize("joint,real", [("joint_lora", "lora"), ("joint_steer", "steer")])
def test_the_joint_adapter_of_one_target_is_the_single_adapter(base_and_cache, joint, real):
    task, base, cache = base_and_cache
    cfg = _cfg(f"family={joint}", "family.ks=[1]")
    singles = build_adapters(_cfg(f"family={real}"), base, task, cache, progress=False)
    joints = build_joint(cfg, base, task, cache, [a.target for a in singles], [[2, 0, 1, 3]], progress=False)
    (ad,) = joints.values()
    assert ad.id == singles[2].id and ad.path == singles[2].path and ad.meta["cache_hit"]  # one cache entry
    assert all(torch.equal(ad.tensors[m], singles[2].tensors[m]) for m in ad.tensors)


def test_a_joint_run_has_rows_at_the_joint_ks_only(tmp_path, base_and_cache, monkeypatch):
    monkeypatch.setenv("LORA_LAB_CACHE", str(base_and_cache[2].root))  # the base is a cache hit
    cfg = compose_cfg([*QUICK, "adapters.n=3", "compose.schedule=[0,1,3]", "family=joint_steer", "family.ks=[3]",
                       "compose.merge=[sum,mean]"])
    out = run(cfg, tmp_path)
    df = out["results"]
    assert sorted(df.k) == [0, 0, 3, 3] and set(df.ordering) == {0} and sorted(df["merge"]) == ["mean", "mean", "sum", "sum"]
    assert (df.family == "joint_steer").all()
    (row,) = out["adapters"]["rows"]
    assert (row["k"], row["steps"]) == (3, 12)  # k x adapters.steps
    assert sorted(df[df.k == 3].iloc[0].adapters) == row["targets"]
    report = json.loads((tmp_path / "adapters_report.json").read_text())
    assert [r["k"] for r in report["adapters"]] == [3]


# ----------------------------------------------------------------------------- the claim, on planted tables

JOINT_SCHEMA = dataclasses.replace(SCHEMA, families={**SCHEMA.families, "joint_lora": {
    "label": "LoRA joint", "color": "#56B4E9", "space": "weight", "joint_of": "lora"}})


def joint_table(effect, seeds=8, seed=0):
    """lora, steer and prompt (simulated), plus joint_lora on ordering 0 at k = 0, 1, 2, 4: each of
    its points is lora's at that seed and k (mean over orderings) minus `effect` (k >= 2) plus noise."""
    df = with_config(simulate(1, seeds=seeds, effect=1.0, rng_seed=seed))
    rng = np.random.default_rng(seed)
    lora = df[(df.family == "lora") & df.k.isin([0, 1, 2, 4])]
    j = lora[lora.ordering == 0].copy()
    mean = lora.groupby(["seed", "k"]).quality_nll_delta.mean()
    j["quality_nll_delta"] = [mean[(s, k)] - (effect if k >= 2 else 0.0) + rng.normal(0, 0.05)
                              for s, k in zip(j.seed, j.k)]
    j["family"] = "joint_lora"
    j = with_config(j.assign(config=j.config.map(lambda c: json.dumps({**json.loads(c), "family.name": "joint_lora",
                                                                           "family.orderings": 1}))))
    return pd.concat([df, j], ignore_index=True)


def test_stack_vs_joint_follows_a_planted_effect_and_a_null():
    cid = "stack vs joint (lora vs joint_lora, sum)"
    a = stats.analyse(joint_table(effect=0.3), JOINT_SCHEMA)
    c = claim(a.claims, cid)
    assert c.verdict == "supported" and c.n == 8 and c.value == pytest.approx(0.3, abs=0.05)
    assert c.hypothesis == "stack vs joint" and "k = 2, 4" in c.statistic and "bias gap" in c.note
    null = claim(stats.analyse(joint_table(effect=0.0, seed=1), JOINT_SCHEMA).claims, cid)
    assert null.verdict != "supported"
    worse = claim(stats.analyse(joint_table(effect=-0.3, seed=2), JOINT_SCHEMA).claims, cid)
    assert worse.verdict == "not supported"


def test_joint_arms_enter_h1_and_stack_vs_joint_only_and_draw_as_their_own_curve(tmp_path):
    df = joint_table(effect=0.3)
    plain = stats.analyse(df[df.family != "joint_lora"], JOINT_SCHEMA)
    a = stats.analyse(df, JOINT_SCHEMA)
    assert {c.id for c in a.claims} - {c.id for c in plain.claims} == {"H1 (joint_lora, sum)",
                                                                       "stack vs joint (lora vs joint_lora, sum)"}
    st = figures.arm_style(JOINT_SCHEMA, df.family.unique())
    assert st["joint_lora"]["marker"] == "s" and st["joint_lora"]["color"] == "#56B4E9" and st["lora"]["marker"] == "o"
    assert figures.family_order(JOINT_SCHEMA).index("joint_lora") == figures.family_order(JOINT_SCHEMA).index("lora") + 1
    drawn = figures.metric_figure(a.data, JOINT_SCHEMA, "quality_nll_delta", tmp_path)  # 4 joint points beside 5
    assert all(p.stat().st_size > 0 for p in drawn)
    # per-target gaps: a joint job has no adapter alone (alone_gap NaN), so no interference to draw for it
    rows = a.data[a.data.family.isin(["lora", "joint_lora"]) & (a.data.k >= 1)]
    gaps = rows[["config_hash", "merge", "ordering", "k", "seed", "family"]].assign(
        adapter="t0", gap=0.2, alone_gap=np.where(rows.family == "lora", 0.1, np.nan))
    assert all(p.stat().st_size > 0 for p in figures.interference_figure(gaps, a.data, JOINT_SCHEMA, tmp_path))
    alone = stats.analyse(df[df.family == "joint_lora"], JOINT_SCHEMA)
    lone = claim(alone.claims, "stack vs joint (joint_lora, sum)")
    assert lone.verdict == "not testable" and "no lora rows" in lone.note
