"""`hydra/sweeper=seeds_last`: Hydra's basic sweeper with `seed` varied fastest.

The basic sweeper runs the cartesian product of the sweep's values in the order the keys were
given, the last key fastest; an experiment file that adds a key (`compose.lam: 1,1/k,inv_sqrt_k`)
appends it after the sweep's `seed`. Jobs of one seed share its base model and adapters (cached by
content), so with that order the jobs running side by side (joblib, one per core) are the same
seed under another λ: the second waits on the first's cache lock while it trains the base, and its
core idles. With the seeds varied fastest, the jobs side by side are different seeds, each
building its own base and adapters, and the later settings of a seed find them in the cache.
The set of jobs is the same; only their order (and so `hydra.job.num`) differs.
"""

from dataclasses import dataclass
from typing import List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper, BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.types import Override

SEED = "seed"


@dataclass
class SeedsLastSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.lora_lab_sweeper.SeedsLastSweeper"


ConfigStore.instance().store(group="hydra/sweeper", name="seeds_last", node=SeedsLastSweeperConf, provider="lora_lab")


class SeedsLastSweeper(BasicSweeper):
    @staticmethod
    def split_arguments(overrides: List[Override], max_batch_size: Optional[int]) -> List[List[List[str]]]:
        """The basic sweeper's batches, with the `seed` key moved last (varied fastest)."""
        last = sorted(overrides, key=lambda o: o.get_key_element() == SEED)  # stable: the others keep their order
        return BasicSweeper.split_arguments(last, max_batch_size)
