"""The null families: each trains its real family's adapter, then stands in a random one of the
same size (per LoRA module the delta's Frobenius norm, per steering site the vector's norm)."""

import dataclasses
import json

import pandas as pd
import pytest
import torch

from conftest import TINY, compose_cfg
from lora_lab import catalog
from lora_lab.adapters.stage import adapter_key_payload, adapter_seed, build_adapters, measure_single
from lora_lab.base import get_base
from lora_lab.cache import ArtifactCache, content_key
from lora_lab.catalog import build_task
from lora_lab.config import validate
from lora_lab.contracts import TRAINED_DIR
from lora_lab.families.null_lora import random_lora_state
from lora_lab.results import family_declaration
from lora_lab.run import run
from lora_lab.schema import read_table_schema

STEPS = "adapters.steps=30"


def _cfg(*overrides):
    return validate(compose_cfg([*TINY, STEPS, *overrides]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One base; lora, null_lora, steer and null_steer adapters on it, in one cache."""
    root = tmp_path_factory.mktemp("cache")
    cfg, cache = _cfg(), ArtifactCache(root)
    task = build_task(cfg.world)
    base = get_base(cfg, task, cache, progress=False)
    ads = {f: build_adapters(_cfg(f"family={f}"), base, task, cache, progress=False)
           for f in ("lora", "null_lora", "steer", "null_steer")}
    return root, task, base, ads


def _cos(x, y):
    return float(x.flatten() @ y.flatten() / (x.norm() * y.norm()))


def test_the_null_families_are_declared_controls_of_their_real_families():
    fams = catalog.families()
    for null, real in (("null_lora", "lora"), ("null_steer", "steer")):
        n, r = fams[null], fams[real]
        assert catalog.control_of(n) == real and catalog.control_of(r) is None
        assert (n.space, n.color, n.trainable, n.factored, n.format) == (r.space, r.color, r.trainable, r.factored, r.format)
        assert [(m.name, m.column, m.reference, m.expect) for m in n.modes] == \
               [(m.name, m.column, m.reference, m.expect) for m in r.modes]
        assert all(m.family == null for m in n.modes) and n.label != r.label
        assert family_declaration(n)["control_of"] == real and "control_of" not in family_declaration(r)
        assert issubclass(n.schema, r.schema) and n.schema().name == null


def test_a_control_must_name_a_registered_real_family_of_its_space():
    from lora_lab.families.null_lora import NullLoraFamily

    for name, real, msg in (("ctl_a", "nope", "is not a registered real family"),
                            ("ctl_b", "null_lora", "is not a registered real family"),  # no control of a control
                            ("ctl_c", "steer", "acts in its real family's space")):
        modes = tuple(dataclasses.replace(m, family=name) for m in NullLoraFamily.modes)
        fam = type("Ctl", (NullLoraFamily,), {"name": name, "control_of": real, "modes": modes})()
        with pytest.raises(ValueError, match=msg):
            catalog.register_family(fam)
        assert name not in catalog.families()


def test_null_lora_has_the_trained_norms_and_unrelated_directions(trained):
    root, task, base, ads = trained
    for real, null in zip(ads["lora"], ads["null_lora"]):
        # the adapter it replaced is LoRA's own, bit for bit (same fields, objective and seed)
        kept, _ = catalog.family("lora").load(null.path / TRAINED_DIR)
        assert kept.keys() == real.tensors.keys() == null.tensors.keys()
        assert all(torch.equal(kept[m], real.tensors[m]) for m in kept)
        for m, delta in real.tensors.items():
            assert null.tensors[m].shape == delta.shape
            assert float(null.tensors[m].norm()) == pytest.approx(float(delta.norm()), rel=1e-5), m
            assert abs(_cos(null.tensors[m], delta)) < 0.2, m
            left, right = null.factors[m]  # factors as LoRA's: the delta is left @ right
            torch.testing.assert_close(left @ right, null.tensors[m])
            assert [t.shape for t in null.factors[m]] == [t.shape for t in real.factors[m]]


def test_null_steer_has_the_trained_norms(trained):
    root, task, base, ads = trained
    for real, null in zip(ads["steer"], ads["null_steer"]):
        kept, _ = catalog.family("steer").load(null.path / TRAINED_DIR)
        assert list(kept) == list(real.tensors) == list(null.tensors)
        assert all(torch.equal(kept[s], real.tensors[s]) for s in kept)
        for s, v in real.tensors.items():
            assert null.tensors[s].shape == v.shape
            assert float(null.tensors[s].norm()) == pytest.approx(float(v.norm()), rel=1e-5), s
            assert abs(_cos(null.tensors[s], v)) < 0.5, s


def test_same_seed_same_null_adapters_and_their_own_cache_entries(trained, tmp_path):
    root, task, base, ads = trained
    for fam in ("null_lora", "null_steer"):
        fresh = build_adapters(_cfg(f"family={fam}", "adapters.n=1"), base, task, ArtifactCache(tmp_path), progress=False)
        assert len(fresh) == 1 and fresh[0].id == ads[fam][0].id  # the first target's adapter, retrained
        for a, b in zip(ads[fam], fresh):
            assert not b.meta["cache_hit"] and a.tensors.keys() == b.tensors.keys()
            # alone it was trained one at a time, with the others together: equal up to float order
            for k in a.tensors:
                torch.testing.assert_close(a.tensors[k], b.tensors[k], rtol=1e-4, atol=1e-4 * float(a.tensors[k].abs().max()))
        real = catalog.control_of(catalog.family(fam))
        # the trained adapter went to the real family's own entry: the real family finds it, trains nothing
        again = build_adapters(_cfg(f"family={real}", "adapters.n=1"), base, task, ArtifactCache(tmp_path), progress=False)
        assert again[0].meta["cache_hit"]
        for k in again[0].tensors:  # the entry trained alone above, beside the one trained with the others
            torch.testing.assert_close(again[0].tensors[k], ads[real][0].tensors[k], rtol=1e-4,
                                       atol=1e-4 * float(ads[real][0].tensors[k].abs().max()))
        assert ads[fam][0].path.parent.name == f"adapter_{fam}" and ads[real][0].path.parent.name == f"adapter_{real}"
        t = ads[fam][0].target
        keys = [content_key("adapter", adapter_key_payload(_cfg(f"family={f}"), base.key, t, task.world.fingerprint))
                for f in (fam, real)]
        assert keys[0] != keys[1]
        assert ads[fam][0].path.name == keys[0] and ads[real][0].path.name == keys[1]
    # another seed draws another direction
    state = {"m.lora_A.weight": torch.randn(2, 5), "m.lora_B.weight": torch.randn(3, 2)}
    one, same, other = (random_lora_state(state, s) for s in (7, 7, 8))
    assert all(torch.equal(one[k], same[k]) for k in state) and not torch.equal(one["m.lora_A.weight"], other["m.lora_A.weight"])
    assert adapter_seed(0, t) == adapter_seed(0, t)


def test_a_null_is_stacked_at_its_trained_counterparts_calibrated_strength(trained):
    root, task, base, ads = trained
    ref = task.reference(base.model, base.tokenizer)
    real = [ads["lora"][0]]
    null = [ads["null_lora"][0]]
    scales = [a.scale for a in (*real, *null)]
    try:
        r = measure_single(real, _cfg("family=lora", "adapters.calibrate=true"), base, task, ref)[0]
        n = measure_single(null, _cfg("family=null_lora", "adapters.calibrate=true"), base, task, ref)[0]
        assert n["cal_scale"] == r["cal_scale"] and null[0].scale == real[0].scale == r["cal_scale"]
        assert n["cal_reduction"] == r["cal_reduction"]  # the calibration is the trained adapter's
        assert n["family"] == "null_lora" and n["gap"] != r["gap"]  # its own gap, measured
    finally:
        real[0].scale, null[0].scale = scales


def test_a_tiny_null_lora_run_writes_its_family_and_control_of(trained, tmp_path):
    root, task, base, ads = trained
    out = run(compose_cfg([*TINY, STEPS, "family=null_lora", f"cache_dir={root}"]), output_dir=tmp_path / "out")
    df = pd.read_parquet(tmp_path / "out" / "results.parquet")
    pd.testing.assert_frame_equal(df, out["results"])
    assert set(df.family) == {"null_lora"} and set(df.space) == {"weight"}
    assert json.loads(df.config.iloc[0])["family.name"] == "null_lora"
    timed = df[(df.ordering == 0) & (df.k > 0)]
    assert (timed.latency_unmerged_ms > 0).all()  # LoRA's unmerged mode loads the null's PEFT directories
    schema = read_table_schema([tmp_path / "out" / "results.parquet"])
    assert schema.families == {"null_lora": {"label": "LoRA null (random, same norms)", "color": "#0072B2",
                                             "space": "weight", "control_of": "lora"}}
    assert {m.family for m in schema.modes} == {"null_lora"}
