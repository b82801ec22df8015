"""Adapters trained together (one batched pass) are the adapters trained one at a time."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, compose_cfg
from lora_lab import batched, catalog, training
from lora_lab.adapters.stage import adapter_seed, build_adapters
from lora_lab.base import get_base
from lora_lab.cache import ArtifactCache
from lora_lab.catalog import build_task
from lora_lab.config import validate


def _setup(tmp, *overrides):
    cfg = validate(compose_cfg([*TINY, "adapters.steps=25", "adapters.n=4", *overrides]))
    task = build_task(cfg.world)
    cache = ArtifactCache(tmp / "cache")
    return cfg, task, cache, get_base(cfg, task, cache, progress=False)


def max_relative_difference(a, b):
    """Over tensors: max |a − b| ÷ max |b| (B factors start at zero: no elementwise ratio)."""
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max()) for k in b)


@pytest.mark.parametrize("family,model", [("lora", "tiny_gpt2"), ("steer", "tiny_gpt2"), ("lora", "tiny_llama")])
def test_trained_together_equals_one_at_a_time(tmp_path, family, model):
    cfg, task, cache, base = _setup(tmp_path, f"family={family}", f"model={model}")
    fam = catalog.family(family)
    targets = task.bias_targets(cfg.adapters.kind.value, cfg.adapters.n)
    seeds = [adapter_seed(cfg.seed, t) for t in targets]
    objectives = [task.objective(t, base.tokenizer, cfg.adapters, s) for t, s in zip(targets, seeds)]
    alone, together = [], []
    for i, (o, s) in enumerate(zip(objectives, seeds)):
        d = tmp_path / "alone" / str(i)
        d.mkdir(parents=True)
        fam.train(base, cfg.family, o, cfg.adapters, s, d, False, "t")
        alone.append(d)
    for i in range(len(seeds)):
        (tmp_path / "together" / str(i)).mkdir(parents=True)
    together = [tmp_path / "together" / str(i) for i in range(len(seeds))]
    metas = fam.train_many(base, cfg.family, objectives, cfg.adapters, seeds, together, False, "t")
    assert len(metas) == len(seeds) and all(m["n_params"] > 0 for m in metas)
    for a, b in zip(alone, together):
        # the same files, the same configuration, the same tensors' names and shapes
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        for js in a.glob("*.json"):
            assert json.loads(js.read_text()) == json.loads((b / js.name).read_text())
        sa, sb = [load_file(str(next(d.glob("*.safetensors")))) for d in (a, b)]
        assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sb.items()}
        moved = max(float(v.abs().max()) for k, v in sa.items() if "lora_A" not in k)
        assert moved > 1e-3  # trained: B (or the vector) left zero
        assert max_relative_difference(sb, sa) <= 1e-4
    # and they are different adapters: what each learned (B, or the vector) is its own data's
    learned = [{k: v for k, v in load_file(str(next(d.glob("*.safetensors")))).items() if "lora_A" not in k}
               for d in together[:2]]
    assert max_relative_difference(*learned) > 0.1
    assert not hasattr(base.model, "peft_config")  # the base is left clean


def test_the_stage_trains_together_into_the_entries_one_at_a_time_would_fill(tmp_path):
    cfg, task, cache, base = _setup(tmp_path)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    ads = build_adapters(cfg, base, task, cache, progress=False)
    assert all(torch.equal(before[k], v) for k, v in base.model.state_dict().items())
    assert not any(a.meta["cache_hit"] for a in ads)
    assert all(a.meta["target"] == a.id for a in ads)
    alone_cfg = validate(compose_cfg([*TINY, "adapters.steps=25", "adapters.n=4", "adapters.together=1"]))
    alone = build_adapters(alone_cfg, base, task, ArtifactCache(tmp_path / "alone"), progress=False)
    assert [a.path.name for a in ads] == [a.path.name for a in alone]  # one key, whichever way they train
    for a, b in zip(ads, alone):
        assert max_relative_difference({k: f[0] @ f[1] for k, f in a.factors.items()},
                                       {k: f[0] @ f[1] for k, f in b.factors.items()}) <= 1e-4
    again = build_adapters(cfg, base, task, cache, progress=False)
    assert all(a.meta["cache_hit"] for a in again)
    # chunks of at most `together`; an entry already there is not trained again
    calls = []
    fam = catalog.family("lora")
    real = fam.train_many

    def spy(*a, **k):
        calls.append(len(a[2]))
        return real(*a, **k)

    fam.train_many = spy
    done = {a.id for a in ads}
    try:
        for n, together in ((5, 2), (6, 2), (10, 2)):
            cfg_n = validate(compose_cfg([*TINY, "adapters.steps=25", f"adapters.n={n}", f"adapters.together={together}"]))
            more = build_adapters(cfg_n, base, task, cache, progress=False)
            assert [a.meta["cache_hit"] for a in more] == [a.id in done for a in more]
            done = {a.id for a in more}
    finally:
        del fam.train_many
    # n = 5 and n = 6: one new adapter each, trained as the stage goes (nothing to batch);
    # n = 10: four new ones, in two passes of two
    assert calls == [2, 2]


def test_per_group_clipping_is_clip_grad_norm_of_each_group():
    torch.manual_seed(0)
    p, q = torch.randn(3, 4, 5), torch.randn(3, 7)
    p.grad, q.grad = torch.randn(3, 4, 5) * torch.tensor([0.01, 1, 10]).view(3, 1, 1), torch.randn(3, 7)
    expect = []
    for i in range(3):
        gi = [p.grad[i].clone().requires_grad_(), q.grad[i].clone()]
        pi, qi = torch.zeros(4, 5, requires_grad=True), torch.zeros(7, requires_grad=True)
        pi.grad, qi.grad = gi[0].detach(), gi[1]
        torch.nn.utils.clip_grad_norm_([pi, qi], 1.0)
        expect.append((pi.grad, qi.grad))
    batched.clip_per_group([p, q], 1.0)
    for i, (gp, gq) in enumerate(expect):
        torch.testing.assert_close(p.grad[i], gp)
        torch.testing.assert_close(q.grad[i], gq)


def test_steer_routes_add_each_groups_vector_to_its_rows():
    block = torch.nn.Identity()
    v = {"": torch.tensor([[1.0, 0.0], [0.0, 2.0]])}
    x = torch.zeros(4, 3, 2)  # 2 groups of 2 rows, 3 positions
    with batched.steer_routes(block, v, 4):
        out = block(x)
    assert torch.equal(out[:2], torch.tensor([1.0, 0.0]).expand(2, 3, 2))
    assert torch.equal(out[2:], torch.tensor([0.0, 2.0]).expand(2, 3, 2))
    assert torch.equal(block(x), x)  # hooks gone
    with batched.steer_routes(block, v, 4), pytest.raises(RuntimeError, match="not the batch's 4 rows"):
        block(x.transpose(0, 1))  # positions first: rows would go to the wrong adapter
    with pytest.raises(AttributeError), batched.hooked(block, {"": lambda *a: None, "nope": lambda *a: None}):
        pass
    assert not block._forward_hooks  # the hook registered before the failure is gone too


def test_a_diverging_adapter_is_named_and_nothing_is_cached(tmp_path, monkeypatch):
    cfg, task, cache, base = _setup(tmp_path)
    real = batched.group_losses

    def second_diverges(*a, **k):
        per = real(*a, **k)
        return per + torch.tensor([0.0, float("nan"), 0.0, 0.0])

    monkeypatch.setattr(batched, "group_losses", second_diverges)
    target = task.bias_targets(cfg.adapters.kind.value, cfg.adapters.n)[1]
    with pytest.raises(training.TrainingDiverged, match=f"{target.id}: loss is nan at step 0"):
        build_adapters(cfg, base, task, cache, progress=False)
    assert not list((cache.root / "adapter_lora").glob("*"))
    assert not hasattr(base.model, "peft_config")
    assert not any(m._forward_hooks for m in base.model.modules())  # the routes are gone


def test_models_with_dropout_train_adapters_one_at_a_time(tmp_path):
    cfg, task, cache, base = _setup(tmp_path)
    objectives = [task.objective(t, base.tokenizer, cfg.adapters, 0) for t in task.bias_targets("rebalance", 2)]
    assert batched.batchable(base.model, objectives)
    assert not batched.batchable(torch.nn.Sequential(base.model, torch.nn.Dropout(0.1)), objectives)
    assert not batched.batchable(base.model, [object(), object()])
    base.model.config.attention_dropout = 0.1  # functional dropout (Llama's attention): no module to find
    try:
        assert batched.has_dropout(base.model) and not batched.batchable(base.model, objectives)
    finally:
        base.model.config.attention_dropout = 0.0
