"""Removal after use: the stack applied, the base's own weights trained further on general text,
the stack removed as deployed (merged deltas subtracted from the trained weights, steering hooks
taken off), measured; then the pristine base restored bit-exactly. The general text is disjoint
from the held-out text and the fact probes; bad config values fail in `validate`."""

import numpy as np
import pytest

from conftest import TINY, compose_cfg
from lora_lab import stacking
from lora_lab.adapters.stage import build_adapters
from lora_lab.base import get_base
from lora_lab.cache import ArtifactCache
from lora_lab.catalog import build_task
from lora_lab.config import AfterUseConfig, ConfigError, validate
from lora_lab.schema import AFTER_USE
from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.world import SyntheticWorld

FAST = ["latency.enabled=false", "compose.orderings=1"]


@pytest.mark.parametrize("override, field", [
    ("eval.after_use.steps=-1", "eval.after_use.steps"),
    ("eval.after_use.lr=0", "eval.after_use.lr"),
    ("eval.after_use.batch_size=0", "eval.after_use.batch_size"),
    ("eval.after_use.orderings=0", "eval.after_use.orderings"),
    ("eval.after_use.at=middle", "eval.after_use.at"),
    ("eval.after_use.at=[0,5]", "eval.after_use.at"),  # the tiny schedule composes k = 0..3
])
def test_bad_after_use_config_fails_in_validate_naming_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg([*TINY, override]))
    assert str(e.value).startswith(field + ":") and "\n" not in str(e.value)


def test_measured_k_follow_the_setting():
    schedule = list(range(17))
    assert AfterUseConfig(at="pow2").ks(schedule) == [0, 1, 2, 4, 8, 16]
    assert AfterUseConfig(at="ends").ks(schedule) == AfterUseConfig().ks(schedule) == [0, 16]  # intact: see the curve
    assert AfterUseConfig(at=[3, 0]).ks(schedule) == [0, 3]
    assert AfterUseConfig(at="pow2").ks([0, 3, 6]) == [0, 6]
    assert AfterUseConfig(steps=0).ks(schedule) == []


@pytest.mark.parametrize("kw, seed", [({}, 0), ({}, 1), (dict(roles=6, bias_samples=20, general_train=200,
                                                                general_heldout=50), 3)])
def test_general_text_is_disjoint_from_heldout_text_and_fact_probes(kw, seed):
    w = SyntheticWorld(SyntheticWorldConfig(**kw), seed=seed)
    general = set(w.retain_pool(0))
    held = set(w.heldout_text())
    prompts, answers = w.fact_probes()
    facts = {f"{p} {a}" for p, a in zip(prompts, answers)}
    assert len(general & held) == 0 and len(general & facts) == 0
    assert not any(s.startswith(p + " ") for s in general for p in prompts)  # no fact probe, even as a prefix
    assert len({w.frame(s) for s in general} & {w.frame(s) for s in held}) == 0


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("after_use")
    c = validate(compose_cfg([*TINY, *FAST, f"cache_dir={tmp}"]))
    task = build_task(c.world, c.seed)
    cache = ArtifactCache(tmp)
    base = get_base(c, task, cache, progress=False)
    return tmp, task, base, cache, task.reference(base.model, base.tokenizer)


def _curve(job, *overrides):
    tmp, task, base, cache, ref = job
    c = validate(compose_cfg([*TINY, *FAST, f"cache_dir={tmp}", *overrides]))
    adapters = build_adapters(c, base, task, cache, progress=False)
    before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    grad = {n: p.requires_grad for n, p in base.model.named_parameters()}
    rows = stacking.curve(c, base, task, adapters, [0, 1, 2], "sum", ref, {"ordering": 0})
    for n, p in base.model.named_parameters():  # the pristine base is back, bit for bit
        assert p.dtype == before[n].dtype and bool((p == before[n]).all()) and p.requires_grad == grad[n], n
    return {r["k"]: r for r in rows}


@pytest.mark.parametrize("family", ["lora", "steer"])
def test_removal_after_use_subtracts_the_stack_and_keeps_the_training(job, family):
    # a vanishing learning rate: the training changes nothing, so after use is the composition and
    # the removal brings back the base: merged deltas are subtracted, hooks taken off
    rows = _curve(job, f"family={family}", "eval.after_use.lr=1e-12", "eval.after_use.steps=2",
                  "eval.after_use.at=[0,3]")
    assert all(np.isnan(rows[k][c]) for c in AFTER_USE for k in (1, 2))  # not measured there
    for k in (0, 3):
        r = rows[k]
        assert r["after_use_gap"] == pytest.approx(r["bias_target_gap"], abs=1e-5)
        assert r["removed_after_use_gap"] == pytest.approx(r["bias_base_gap"], abs=1e-5)
        assert r["removed_after_use_nll_delta"] == pytest.approx(0.0, abs=1e-5)
    assert abs(rows[3]["bias_target_gap"] - rows[3]["bias_base_gap"]) > 1e-3  # the stack did move the gap
    # the default training moves the model; at k = 0 there is nothing to remove. "intact" (the
    # default) measures k = 0 and the largest k before the first collapsed row: with the threshold at
    # k = 1's axis mass, every later row with less mass collapses
    mass = {k: rows[k]["axis_mass"] for k in rows}
    first = min([k for k in (2, 3) if mass[k] < mass[1]], default=4)
    rows = _curve(job, f"family={family}", "eval.after_use.at=intact", f"eval.collapse_mass={mass[1]!r}")
    top = first - 1
    assert [k for k in rows if not np.isnan(rows[k]["after_use_gap"])] == [0, top]
    r0, rt = rows[0], rows[top]
    assert r0["removed_after_use_gap"] == r0["after_use_gap"] != r0["bias_base_gap"]
    assert r0["removed_after_use_nll_delta"] != 0.0 and np.isfinite(rt["removed_after_use_nll_delta"])
    assert rt["removed_after_use_gap"] != rt["after_use_gap"] and not rt["collapsed"]
