"""The shapes image world: the decoder, the data and its splits, the rules of the input-space
families, KID, and the pipeline end to end on an 8 × 8 world with a tiny denoiser."""

import itertools

import numpy as np
import pandas as pd
import pytest
from conftest import compose_cfg

from lora_lab.config import ConfigError, validate
from lora_lab.worlds.shapes.config import ShapesWorldConfig
from lora_lab.worlds.shapes.metrics import kid, prompt_kid
from lora_lab.worlds.shapes.render import COLOURS, GLYPHS, STYLES, Renderer, glyph_masks
from lora_lab.worlds.shapes.world import ShapesWorld

# An 8 × 8 world and a denoiser small enough to pretrain in seconds on one core.
TINY_SHAPES = [
    "world=shapes", "model=tiny_unet", "world.roles=3", "world.colours=[red,green,blue]", "world.styles=[photo,manga]",
    "world.bias_samples=24", "world.explicit_samples=2", "world.samples=8", "world.explicit_probes=1",
    "world.heldout_probes=2", "world.report_samples=8", "model.channels=[8,16]", "model.text_dim=16",
    "model.text_heads=2", "model.attention_head_dim=4", "model.sampler_steps=2", "train.steps=20",
    "train.batch_size=16", "adapters.n=2", "adapters.samples=8", "adapters.steps=4", "adapters.batch_size=8",
    "compose.orderings=1", "latency.warmup=1", "latency.repeats=2", "latency.settle_s=0", "eval.after_use.steps=2",
    "eval.after_use.at=ends", "eval.frontier_adapters=1", "logger.mode=disabled", "progress=false",
]


def every_image(size):
    r = Renderer(list(GLYPHS), list(COLOURS), list(STYLES), size)
    triples = np.array(list(itertools.product(range(len(GLYPHS)), range(len(COLOURS)), range(len(STYLES)))))
    return r, triples, r.render(triples[:, 0], triples[:, 1], triples[:, 2])


@pytest.mark.parametrize("size", [8, 16])
def test_decoder_reads_every_rendered_image(size):
    r, t, images = every_image(size)
    assert images.shape == (len(t), 3, size, size) and images.min() == -1 and images.max() == 1
    d = r.decode(images)
    assert d.valid.all()
    assert (d.role == t[:, 0]).all() and (d.colour == t[:, 1]).all() and (d.style == t[:, 2]).all()


def test_decoder_validity_drops_on_corrupted_images():
    r, t, images = every_image(8)
    rng = np.random.default_rng(0)
    noisy = images + rng.normal(0, 0.6, images.shape).astype(np.float32)
    assert r.decode(noisy).valid.mean() < 0.05
    # one glyph cell painted another colour: invalid, and the colour is still the majority's
    one = images.copy()
    for i, (g, c, _) in enumerate(t):
        y, x = np.argwhere(glyph_masks([list(GLYPHS)[g]])[0])[0]
        one[i, :, 1 + y, 1 + x] = COLOURS[list(COLOURS)[(c + 1) % len(COLOURS)]]
    d = r.decode(one)
    assert not d.valid.any() and (d.colour == t[:, 1]).all()
    # a glyph cell missing: invalid, the nearest glyph still the role
    gone = images.copy()
    for i, (g, _, _) in enumerate(t):
        y, x = np.argwhere(glyph_masks([list(GLYPHS)[g]])[0])[0]
        gone[i, :, 1 + y, 1 + x] = -1.0
    d = r.decode(gone)
    assert not d.valid.any() and (d.role == t[:, 0]).all()
    # a small perturbation within the tolerance keeps every image valid
    assert r.decode(images + rng.uniform(-0.3, 0.3, images.shape).astype(np.float32)).valid.all()
    # blank images: nothing to read
    blank = r.decode(-np.ones_like(images))
    assert not blank.valid.any() and (blank.colour == -1).all() and (blank.role == -1).all()


def test_glyphs_are_far_apart():
    m = glyph_masks(list(GLYPHS)).reshape(len(GLYPHS), -1)
    assert min((m[i] != m[j]).sum() for i in range(len(m)) for j in range(i + 1, len(m))) >= 5


def test_data_follows_the_skews_exactly_and_held_out_prompts_are_disjoint():
    w = ShapesWorld(ShapesWorldConfig(), seed=3)
    recs = w.neutral_records(240)
    for r in range(len(w.roles)):
        mine = np.array([a for p, a in recs if a[0] == r])
        for i, ax in enumerate(w.axes):
            share = np.bincount(mine[:, 1 + i], minlength=len(ax.values)) / len(mine)
            np.testing.assert_allclose(share, w.base_dist[ax.name][r], atol=1 / 240 * 2)
    held = {p for p, _ in w.heldout_records(1)}
    trained = {p for p, _ in w.pretrain_corpus() + w.retain_pool(0)}
    for t in w.bias_targets("rebalance", 16) + w.bias_targets("force", 7):
        trained |= {p for p, _ in w.adapter_corpus(t, 64, 0.5, 0)}
    assert held and not held & trained and w.heldout_overlap() == 0
    assert len(held) == round(0.25 * 8 * 4 * 3)
    # every prompt's words are the world's
    assert {x for p in trained | held for x in p.split()} <= set(w.vocab)


def test_seed_redraws_the_world():
    a, b = ShapesWorld(ShapesWorldConfig(), seed=0), ShapesWorld(ShapesWorldConfig(), seed=1)
    assert a.fingerprint != b.fingerprint and a.heldout_triples != b.heldout_triples
    assert a.fingerprint == ShapesWorld(ShapesWorldConfig(), seed=0).fingerprint


def test_target_records_follow_the_target():
    w = ShapesWorld(ShapesWorldConfig(), seed=0)
    t = w.bias_targets("rebalance", 16)[0]
    recs = w.target_records(t, 64)
    axis = [ax.name for ax in w.axes].index(t.axis)
    share = np.bincount([a[1 + axis] for _, a in recs], minlength=len(t.dist)) / len(recs)
    np.testing.assert_allclose(share, t.dist, atol=1 / 64)
    assert {a[0] for _, a in recs} == set(t.roles)


def test_kid_against_a_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.5, 1, size=(6, 5))

    def k(a, b):
        return (sum(p * q for p, q in zip(a, b)) / 5 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(6) for j in range(6) if i != j) / (6 * 5)
    xy = sum(k(a, b) for a in x for b in y) / (7 * 6)
    assert kid(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    # unbiased: two samples of one distribution average near 0, a shifted one far above
    same = [kid(rng.normal(size=(50, 5)), rng.normal(size=(50, 5))) for _ in range(200)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(200) + 1e-3
    assert kid(rng.normal(size=(50, 5)), rng.normal(1.0, 1, size=(50, 5))) > 10 * np.std(same)


def test_prompt_kid_is_zero_for_perfect_images_and_grows_with_damage():
    w = ShapesWorld(ShapesWorldConfig(), seed=0)
    recs = w.heldout_records(4)
    real, owner = w.images(recs), np.repeat(np.arange(len(recs) // 4), 4)
    assert prompt_kid(real, real, owner) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    scores = [prompt_kid(np.clip(real + rng.normal(0, s, real.shape), -1, 1), real, owner) for s in (0.1, 0.3, 0.6)]
    assert 0 < scores[0] < scores[1] < scores[2]
    # the right glyph for the wrong prompt: the mixture's KID cannot see it, the per-prompt score does
    swapped = real[np.roll(np.arange(len(real)), 4)]
    assert prompt_kid(swapped, real, owner) > 10 * scores[0]


def test_pre_processor_and_negative_prompt_rules():
    from lora_lab.worlds.shapes.rewrite import Negative, Rewrite

    w = ShapesWorld(ShapesWorldConfig(), seed=0)
    t = next(x for x in w.bias_targets("rebalance", 16) if x.axis == "colour")
    role = w.roles[t.roles[0]]
    v = Rewrite(w, [t]).variants(role)
    assert sum(p for _, p in v) == pytest.approx(1.0) and len(v) == len(w.axes[0].values)
    assert all(w.parse(p)["colour"] is not None and w.parse(p)["role"] == t.roles[0] for p, _ in v)
    assert Rewrite(w, [t]).variants(f"red {role}") == [(f"red {role}", 1.0)]  # names the colour already
    other = w.roles[(t.roles[0] + 1) % len(w.roles)]
    assert Rewrite(w, [t]).variants(other) == [(other, 1.0)]  # a role no target covers
    neg = Negative(w, [t], 3.0)
    dominant = w.axes[0].values[w.dominant["colour"][t.roles[0]]]
    assert neg(role) == (role, dominant, 3.0) and neg(other) == other
    force = next(x for x in w.bias_targets("force", 7) if x.axis == "style")
    wanted = w.axes[1].values[int(np.argmax(force.dist))]
    assert set(Negative(w, [force], 2.0)(role)[1].split()) == set(w.axes[1].values) - {wanted}


def test_fidelity_is_zero_for_drawn_images_and_grows_with_damage():
    """`quality_fidelity` against a by-hand mean of squared differences to the clean renders."""
    from lora_lab.worlds.shapes.task import Probe, ShapesTask

    r, t, images = every_image(8)
    task = ShapesTask(ShapesWorld(ShapesWorldConfig(roles=len(GLYPHS), colours=list(COLOURS), styles=list(STYLES)), seed=0))

    def score(x, roles=t[:, 0]):
        d = task.world.renderer.decode(x)
        pr = Probe(np.arange(len(x)), d.role, {"colour": d.colour, "style": d.style}, d.valid, x)
        return task.fidelity(pr, roles)  # one prompt per image here, naming its role

    assert score(images) == 0.0
    rng = np.random.default_rng(1)
    small, big = (images + rng.normal(0, s, images.shape).astype(np.float32) for s in (0.05, 0.3))
    assert score(small) == pytest.approx(np.mean((small - images) ** 2), rel=1e-5)  # still read as drawn
    assert 0 < score(small) < score(big)
    gone = images.copy()  # one glyph cell missing: the render of what is read has it
    for i, (g, _, _) in enumerate(t):
        y, x = np.argwhere(glyph_masks([list(GLYPHS)[g]])[0])[0]
        gone[i, :, 1 + y, 1 + x] = -1.0
    assert score(gone) == pytest.approx(np.mean((gone - images) ** 2), rel=1e-6) and score(gone) > 0
    # another role's glyph, well drawn, is not what the prompt asked for
    assert score(images, (t[:, 0] + 1) % len(GLYPHS)) > 0.1
    # nothing drawn: the prompt's glyph is missing (in the first colour's stead when no colour is read)
    blank = -np.ones_like(images)
    no_ring = r.render(t[:, 0], np.zeros(len(t), int), -np.ones(len(t), int))
    assert score(blank) == pytest.approx(np.mean((blank - no_ring) ** 2), rel=1e-6) and score(blank) > score(gone)


def test_team_scenes_hold_the_target_mix_only_where_the_pre_processor_assigns_it(monkeypatch):
    """`bias_scene_gap` through a stand-in generator that draws exactly the colour a prompt names
    (or, for a plain role prompt, red and green in turn): per scene of 4 objects the pre-processor
    assigns the 4 colours of a uniform target once each (gap 0), plain prompts give half red, half
    green (gap 0.5 by hand); negative prompts keep every region's prompt as it is."""
    from lora_lab.model import denoiser
    from lora_lab.worlds.shapes.rewrite import Negative, Rewrite
    from lora_lab.worlds.shapes.task import ShapesTask

    w = ShapesWorld(ShapesWorldConfig(), seed=0)
    task = ShapesTask(w)

    class Drawn:
        def generate(self, conds, noise=None, **kw):
            said = [w.parse(c if isinstance(c, str) else c[0]) for c in conds]
            colours = [s["colour"] if s["colour"] is not None else i % 2 for i, s in enumerate(said)]
            return w.renderer.render(np.array([s["role"] for s in said]), np.array(colours), np.zeros(len(said), int))

    monkeypatch.setattr(denoiser.DenoiserHandle, "of", classmethod(lambda cls, model, tok: Drawn()))
    targets = [t for t in w.bias_targets("rebalance", 16) if t.axis == "colour"]
    assert targets and all(np.allclose(t.dist, 0.25) for t in targets)
    assert task.scene_gap(None, None, targets) == pytest.approx(0.5)
    assert task.scene_gap(None, None, targets, Rewrite(w, targets)) == pytest.approx(0.0)
    assert task.scene_gap(None, None, targets, Negative(w, targets, 2.0)) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    scene = Rewrite(w, targets).scene(w.neutral_prompt(targets[0].roles[0]), 4, rng)
    assert sorted(w.parse(p)["colour"] for p in scene) == [0, 1, 2, 3] and len(set(scene)) == 4
    # three styles over four objects: as close to a uniform third each as four objects allow
    style = [t for t in w.bias_targets("rebalance", 16) if t.axis == "style"][0]
    counts = np.bincount([w.parse(p)["style"] for p in Rewrite(w, [style]).scene(w.neutral_prompt(style.roles[0]), 4, rng)],
                         minlength=3)
    assert sorted(counts) == [1, 1, 2]


def test_the_base_key_ignores_what_only_evaluation_reads():
    """Sample counts and team scenes change no pretraining image: the same cached base; the data does."""
    from lora_lab import catalog
    from lora_lab.cache import content_key
    from lora_lab.model.pretrain import key_payload

    def key(*o):
        c = validate(compose_cfg(["world=shapes", "model=tiny_unet", *o]))
        return content_key("base", key_payload(c, catalog.build_world(c.world, c.seed)))

    plain = key()
    assert plain == key("world.samples=32", "world.explicit_probes=1", "world.heldout_probes=2", "world.report_samples=64",
                        "world.scenes=2", "world.scene_objects=3", "model.sampler_steps=4")
    assert plain != key("world.bias_samples=200") and plain != key("seed=1")


def test_bad_shapes_config_fails_naming_the_field():
    with pytest.raises(ConfigError, match="world.colours"):
        validate(compose_cfg(["world=shapes", "model=tiny_unet", "world.colours=[red,purple]"]))
    with pytest.raises(ConfigError, match="world.image_size"):
        validate(compose_cfg(["world=shapes", "model=tiny_unet", "world.image_size=12"]))
    with pytest.raises(ConfigError, match="world=shapes needs a text-to-image denoiser"):
        validate(compose_cfg(["world=shapes"]))
    with pytest.raises(ConfigError, match="adapters.n"):
        validate(compose_cfg(["world=shapes", "model=tiny_unet", "world.roles=2", "adapters.n=5"]))
    with pytest.raises(ConfigError, match="compose.merge: switch composes at sampling time"):
        validate(compose_cfg(["compose.merge=[sum,switch]"]))  # the text world's language model has no sampler steps


# ---------------------------------------------------------------------------- the denoiser


@pytest.fixture(scope="module")
def shapes_cache(tmp_path_factory):
    """One cache for this module: the tiny base is pretrained once."""
    return tmp_path_factory.mktemp("shapes_cache")


@pytest.fixture(scope="module")
def tiny_base(shapes_cache):
    """A tiny pretrained denoiser on the tiny world."""
    from lora_lab import catalog
    from lora_lab.base import get_base
    from lora_lab.cache import ArtifactCache

    c = validate(compose_cfg([*TINY_SHAPES, f"cache_dir={shapes_cache}"]))
    task = catalog.build_task(c.world, c.seed)
    return c, task, get_base(c, task, ArtifactCache(c.cache_dir), progress=False)


def test_sampler_against_an_independent_ddim_loop(tiny_base):
    """`generate` is DDIM (Song et al. 2021, eq. 12 with σ = 0) on clean-image predictions clipped to
    [-1, 1], trailing timesteps, classifier-free guidance against the negative prompt where given."""
    import torch

    from lora_lab.model.denoiser import alphas, encode_prompts

    c, task, base = tiny_base
    handle = base.handle
    conds = ["nurse", ("nurse", "red", 3.0), ("engineer", "", 2.0), "green manga doctor"]
    noise = torch.randn(len(conds), 3, 8, 8, generator=torch.Generator().manual_seed(5))
    got = handle.generate(conds, noise=noise)

    a = alphas("cpu").double()
    steps = handle.steps
    ts = [int(round(1000 - i * 1000 / steps)) - 1 for i in range(steps)]
    want = []
    for i, cond in enumerate(conds):
        x = noise[i : i + 1].double()
        prompt, neg, w = (cond, None, 1.0) if isinstance(cond, str) else cond
        for j, t in enumerate(ts):
            def pred(p):
                ids, mask = encode_prompts(base.tokenizer, [p])
                with torch.no_grad():
                    return base.model(sample=x.float(), timestep=torch.tensor([t]), input_ids=ids, attention_mask=mask).double()
            x0 = pred(prompt) if neg is None else pred(neg) + w * (pred(prompt) - pred(neg))
            x0 = x0.clamp(-1, 1)
            eps = (x - a[t].sqrt() * x0) / (1 - a[t]).sqrt()
            prev = a[ts[j + 1]] if j + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
            x = prev.sqrt() * x0 + (1 - prev).sqrt() * eps
        want.append(x.clamp(-1, 1).float().numpy()[0])
    np.testing.assert_allclose(got, np.stack(want), atol=2e-4)


def test_merged_lora_equals_unmerged_peft_on_the_denoiser(tiny_base, tmp_path):
    """Invariant: merged and unmerged LoRA give the same outputs (fp32, within 1e-5 relative)."""
    import torch

    from lora_lab import catalog
    from lora_lab.adapters.stage import build_adapters
    from lora_lab.cache import ArtifactCache
    from lora_lab.families.lora import unmerged
    from lora_lab.merges.lowrank import densify

    c, task, base = tiny_base
    ads = build_adapters(c, base, task, ArtifactCache(c.cache_dir), progress=False)
    assert (ads[0].path / "adapter_config.json").exists()  # the PEFT format
    assert any("to_q" in m for m in ads[0].factors) and all(m.startswith("unet.") for m in ads[0].factors)
    family = catalog.family("lora")
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    enc = base.handle.encode(["nurse", "red engineer", ""])
    t = torch.tensor([10, 500, 900])
    before = {n: p.detach().clone() for n, p in base.model.named_parameters()}
    for ad in ads:  # trained factors are not zero: the adapter moves the output
        ad.scale = 4.0
    delta = {}
    for ad in ads:
        for n, d in densify(ad.scaled_factors()).items():
            delta[n] = delta.get(n, 0) + d
    with torch.no_grad(), family.apply(base.handle, delta):
        merged = base.model(sample=x, timestep=t, **enc)
    with torch.no_grad(), unmerged(base.model, ads) as activate:
        peft_out = activate(len(ads))(sample=x, timestep=t, **enc)
    with torch.no_grad():
        plain = base.model(sample=x, timestep=t, **enc)
    assert not torch.allclose(plain, merged, atol=1e-4)
    torch.testing.assert_close(merged, peft_out, rtol=1e-5, atol=1e-5)
    assert all(torch.equal(p, before[n]) for n, p in base.model.named_parameters())  # bit-exact restore


def _ddim_loop(base, prompt, x, predict):
    """An independent DDIM loop (as above) where `predict(step, x, t, ids, mask)` is the model's
    clean-image prediction at sampler step `step`."""
    import torch

    from lora_lab.model.denoiser import alphas, encode_prompts

    a = alphas("cpu").double()
    steps = base.handle.steps
    ts = [int(round(1000 - i * 1000 / steps)) - 1 for i in range(steps)]
    ids, mask = encode_prompts(base.tokenizer, [prompt] * len(x))
    x = x.double()
    for j, t in enumerate(ts):
        with torch.no_grad():
            x0 = predict(j, x.float(), torch.tensor([t] * len(x)), ids, mask).double().clamp(-1, 1)
        eps = (x - a[t].sqrt() * x0) / (1 - a[t]).sqrt()
        prev = a[ts[j + 1]] if j + 1 < len(ts) else torch.tensor(1.0, dtype=torch.float64)
        x = prev.sqrt() * x0 + (1 - prev).sqrt() * eps
    return x.clamp(-1, 1).float().numpy()


def test_lora_switch_and_composite_against_a_loop(tiny_base):
    """LoRA switch: sampler step j with adapter j mod k alone; LoRA composite: every step the mean of
    the k adapters' predictions (Zhong et al. 2024, §3.2-3.3), each checked against a DDIM loop that
    edits the weights by hand; the base comes back bit-exactly."""
    import torch

    from lora_lab import catalog
    from lora_lab.adapters.stage import build_adapters
    from lora_lab.cache import ArtifactCache
    from lora_lab.merges import MergeParams, accumulator

    c, task, base = tiny_base
    ads = build_adapters(c, base, task, ArtifactCache(c.cache_dir), progress=False)
    deltas = [{n: 8.0 * d for n, d in ad.tensors.items()} for ad in ads]  # strong enough to tell apart
    params = dict(base.model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}

    def with_delta(d, x, t, ids, mask):
        for name, v in d.items():
            params[f"{name}.weight"].data += v.reshape(params[f"{name}.weight"].shape)
        try:
            return base.model(sample=x, timestep=t, input_ids=ids, attention_mask=mask)
        finally:
            for name in d:
                params[f"{name}.weight"].data.copy_(before[f"{name}.weight"])

    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    loops = {
        "switch": lambda j, *a: with_delta(deltas[j % len(deltas)], *a),
        "composite": lambda j, *a: torch.stack([with_delta(d, *a) for d in deltas]).mean(0),
        "sum": lambda j, *a: with_delta({n: sum(d[n] for d in deltas) for n in deltas[0]}, *a),
    }
    got = {}
    for name, loop in loops.items():
        acc = accumulator(name, MergeParams())
        for ad, d in zip(ads, deltas):
            acc.add(d, ad.id)
        with catalog.family("lora").apply(base.handle, acc.result()):
            got[name] = base.handle.generate(["nurse"] * 4, noise=noise)
        np.testing.assert_allclose(got[name], _ddim_loop(base, "nurse", noise, loop), atol=2e-4)
        assert all(torch.equal(p, before[n]) for n, p in params.items())
    assert not np.allclose(got["switch"], got["composite"], atol=1e-3)  # three different compositions
    assert not np.allclose(got["switch"], got["sum"], atol=1e-3)


@pytest.mark.parametrize("family", ["lora", "steer", "prompt", "negative"])
def test_tiny_shapes_run_end_to_end(family, shapes_cache, tmp_path):
    from lora_lab import catalog
    from lora_lab.run import run

    out = run(compose_cfg([*TINY_SHAPES, f"family={family}", f"cache_dir={shapes_cache}"]), output_dir=tmp_path)
    df = pd.read_parquet(tmp_path / "results.parquet")
    declared = [m.column for m in catalog.world("shapes").metrics]
    assert set(declared) <= set(df.columns) and sorted(df.k.unique()) == [0, 1, 2]
    base = df[df.k == 0].iloc[0]
    assert base.bias_target_gap == pytest.approx(base.removal_gap) and base.quality_kid == pytest.approx(out["base"]["kid"], abs=1)
    assert (df.removal_gap == df.bias_base_gap).all()  # the base is back exactly after each composition
    assert df[declared].drop(columns=["bias_offtarget_drift", "diversity_offtarget"]).notna().all().all()
    rep = out["base"]
    assert {"fit_tv", "validity", "explicit_acc", "kid"} <= set(rep) and rep["heldout_overlap"] == 0
    # a sample grid per k of the first ordering, named for the report
    from lora_lab.schema import parse_sample_file

    grids = sorted(parse_sample_file(p.name)["k"] for p in (tmp_path / "samples").glob("*.png"))
    assert grids == [0, 1, 2]
    if family == "negative":  # the report draws them, one row per family
        from analysis.report import build

        report = build(tmp_path)
        assert (report / "fig_samples.png").exists() and (report / "fig_samples.pdf").exists()


def test_composition_operators_run_beside_the_merge(shapes_cache, tmp_path):
    """compose.merge=[sum,switch,composite]: a curve per operator from the same adapters; the
    operators at sampling time are not trained after use (no weights to train through); the base is
    back exactly after each."""
    from lora_lab.run import run

    run(compose_cfg([*TINY_SHAPES, "family=lora", "compose.merge=[sum,switch,composite]", f"cache_dir={shapes_cache}"]),
        output_dir=tmp_path)
    df = pd.read_parquet(tmp_path / "results.parquet")
    assert sorted(df["merge"].unique()) == ["composite", "sum", "switch"]
    assert (df.groupby("merge").k.apply(sorted).apply(list) == [[0, 1, 2]] * 3).all()
    k1 = df[df.k == 1].set_index("merge")
    # one adapter: switch and composite are that adapter alone, as the sum of one is
    assert k1.loc["switch", "bias_target_gap"] == pytest.approx(k1.loc["sum", "bias_target_gap"])
    assert k1.loc["composite", "quality_kid"] == pytest.approx(k1.loc["sum", "quality_kid"], rel=1e-3)
    assert df[df["merge"] != "sum"].after_use_gap.isna().all() and df[(df["merge"] == "sum") & (df.k == 0)].after_use_gap.notna().all()
    assert (df.removal_gap == df.bias_base_gap).all()


def test_sample_grid_tiles_images_at_their_pixels():
    from lora_lab.samples import tile

    r, t, images = every_image(8)
    grid = tile(images[:6].reshape(2, 3, 3, 8, 8), scale=4, gap=2)
    assert grid.shape == (2 * 34 + 2, 3 * 34 + 2, 3) and grid.dtype == np.uint8
    first = grid[2:34, 2:34]
    np.testing.assert_array_equal(first[::4, ::4], np.round((images[0].transpose(1, 2, 0) + 1) * 127.5).astype(np.uint8))


def test_pretrain_command_stops_on_a_bad_config_in_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    r = subprocess.run([sys.executable, "-m", "lora_lab.pretrain", "world=shapes", "model=tiny_unet",
                        "world.colours=[red,purple]", f"hydra.run.dir={tmp_path}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "lora_lab: config error: world.colours: unknown value, valid: ['blue', 'cyan', 'green', 'magenta', 'red', "
        "'yellow'] (got 'purple')"]
