"""Probe evaluation throughput: lora_lab's batched probes vs one forward pass per prompt.

Both paths run in this process on the same model and prompts; the ratio is what to quote.
    python bench/bench_eval.py [--roles 256] [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lora_lab.config import ModelConfig
from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.probes import attribute_distributions
from lora_lab.latency import median_ms
from lora_lab.model.build import build_model
from lora_lab.worlds.synthetic.world import SyntheticWorld
from lora_lab.worlds.tokenizer import build_tokenizer


def unbatched(model, tok, world):
    """The straightforward baseline: one forward pass per neutral prompt."""
    out = {}
    for ax in world.axes:
        ids = tok.convert_tokens_to_ids(list(ax.values))
        rows = []
        for r in range(len(world.roles)):
            enc = torch.tensor([tok(world.neutral_prompt(r, ax.name))["input_ids"]])
            with torch.no_grad():
                rows.append(torch.softmax(model(input_ids=enc).logits[0, -1, ids].double(), -1).numpy())
        out[ax.name] = np.stack(rows)
    return out


def median_seconds(fn, repeats: int) -> float:
    return median_ms(fn, repeats, warmup=1) / 1000  # one untimed warm-up call


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roles", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    world = SyntheticWorld(SyntheticWorldConfig(roles=args.roles))
    tok = build_tokenizer(world.vocab)
    model = build_model(ModelConfig(name="tiny_gpt2"), tok, seed=0).eval()
    a, b = attribute_distributions(model, tok, world), unbatched(model, tok, world)
    for ax in world.axes:  # same numbers, or the comparison means nothing
        np.testing.assert_allclose(a[ax.name], b[ax.name], rtol=1e-4, atol=1e-6)
    n = len(world.axes) * len(world.roles)
    t_batched = median_seconds(lambda: attribute_distributions(model, tok, world), args.repeats)
    t_loop = median_seconds(lambda: unbatched(model, tok, world), args.repeats)
    print(f"attribute distributions, {n} neutral prompts ({args.roles} roles), torch threads={torch.get_num_threads()}")
    print(f"  one prompt per forward : {t_loop * 1e3:8.1f} ms  ({n / t_loop:8.0f} prompts/s)")
    print(f"  lora_lab batched       : {t_batched * 1e3:8.1f} ms  ({n / t_batched:8.0f} prompts/s)")
    print(f"  speed-up               : {t_loop / t_batched:8.1f}x")


if __name__ == "__main__":
    main()
