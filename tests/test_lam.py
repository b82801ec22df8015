"""λ schedules (`compose.lam`): a number, '1/sqrt(k)', '1/k' or a list λ_1, λ_2, …; by hand, in every
method that declares λ (incremental against from scratch), against the mean, in the config checks,
in the settings the report keeps apart, and through a real run."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.settings import assign
from conftest import ROOT, TINY, compose_cfg
from lora_lab import catalog
from lora_lab.config import ComposeConfig, ConfigError, check_schedule, numbers_config, validate
from lora_lab.merges import MergeParams, accumulator, merge
from lora_lab.merges.lowrank import dense as expanded, densify
from lora_lab.merges.sum import lam_at

LIST = [1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 0.3]  # λ_1 .. λ_7
SCHEDULES = ["1/k", "1/sqrt(k)", LIST]
WITH_LAM = sorted(n for n, m in catalog.merges().items() if any(p.name == "lam" for p in m.params))


@pytest.mark.parametrize("lam,k,expected", [
    (1.0, 1, 1.0), (1.0, 9, 1.0), (0.5, 3, 0.5), (2, 5, 2.0),
    ("1/k", 1, 1.0), ("1/k", 4, 0.25), ("1/k", 8, 0.125), ("inv_k", 5, 0.2),
    ("1/sqrt(k)", 1, 1.0), ("1/sqrt(k)", 4, 0.5), ("1/sqrt(k)", 9, 1 / 3), ("inv_sqrt_k", 16, 0.25),
    ([2.0, 0.7, 0.3], 1, 2.0), ([2.0, 0.7, 0.3], 2, 0.7), ([2.0, 0.7, 0.3], 3, 0.3),
])
def test_lam_at_by_hand(lam, k, expected):
    assert lam_at(lam, k) == pytest.approx(expected, rel=1e-15)


def test_lam_at_refuses_k_outside_the_schedule():
    with pytest.raises(ValueError, match="needs λ_4"):
        lam_at([2.0, 0.7, 0.3], 4)
    with pytest.raises(ValueError, match="k >= 1"):
        lam_at("1/k", 0)
    with pytest.raises(ValueError, match="not a λ"):
        lam_at("1/x", 2)


def test_sum_ties_dare_and_svd_declare_lam():
    assert WITH_LAM == ["dare", "sum", "svd", "ties"]


@pytest.mark.parametrize("lam", SCHEDULES, ids=["1/k", "1/sqrt(k)", "list"])
@pytest.mark.parametrize("name", WITH_LAM)
def test_incremental_prefixes_equal_from_scratch_with_a_schedule(name, lam):
    """Each prefix k of the accumulator is the from-scratch merge of k deltas, and both are λ_k times
    the merge at λ = 1 (the accumulator counts its adds)."""
    g = torch.Generator().manual_seed(0)
    deltas = [{"a": torch.randn(6, 4, generator=g), "b": torch.randn(3, 5, generator=g)} for _ in range(7)]
    ids = [f"ad{i}" for i in range(7)]
    p, one = MergeParams(lam=lam, density=0.3, drop=0.4, rank=2, seed=5), MergeParams(density=0.3, drop=0.4, rank=2, seed=5)
    acc, acc_one = accumulator(name, p), accumulator(name, one)
    for k in range(1, 8):
        acc.add(deltas[k - 1], ids[k - 1])
        acc_one.add(deltas[k - 1], ids[k - 1])
        inc, scratch, unit = acc.result(), merge(name, deltas[:k], ids[:k], p), acc_one.result()
        for key in ("a", "b"):
            torch.testing.assert_close(inc[key], scratch[key], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(inc[key], lam_at(lam, k) * unit[key], rtol=1e-5, atol=1e-6)


def test_sum_with_lam_one_over_k_is_the_mean():
    """The oracle: λ_k = 1/k makes task arithmetic the mean, at every k, with dense and low-rank
    (LoRA factor) adds mixed, incrementally and from scratch."""
    g = torch.Generator().manual_seed(3)
    factors = [{"w": (torch.randn(6, 2, generator=g), torch.randn(2, 5, generator=g))} for _ in range(8)]
    dense = [densify(f) for f in factors]
    ids = [f"ad{i}" for i in range(8)]
    p = MergeParams(lam="1/k")
    total, mean = accumulator("sum", p), accumulator("mean", p)
    for k in range(1, 9):
        for acc in (total, mean):
            acc.add(dense[k - 1], ids[k - 1]) if k % 3 == 0 else acc.add_lowrank(factors[k - 1], ids[k - 1])
        if k in (1, 2, 3, 5, 8):  # read at uneven prefixes
            torch.testing.assert_close(expanded(total.result()["w"]), expanded(mean.result()["w"]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(merge("sum", dense[:k], ids[:k], p)["w"], merge("mean", dense[:k], ids[:k], p)["w"],
                                   rtol=1e-5, atol=1e-6)
    assert not torch.allclose(merge("sum", dense, ids, MergeParams())["w"], merge("mean", dense, ids, p)["w"])


RULE = "compose.lam: must be a number > 0, '1/sqrt(k)', '1/k' or a list of numbers > 0 (got "
SHORT = "compose.lam: a list needs λ_k for every k up to 3, the largest k composed; it has 2 (got "


@pytest.mark.parametrize("overrides,message", [
    (["compose.lam=0"], RULE + "0)"),
    (["compose.lam=-1"], RULE + "-1)"),
    (["compose.lam=1/x"], RULE + "'1/x')"),
    (["compose.lam=[1,0,0.5]"], RULE + "[1, 0, 0.5])"),
    (["compose.lam=true"], RULE + "True)"),
    (["compose.lam=[1,0.5]", "adapters.n=3"], SHORT + "[1.0, 0.5])"),  # k = 0..3 needs λ_1..λ_3
    (["compose.lam=[1,0.5]", "adapters.n=3", "compose.schedule=pow2"], SHORT + "[1.0, 0.5])"),  # k = 0, 1, 2, 3
])
def test_bad_lam_fails_naming_the_field(overrides, message):
    with pytest.raises(ConfigError) as e:
        validate(compose_cfg(overrides))
    assert str(e.value) == message


def test_a_short_list_is_refused_once_the_adapters_are_known():
    """Real worlds check the schedule in `stacking.stack` (`check_schedule`), where n is known."""
    check_schedule(ComposeConfig(lam=[1.0, 0.5, 0.3]), 3)
    check_schedule(ComposeConfig(lam=[1.0, 0.5], schedule=[0, 2]), 3)
    with pytest.raises(ConfigError, match=r"^compose.lam: a list needs λ_k for every k up to 3, the largest k composed; "
                                          r"it has 2 \(got \[1.0, 0.5\]\)$"):
        check_schedule(ComposeConfig(lam=[1.0, 0.5]), 3)


def test_bad_lam_fails_before_torch_is_imported():
    code = """
import sys
sys.path.insert(0, "tests")
from conftest import compose_cfg
from lora_lab.config import ConfigError, validate
for lam in ("0", "-1", "1/x", "[1,0]", "[1,0.5]"):
    try:
        validate(compose_cfg(["compose.lam=" + lam]))
        raise SystemExit("accepted " + lam)
    except ConfigError as e:
        assert str(e).startswith("compose.lam: "), e
assert "torch" not in sys.modules
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


@pytest.mark.parametrize("a,b", [
    ([], ["compose.lam=1"]),
    ([], ["compose.lam=1.0"]),
    (["compose.lam=inv_sqrt_k"], ["compose.lam='1/sqrt(k)'"]),
    (["compose.lam=inv_k"], ["compose.lam=1/k"]),
    (["compose.lam=[1,0.5,0.25]", "adapters.n=3"], ["compose.lam=[1.0,0.5,0.25]", "adapters.n=3"]),
])
def test_one_lam_one_stored_form(a, b):
    """Spellings of one λ are one setting: the same numbers config (so the same config hash)."""
    assert numbers_config(validate(compose_cfg(a))) == numbers_config(validate(compose_cfg(b)))


def test_the_default_lam_is_stored_as_before():
    c = validate(compose_cfg())
    assert c.compose.lam == 1.0 and isinstance(c.compose.lam, float)
    assert numbers_config(c)["compose.lam"] == 1.0
    assert validate(compose_cfg(["compose.lam='1/sqrt(k)'"])).compose.lam == "1/sqrt(k)"


def test_a_schedule_is_a_setting_of_its_own():
    """Rows with λ = 1 and λ = 1/k are different settings in the report, never pooled."""
    frames = []
    for i, lam in enumerate(("1", "1/k")):
        config = json.dumps(numbers_config(validate(compose_cfg([f"compose.lam={lam}"]))), sort_keys=True)
        frames.append(pd.DataFrame({"config_hash": f"h{i}", "config": config, "family": "lora", "merge": "sum",
                                    "seed": 0, "ordering": 0, "k": [0, 1, 2]}))
    df, fields = assign(pd.concat(frames, ignore_index=True))
    assert fields == ["compose.lam"]
    assert df.groupby("config_hash").setting.first().to_dict() == {"h0": "compose.lam=1.0", "h1": "compose.lam=1/k"}


def test_a_schedule_reaches_the_pipeline(tmp_path):
    """A real (tiny) run: sum with λ = 1/k gives the mean's numbers at every k, ordering by ordering."""
    from lora_lab.run import run

    cfg = compose_cfg([*TINY, f"cache_dir={tmp_path / 'cache'}", "compose.merge=[sum,mean]", "compose.lam=1/k",
                       "latency.enabled=false", "train.steps=10"])  # any base will do: the oracle is exact
    df = run(cfg, output_dir=tmp_path / "out")["results"]
    assert json.loads(df.config.iloc[0])["compose.lam"] == "1/k"
    metrics = [m.column for m in catalog.world("synthetic").metrics]
    total, mean = (df[df["merge"] == m].sort_values(["ordering", "k"]).reset_index(drop=True) for m in ("sum", "mean"))
    assert len(total) == 2 * 4 and list(total.k) == list(mean.k) and list(total.adapters.map(list)) == list(mean.adapters.map(list))
    np.testing.assert_allclose(total[metrics].to_numpy(float), mean[metrics].to_numpy(float), rtol=1e-5, atol=1e-6)


def test_a_method_declaring_lam_with_another_type_is_refused():
    """λ is one compose field: a method that shares it must share its type (`Any`), not only its default."""
    from lora_lab.catalog import MergeMethodSpec, Param

    bad = MergeMethodSpec("scaled", ("weight",), lambda d, i, p: d[0], lambda p: None, (Param("lam", 1.0, "λ"),))
    with pytest.raises(ValueError, match="parameter lam is typed <class 'float'>"):
        with catalog.registered(bad):
            pass
    assert "scaled" not in catalog.merges()
