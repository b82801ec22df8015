"""The catalog: plugins read from their own declarations, torch-free, meeting the contracts."""

import subprocess
import sys
from dataclasses import dataclass

import pytest

from conftest import ROOT
from lora_lab import catalog, contracts
from lora_lab.catalog import MergeMethodSpec, WorldSpec
from lora_lab.schema import Metric, Mode, core_metrics


def test_the_catalog_and_config_checks_import_no_torch():
    code = ("import sys, lora_lab.config\nfrom lora_lab import catalog\ncatalog.discover()\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'safetensors') if m in sys.modules)\n"
            "print(len(catalog.families()), len(catalog.merges()), len(catalog.worlds()), heavy)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # families: lora, steer, prompt, negative, two nulls, two joint references; worlds: synthetic, crows, seat, shapes
    assert r.stdout.split() == ["8", "7", "4", "[]"]


def test_the_listing_names_every_plugin_and_what_combines():
    r = subprocess.run([sys.executable, "-m", "lora_lab.catalog"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "steer      output-space  merge methods: sum, mean" in out
    assert "null_lora  weight-space  merge methods: composite, sum, dare, mean, svd, switch, ties  modes: merged, unmerged  control of: lora" in out
    assert "null_steer output-space  merge methods: sum, mean  modes: hooks  control of: steer" in out
    assert "ties       spaces: weight  parameters: lam=1.0, density=0.2" in out
    assert "seat       models: encoder (pretrained)" in out


def test_every_shipped_plugin_meets_its_contract():
    assert all(isinstance(f, contracts.Family) for f in catalog.families().values())
    assert all(isinstance(m, contracts.MergeMethod) for m in catalog.merges().values())
    for name, f in catalog.families().items():
        assert f.modes and all(m.family == name for m in f.modes), name
        assert f.modes[0].column == "latency_ms"  # the deployed mode fills the shared column
    # a world's task, built around its data (the synthetic world needs no files)
    from lora_lab.worlds.synthetic.config import SyntheticWorldConfig

    task = catalog.build_task(SyntheticWorldConfig(roles=4), 0)
    assert isinstance(task, contracts.Task) and task.world.fingerprint


@dataclass
class _Cfg:
    name: str = "bad"


class _Family:
    name, space, schema, trainable, factored, label, color = "odd", "latent", _Cfg, False, False, "odd", "#000"
    modes = ()


def test_registration_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match=r"space 'latent', valid: \['weight', 'output', 'input'\]"):
        catalog.register_family(_Family())
    with pytest.raises(ValueError, match="merge method 'sum' is registered twice"):
        catalog.register_merge(MergeMethodSpec("sum", ("weight",), None, None))
    with pytest.raises(ValueError, match=r"spaces \['latent'\]"):
        catalog.register_merge(MergeMethodSpec("odd", ("latent",), None, None))
    quality = Metric("q", "q", "u", "lower", "quality", primary=True)
    with pytest.raises(ValueError, match=r"world bad: declares no \['removal_gap'\]"):
        catalog.register_world(WorldSpec("bad", _Cfg, None, None, (quality, *core_metrics("g", "d", "u", "x")[:3])))
    with pytest.raises(ValueError, match="no primary quality metric"):
        catalog.register_world(WorldSpec("bad", _Cfg, None, None, core_metrics("g", "d", "u", "x")))
    with pytest.raises(ValueError, match="role 'speed'"):
        Metric("x", "x", "u", "lower", "speed")
    with pytest.raises(ValueError, match="expect 'fast'"):
        Mode("lora", "x", "a", "b", "fast", "claim")
    assert not {"bad", "odd"} & {*catalog.worlds(), *catalog.families(), *catalog.merges()}


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"world.name: unknown world 'imagenet', valid: \['crows', 'seat', 'shapes', 'synthetic'\]"):
        catalog.world("imagenet")
    with pytest.raises(ValueError, match=r"compose.merge: unknown merge method 'slerp', valid: \["):
        catalog.merge_method("slerp")


def test_registering_a_present_plugin_for_a_block_leaves_it_registered():
    steer, ties = catalog.family("steer"), catalog.merge_method("ties")
    with catalog.registered(steer, ties):
        pass
    assert catalog.family("steer") is steer and catalog.merge_method("ties") is ties


def test_a_merge_parameter_may_not_take_a_compose_field_or_the_seed():
    for name in ("seed", "orderings", "merge"):
        bad = MergeMethodSpec("odd", ("weight",), None, None, (catalog.Param(name, 1, "x"),))
        with pytest.raises(ValueError, match=f"parameter names \\['{name}'\\] are taken"):
            catalog.register_merge(bad)
    assert "odd" not in catalog.merges()


def test_a_family_without_modes_and_a_world_collapsing_on_nothing_are_refused():
    class Modeless(_Family):
        space = "weight"

    with pytest.raises(ValueError, match="declares no inference mode"):
        catalog.register_family(Modeless())
    quality = Metric("q", "q", "u", "lower", "quality", primary=True)
    with pytest.raises(ValueError, match="collapse names 'mass', which it does not declare"):
        catalog.register_world(WorldSpec("bad", _Cfg, None, None, (quality, *core_metrics("g", "d", "u", "x")),
                                          collapse="mass"))


def test_the_compose_schema_pickles_by_reference():
    """Launchers ship configs to other processes; the schema built from the methods' parameters
    must pickle like a class written in config.py."""
    import pickle

    from lora_lab import config

    c = config.ComposeConfig(merge=["ties"], density=0.3)
    assert type(c).__module__ == "lora_lab.config"
    assert pickle.loads(pickle.dumps(c)) == c
