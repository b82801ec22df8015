"""The stacking sweep's job order: seeds varied fastest, families next, whatever order the sweep keys came in."""

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.lora_lab_sweeper import SeedsLastSweeper

ARGS = ["family=lora,steer", "seed=0,1,2", "compose.lam=1,1/k", "+sweep=stacking"]


def _jobs(sweeper, args):
    [batch] = sweeper.split_arguments(OverridesParser.create().parse_overrides(list(args)), None)
    return [dict(o.split("=", 1) for o in job) for job in batch]


def test_seeds_vary_fastest_and_the_set_of_jobs_is_the_basic_sweepers():
    jobs = _jobs(SeedsLastSweeper, ARGS)
    assert len(jobs) == 12
    assert [j["seed"] for j in jobs[:4]] == ["0", "1", "2", "0"]  # side by side: different seeds of one setting
    # a setting's families one after the other, then the next setting: a family's first jobs come long
    # before the same seed and family under another λ
    assert [(j["compose.lam"], j["family"]) for j in jobs[::3]] == [("1", "lora"), ("1", "steer"), ("1/k", "lora"),
                                                                   ("1/k", "steer")]
    assert all(j["+sweep"] == "stacking" for j in jobs)
    basic = _jobs(BasicSweeper, ARGS)
    assert sorted(map(sorted, (j.items() for j in basic))) == sorted(map(sorted, (j.items() for j in jobs)))
    assert [j["seed"] for j in basic[:2]] == ["0", "0"]  # the basic order would put one seed's λs side by side


def test_a_sweep_without_seeds_varies_its_families_fastest():
    assert _jobs(SeedsLastSweeper, ["family=lora,steer", "compose.lam=1,2"]) == [
        {"compose.lam": "1", "family": "lora"}, {"compose.lam": "1", "family": "steer"},
        {"compose.lam": "2", "family": "lora"}, {"compose.lam": "2", "family": "steer"}]
    args = ["compose.lam=1,2", "adapters.n=4,8"]  # neither key: the basic order
    assert _jobs(SeedsLastSweeper, args) == _jobs(BasicSweeper, args)
