"""What every input-space family shares (`family=prompt`, `family=negative`): no parameters, no
training, the model left as it is; the task's rule acts on the inputs instead (`rule`, `deployed`).
A module whose name starts with "_" is not a plugin: the catalog does not import it by itself."""

from __future__ import annotations

from contextlib import nullcontext


class InputFamily:
    space = "input"
    trainable = False
    factored = False
    format = 1

    def train(self, *args, **kwargs):
        raise TypeError(f"the {self.name} family has nothing to train")

    def load(self, path):
        raise TypeError(f"the {self.name} family has nothing to load")

    def apply(self, handle, tensors):
        return nullcontext(handle.module)  # the model is untouched: the inputs change instead

    def time_modes(self, handle, adapters, ks, time, flops):
        return {}
