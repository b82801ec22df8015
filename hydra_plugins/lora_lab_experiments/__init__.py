"""Makes the repository's `experiments/` folder the `experiments` config group, from any cwd:
`python -m lora_lab.run +sweep=stacking +experiments=merge_methods`."""

from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ROOT = Path(__file__).resolve().parents[2]  # the checkout: experiments/ lives here


class LoraLabExperiments(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="lora_lab-experiments", path=f"file://{ROOT}")
