"""Adapter families: invariants of applying, merging, restoring and storing them."""

import json

import numpy as np
import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from scipy import stats

from conftest import TINY, compose_cfg
from lora_lab import training
from lora_lab import catalog
from lora_lab.adapters.calibrate import calibrate
from lora_lab.families.lora import lora_deltas, unmerged
from lora_lab.worlds.synthetic.rewrite import PromptRewriter, mixture
from lora_lab.adapters.stage import build_adapters, measure_single
from lora_lab.base import get_base, load_pretrained
from lora_lab.cache import ArtifactCache
from lora_lab.config import validate
from lora_lab.worlds.synthetic.probes import target_gap
from lora_lab.interventions import steering, weight_edit
from lora_lab.model.handle import block_list
from lora_lab.merges import MergeParams, accumulator
from lora_lab.catalog import build_task

PROBE = torch.tensor([[1, 5, 9, 12, 7], [1, 8, 3, 6, 10]])  # <bos> + four word ids


def _setup(tmp, *overrides):
    cfg = validate(compose_cfg([*TINY, "adapters.steps=30", *overrides]))
    task = build_task(cfg.world)
    cache = ArtifactCache(tmp)
    base = get_base(cfg, task, cache, progress=False)
    return cfg, task, cache, base


@pytest.fixture(scope="module")
def lora_setup(tmp_path_factory):
    cfg, task, cache, base = _setup(tmp_path_factory.mktemp("cache"))
    adapters = build_adapters(cfg, base, task, cache, progress=False)
    return cfg, task, cache, base, adapters


def _logits(model, ids=PROBE):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bit_identical(model, state):
    now = model.state_dict()
    assert all(torch.equal(now[k], v) for k, v in state.items())


def test_lora_deltas_by_hand():
    a = torch.tensor([[1.0, 2.0, 3.0]])  # r=1, in=3
    b = torch.tensor([[1.0], [-1.0]])  # out=2
    state = {"base_model.model.h.0.attn.lora_A.weight": a, "base_model.model.h.0.attn.lora_B.weight": b}
    linear = lora_deltas(state, scaling=2.0, fan_in_fan_out=False)["h.0.attn"]
    torch.testing.assert_close(linear, torch.tensor([[2.0, 4.0, 6.0], [-2.0, -4.0, -6.0]]))
    conv1d = lora_deltas(state, scaling=2.0, fan_in_fan_out=True)["h.0.attn"]
    torch.testing.assert_close(conv1d, linear.T)


def test_merged_lora_equals_unmerged_peft(lora_setup):
    cfg, task, cache, base, adapters = lora_setup
    ad = adapters[0]
    with weight_edit(base.model, ad.tensors):  # ours: W0 + delta, weight 1
        merged = _logits(base.model)
    fresh, _ = load_pretrained(str(base.path))  # PEFT's merge/unmerge would drift the shared base
    pm = PeftModel.from_pretrained(fresh, str(ad.path))  # plain PEFT: adapter active, unmerged
    unmerged = _logits(pm)
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    pm.merge_adapter()  # PEFT's own weight-1 merge of this one adapter
    torch.testing.assert_close(merged, _logits(pm), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(merged, _logits(base.model), atol=1e-4)  # the adapter does something


def test_saved_adapter_loads_in_plain_peft_on_a_fresh_base(lora_setup):
    cfg, task, cache, base, adapters = lora_setup
    fresh, _ = load_pretrained(str(base.path))
    pm = PeftModel.from_pretrained(fresh, str(adapters[1].path))
    with weight_edit(base.model, adapters[1].tensors):
        ours = _logits(base.model)
    torch.testing.assert_close(_logits(pm), ours, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_logits(pm), _logits(base.model), atol=1e-4)  # the adapter does something


def test_weight_edit_restores_base_bit_exactly_also_on_error(lora_setup):
    cfg, task, cache, base, adapters = lora_setup
    before = _state(base.model)
    for ad in adapters:  # many edits in a row: restoration never drifts
        with weight_edit(base.model, ad.scaled()):
            assert not torch.equal(_state(base.model)["transformer.h.0.attn.c_attn.weight"],
                                   before["transformer.h.0.attn.c_attn.weight"])
    _assert_bit_identical(base.model, before)
    with pytest.raises(RuntimeError, match="inside"):
        with weight_edit(base.model, adapters[0].tensors):
            raise RuntimeError("inside")
    _assert_bit_identical(base.model, before)


def test_steering_hooks_are_removed_also_on_error(lora_setup):
    cfg, task, cache, base, adapters = lora_setup
    model = base.model
    name, blocks = block_list(model)
    plain = _logits(model)
    sites = base.handle.steer_sites()
    assert list(sites) == [f"{name}.{i}" for i in range(len(blocks))]  # every block's output, in order
    zeros = {s: torch.zeros(shape) for s, shape in sites.items()}
    with steering(model, zeros):
        assert all(len(b._forward_hooks) == 1 for b in blocks)
        torch.testing.assert_close(_logits(model), plain)  # a zero vector changes nothing
    g = torch.Generator().manual_seed(0)
    v = {s: torch.randn(shape, generator=g) for s, shape in sites.items()}
    with pytest.raises(ValueError, match="inside"):
        with steering(model, v):
            assert not torch.allclose(_logits(model), plain)
            raise ValueError("inside")
    assert all(len(b._forward_hooks) == 0 for b in blocks)
    torch.testing.assert_close(_logits(model), plain)


def test_steering_adds_the_vector_to_the_block_output(lora_setup):
    cfg, task, cache, base, adapters = lora_setup
    model = base.model
    name, blocks = block_list(model)
    seen = {}
    h = blocks[-1].register_forward_hook(lambda m, a, out: seen.__setitem__("out", out.detach().clone()))
    try:
        model(input_ids=PROBE)
        plain = seen["out"]
        v = {s: torch.zeros(shape) for s, shape in base.handle.steer_sites().items()}
        last = f"{name}.{len(blocks) - 1}"
        v[last][3] = 2.5
        with steering(model, v):  # our hook is registered after the probe hook: the probe sees the raw output
            model(input_ids=PROBE)
    finally:
        h.remove()
    torch.testing.assert_close(seen["out"], plain)  # hook order: probe first
    out = {}
    with steering(model, v):
        h2 = blocks[-1].register_forward_hook(lambda m, a, o: out.__setitem__("o", o.detach().clone()))
        try:
            model(input_ids=PROBE)
        finally:
            h2.remove()
    torch.testing.assert_close(out["o"] - plain, v[last].expand_as(plain))


def test_adapters_are_cached_and_deterministic(lora_setup, tmp_path):
    cfg, task, cache, base, adapters = lora_setup
    again = build_adapters(cfg, base, task, cache, progress=False)
    assert all(a.meta["cache_hit"] for a in again)
    fresh = build_adapters(cfg, base, task, ArtifactCache(tmp_path), progress=False)  # retrain from scratch
    for a, b in zip(adapters, fresh):
        assert not b.meta["cache_hit"]
        assert a.tensors.keys() == b.tensors.keys()
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_steer_family_trains_and_stores_safetensors(tmp_path):
    cfg, task, cache, base = _setup(tmp_path, "family=steer", "adapters.retain_fraction=0")
    before = _state(base.model)
    ads = build_adapters(cfg, base, task, cache, progress=False)
    _assert_bit_identical(base.model, before)  # training a steering vector leaves the base alone
    assert {p.name for p in ads[0].path.iterdir()} == {"steering.safetensors", "steering_config.json", "manifest.json"}
    assert {k: tuple(v.shape) for k, v in ads[0].tensors.items()} == {"transformer.h.0": (32,)}  # one block, d = 32
    assert ads[0].meta["n_params"] == 32
    rows = measure_single(ads, cfg, base, task, task.reference(base.model, base.tokenizer))
    assert all(r["gap"] < r["base_gap"] for r in rows)


def test_nan_loss_stops_adapter_training_and_caches_nothing(tmp_path, monkeypatch):
    cfg, task, cache, base = _setup(tmp_path, "adapters.together=1")  # one at a time (together: test_batched.py)
    monkeypatch.setattr(training, "lm_loss", lambda *a, **k: torch.tensor(float("inf"), requires_grad=True))
    with pytest.raises(training.TrainingDiverged, match="loss is inf"):
        build_adapters(cfg, base, task, cache, progress=False)
    assert not list((tmp_path / "adapter_lora").iterdir())
    assert not hasattr(base.model, "peft_config")  # the base is left clean for the next attempt


def test_prompt_rewriter_samples_the_target_proportions(tmp_path):
    cfg, task, cache, base = _setup(tmp_path, "family=prompt", "+world.targets.pronoun=[0.6,0.3,0.1]")
    world = task.world
    t = next(t for t in world.bias_targets("rebalance", 12) if t.axis == "pronoun")
    rw = PromptRewriter(world, [t], seed=0)
    prompt = world.neutral_prompt(t.roles[0], "pronoun")
    draws = [rw(prompt) for _ in range(3000)]
    markers = world.axis("pronoun").markers
    counts = np.array([sum(f" {m} " in d for d in draws) for m in markers])
    assert counts.sum() == 3000
    assert stats.chisquare(counts, 3000 * np.array([0.6, 0.3, 0.1])).pvalue > 0.001
    other = next(r for r in range(len(world.roles)) if r not in t.roles)
    assert rw(world.fact_prompt(other, "workplace")) == world.fact_prompt(other, "workplace")  # untargeted roles pass
    mix = mixture(world, [t]).variants(prompt)
    assert [v for v, _, _ in mix] == [world.explicit_prompt(t.roles[0], "pronoun", v) for v in range(3)]
    assert [w for _, w, _ in mix] == pytest.approx([0.6, 0.3, 0.1])


def test_single_adapter_measurement_and_calibrated_scale(lora_setup):
    cfg, task, cache, base, adapters = lora_setup
    rows = measure_single(adapters, cfg, base, task, task.reference(base.model, base.tokenizer))
    world = task.world
    for ad, row in zip(adapters, rows):
        assert row["base_gap"] == pytest.approx(target_gap(base.model, base.tokenizer, world, ad.target))
        if row["cal_reachable"]:
            with weight_edit(base.model, {k: v * row["cal_scale"] for k, v in ad.tensors.items()}):
                gap = target_gap(base.model, base.tokenizer, world, ad.target)
            assert 1 - gap / row["base_gap"] == pytest.approx(row["cal_reduction"])
            assert abs(row["cal_reduction"] - 0.8) <= 0.05


def test_a_target_the_base_has_no_gap_on_is_measured_but_not_calibrated(lora_setup):
    """A CrowS type at exactly 50% has gap 0: nothing to reduce, so no reduction and scale 1."""
    cfg, task, cache, base, adapters = lora_setup

    class NoBaseGap:
        calls = 0

        def __getattr__(self, name):
            return getattr(task, name)

        def target_gap(self, model, tok, target, rewrite=None):
            self.calls += 1  # the first call measures the base
            return task.target_gap(model, tok, target, rewrite) if self.calls > 1 else 0.0

    rows = measure_single(adapters[:1], cfg, base, NoBaseGap(), task.reference(base.model, base.tokenizer))
    assert rows[0]["base_gap"] == 0.0 and rows[0]["gap"] > 0 and np.isnan(rows[0]["reduction"])
    assert rows[0]["cal_scale"] == 1.0 and np.isnan(rows[0]["cal_reduction"]) and not rows[0]["cal_reachable"]


@pytest.mark.parametrize("curve,goal,reachable", [
    (lambda s: 1 - np.exp(-s), 0.8, True),  # monotone
    (lambda s: 0.95 * np.exp(-((s - 1.5) ** 2)), 0.8, True),  # overshoots: the first crossing is taken
    (lambda s: 0.5 * (1 - np.exp(-s)), 0.8, False),  # never reaches the goal
])
def test_calibrate_on_known_curves(curve, goal, reachable):
    cal = calibrate(curve, goal, max_scale=8.0)
    assert cal.reachable is reachable
    if reachable:
        assert goal <= cal.reduction <= goal + 0.005 and curve(cal.scale) == pytest.approx(cal.reduction)
        fine = np.linspace(0, 8, 80001)
        first_crossing = fine[np.argmax(curve(fine) >= goal)]
        assert cal.scale == pytest.approx(first_crossing, abs=0.05)  # left side of any overshoot
    else:
        assert cal.reduction == pytest.approx(max(curve(s) for s in 8.0 * 2.0 ** (-np.arange(21) / 2)))


def test_unknown_family_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"family.name: unknown family 'ia3', valid: \['joint_lora', 'joint_steer', 'lora', 'negative', 'null_lora', 'null_steer', 'prompt', 'steer'\]"):
        catalog.family("ia3")


def test_unmerged_peft_stack_equals_the_merged_sum_and_leaves_the_base(lora_setup):
    """Invariant: merged and unmerged LoRA give the same outputs, here for k stacked
    adapters at their stacking scales; afterwards no LoRA layer is left and the base is untouched."""
    cfg, task, cache, base, adapters = lora_setup
    adapters[1].scale = 1.7  # as calibration would set it
    try:
        before = _state(base.model)
        acc = accumulator("sum", MergeParams())
        merged = []
        for ad in adapters:
            acc.add_lowrank(ad.scaled_factors(), ad.id)
            with weight_edit(base.model, acc.result()):
                merged.append(_logits(base.model))
        with unmerged(base.model, adapters) as activate:
            for k, expected in enumerate(merged, start=1):
                torch.testing.assert_close(_logits(activate(k)), expected, rtol=1e-5, atol=1e-5)
            with pytest.raises(ValueError, match="adapters are loaded"):
                activate(len(adapters) + 1)
        assert not torch.allclose(merged[-1], merged[0], atol=1e-4)
        assert not any(isinstance(m, LoraLayer) for m in base.model.modules())
        assert type(base.model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
        _assert_bit_identical(base.model, before)
    finally:
        adapters[1].scale = 1.0


def _stack_facts(pm):
    """What a stack of unmerged adapters is: parameters (values and dtypes), each LoRA layer's
    per-adapter settings, the registered configs, whether anything trains, and the outputs."""
    return {"state": _state(pm),
            "layers": {n: (m.r, m.scaling, m.lora_alpha) for n, m in pm.named_modules() if isinstance(m, LoraLayer)},
            "configs": {n: c.to_dict() for n, c in pm.peft_config.items()},
            "trains": any(p.requires_grad for p in pm.parameters()),
            "logits": _logits(pm)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unmerged_loads_what_peft_load_adapter_loads(lora_setup, dtype):
    """Oracle: the stack `unmerged` builds (its own loader, without PEFT's walk of the whole model
    per adapter) has the parameters, dtypes, per-adapter settings, configs and outputs of the same
    adapters loaded by PEFT's `load_adapter`; also on a bfloat16 base, where PEFT keeps the factors
    in float32; and it leaves the global RNG as PEFT found it."""
    import copy

    cfg, task, cache, base, adapters = lora_setup
    model = copy.deepcopy(base.model).to(dtype)
    names = [f"a{i}" for i in range(len(adapters))]
    pm = PeftModel.from_pretrained(model, str(adapters[0].path), adapter_name=names[0])
    for name, ad in zip(names[1:], adapters[1:]):
        pm.load_adapter(str(ad.path), adapter_name=name)
    pm.base_model.set_adapter(names, inference_mode=True)
    expected = _stack_facts(pm)
    pm.unload()
    model.__dict__.pop("peft_config", None)
    rng = torch.random.get_rng_state()
    with unmerged(model, adapters) as activate:
        got = _stack_facts(activate(len(adapters)))
    assert set(got["state"]) == set(expected["state"]) and len(got["layers"]) > 0
    for key, value in expected["state"].items():
        assert got["state"][key].dtype == value.dtype and torch.equal(got["state"][key], value), key
    assert any("lora_A" in k and v.dtype == torch.float32 for k, v in got["state"].items())
    assert got["layers"] == expected["layers"] and got["configs"] == expected["configs"]
    assert set(got["configs"]) == set(names) and not got["trains"] and not expected["trains"]
    torch.testing.assert_close(got["logits"], expected["logits"], rtol=0, atol=0)
    # the first adapter comes from PEFT's own from_pretrained (its draws); the others draw nothing
    torch.random.set_rng_state(rng)
    with unmerged(model, adapters[:1]):
        pass
    after_one = torch.random.get_rng_state()
    torch.random.set_rng_state(rng)
    with unmerged(model, adapters):
        pass
    assert torch.equal(torch.random.get_rng_state(), after_one)


def test_unmerged_refuses_adapters_it_would_not_load_as_peft_does(lora_setup, tmp_path):
    """A stack is one family config of plain LoRA adapters: an adapter saved with another alpha, or
    with a per-module rank pattern, or a tensor that is no LoRA factor stops the load with its path;
    nothing is left in the model."""
    import shutil
    from types import SimpleNamespace

    from safetensors.torch import load_file, save_file

    cfg, task, cache, base, adapters = lora_setup

    def altered(name, config=None, extra=None):
        d = tmp_path / name
        shutil.copytree(adapters[1].path, d)
        saved = json.loads((d / "adapter_config.json").read_text())
        (d / "adapter_config.json").write_text(json.dumps({**saved, **(config or {})}))
        if extra:
            save_file({**load_file(str(d / "adapter_model.safetensors")), **extra}, str(d / "adapter_model.safetensors"))
        return SimpleNamespace(path=d, scale=1.0)

    first = json.loads((adapters[0].path / "adapter_config.json").read_text())
    cases = [(altered("alpha", {"lora_alpha": first["lora_alpha"] * 2}), r"alpha: its LoRA config differs .*\['lora_alpha'\]"),
             (altered("pattern", {"rank_pattern": {"c_fc": 2}}), r"pattern: only plain LoRA .*rank_pattern"),
             (altered("extra", extra={"base_model.model.lm_head.weight": torch.zeros(2, 2)}),
              r"extra: 'base_model.model.lm_head.weight' is not a LoRA factor")]
    for other, message in cases:
        with pytest.raises(ValueError, match=message):
            with unmerged(base.model, [adapters[0], other]):
                pass
        assert not any(isinstance(m, LoraLayer) for m in base.model.modules())


def test_measurements_alone_are_cached_with_the_calibrated_scale(lora_setup, tmp_path, monkeypatch):
    """`measured`: a warm run loads each adapter's row and the frontier instead of measuring them
    again, and stacks each adapter at the calibrated scale its row records, as the cold run did."""
    from lora_lab.adapters import stage

    cfg, task, cache, base, _ = lora_setup
    cfg = _setup(tmp_path, "adapters.calibrate=true", "eval.frontier_adapters=1")[0]
    ref = task.reference(base.model, base.tokenizer)
    cold = build_adapters(cfg, base, task, cache, progress=False)
    rows, points = stage.measured(cold, cfg, base, task, ref, cache)
    assert points and any(r["cal_reachable"] for r in rows)
    assert [a.scale for a in cold] == [r["cal_scale"] for r in rows] and any(a.scale != 1.0 for a in cold)

    def again(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(stage, "measure_single", again)
    monkeypatch.setattr(stage, "frontier", again)
    warm = build_adapters(cfg, base, task, cache, progress=False)
    assert all(a.scale == 1.0 for a in warm)
    assert stage.measured(warm, cfg, base, task, ref, cache) == (rows, points)
    assert [a.scale for a in warm] == [a.scale for a in cold]
    # settings of the stack's evaluation measure nothing alone: the same entry
    other = _setup(tmp_path, "adapters.calibrate=true", "eval.frontier_adapters=1", "eval.leave_one_out_orderings=0",
                   "compose.orderings=1")[0]
    assert stage.measured(warm, other, base, task, ref, cache) == (rows, points)
    # another calibration goal is another measurement
    with pytest.raises(AssertionError, match="measured again"):
        stage.measured(warm, _setup(tmp_path, "adapters.calibrate=true", "adapters.calibration_target=0.7")[0],
                       base, task, ref, cache)


def test_training_with_dropout_gives_the_same_weights_whatever_ran_before():
    """`training.train` seeds torch's streams (dropout masks) from its seed and restores them after:
    two processes in different random states train the same weights; the caller's stream is as it was."""
    from lora_lab.training import train

    class Squares:
        def batches(self, batch_size, steps, seed):
            g = torch.Generator().manual_seed(seed)
            for _ in range(steps):
                yield torch.randn(batch_size, 4, generator=g)

        def loss(self, model, x):
            return (model(x) - 1).pow(2).mean()

    def fit(state):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        torch.manual_seed(state)  # whatever ran before in this process
        train(model, list(model.parameters()), Squares(), steps=20, batch_size=8, lr=1e-2, seed=7, progress=False)
        after = torch.rand(3)
        torch.manual_seed(state)
        assert torch.equal(after, torch.rand(3))  # the caller's stream untouched
        return [p.detach().clone() for p in model.parameters()]

    first, second = fit(1), fit(2)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def _weight_of(model, name):
    return model.get_submodule(name).weight


def test_low_rank_edits_and_one_pristine_copy_per_curve(lora_setup):
    """A `LowRank` delta is added in place as its product is; inside `pristine`, the touched weights
    are copied once, however many edits, and every edit still restores them bit-exactly."""
    from lora_lab.interventions import STORE, pristine
    from lora_lab.merges.lowrank import LowRank

    cfg, task, cache, base, adapters = lora_setup
    model, before = base.model, _state(base.model)
    plain = _logits(model)
    factors = adapters[0].factors
    lowrank = {n: LowRank((left,), (right,)) for n, (left, right) in factors.items()}
    with weight_edit(model, dict(adapters[0].tensors)):
        dense_logits = _logits(model)
    with weight_edit(model, lowrank):
        torch.testing.assert_close(_logits(model), dense_logits, rtol=1e-5, atol=1e-5)
    _assert_bit_identical(model, before)
    with pristine(model) as store:
        assert not store
        with weight_edit(model, lowrank):
            copies = {n: t for n, t in store.items()}
            assert set(copies) == set(factors)
        _assert_bit_identical(model, before)
        for ad in adapters:
            with weight_edit(model, ad.scaled()):
                assert not torch.allclose(_logits(model), plain)  # edited
            _assert_bit_identical(model, before)
        assert all(store[n] is copies[n] for n in copies)  # copied once
        with pristine(model) as inner:
            assert inner is store  # nested: the outermost copies
        name = next(iter(factors))
        with weight_edit(model, lowrank):  # an edit nested in another restores the outer one's weight
            outer = _weight_of(model, name).clone()
            with weight_edit(model, lowrank):
                assert not torch.equal(_weight_of(model, name), outer)
            assert torch.equal(_weight_of(model, name), outer)
        _assert_bit_identical(model, before)
        from lora_lab.interventions import add_into

        add_into(model, {name: lowrank[name]})  # for good: its copy is dropped, the next edit copies anew
        changed = _weight_of(model, name).clone()
        assert name not in store
        with weight_edit(model, lowrank):
            pass
        assert torch.equal(_weight_of(model, name), changed)
        with torch.no_grad():
            _weight_of(model, name).copy_(before[name + ".weight"])
    _assert_bit_identical(model, before)
    assert STORE not in model.__dict__
    with pytest.raises(ValueError, match="shape"):
        with weight_edit(model, {next(iter(factors)): LowRank((torch.ones(2, 1),), (torch.ones(1, 3),))}):
            pass
    _assert_bit_identical(model, before)
