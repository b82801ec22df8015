"""`hydra/sweeper=seeds_last`: Hydra's basic sweeper with `seed` varied fastest and `family` next.

The basic sweeper runs the cartesian product of the sweep's values in the order the keys were
given, the last key fastest; an experiment file that adds a key (`compose.lam: 1,1/k,inv_sqrt_k`)
appends it after the sweep's `family` and `seed`. Jobs of one seed share its base model, and jobs
of one seed and family its adapters (cached by content), so with that order the jobs running side
by side (joblib, one per core) are the same seed and family under another λ: the second waits on
the first's cache lock while it trains, and its core idles. With the seeds varied fastest and the
families next, the jobs side by side are different seeds, each building its own base and adapters,
and a setting's later jobs of a seed come after every family's first ones and find them cached.
The set of jobs is the same; only their order (and so `hydra.job.num`) differs.
"""

from dataclasses import dataclass
from typing import List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override

SEED, FAMILY = "seed", "family"


@dataclass
class SeedsLastSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.lora_lab_sweeper.SeedsLastSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="seeds_last", node=SeedsLastSweeperConf, provider="lora_lab")


class SeedsLastSweeper(BasicSweeper):
    @staticmethod
    def split_arguments(overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        """The basic sweeper's batches, with `family` and then `seed` moved last (`seed` varied fastest)."""
        last = sorted(overrides, key=lambda o: (o.get_key_element() == SEED, o.get_key_element() == FAMILY))  # stable
        return BasicSweeper.split_arguments(last, max_batch_size)
