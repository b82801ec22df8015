"""Loading N LoRA adapters unmerged into one PEFT model: PEFT's `load_adapter` one after the
other against `families.lora.unmerged`'s loader, and forward passes with all N active.

The unmerged inference mode (latency of a stack with its adapters kept apart) loads every adapter
of a curve into one PEFT model. `load_adapter` walks every module of the model each time, the
LoRA layers already loaded included, so N adapters cost O(N²) walks; `unmerged` adds each
adapter through the adapted layers' own `update_layer` and copies its saved factors in (each layer
still visits its own adapters at each addition: cheaper, not linear). Both build the same model
(checked here: every parameter equal). Random rank-`--rank` adapters on the attention
and MLP projections of a GPT-2 of `model=small`'s size (2 layers, d = 256), saved by PEFT;
nothing is trained. Printed: seconds per load for each N (PEFT's first, then `unmerged`'s, one after
the other in this process) and their ratio, and the median time of 5 forward passes with all N
active (32 sequences of 12 tokens, one thread).

    python bench/bench_unmerged.py [--n 64 256] [--rank 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch


def adapters(model, n: int, rank: int, root: Path):
    """n PEFT adapter directories with random factors (B nonzero), as the LoRA family saves them."""
    from peft import LoraConfig, get_peft_model

    from lora_lab.model.handle import LORA_TARGETS

    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(LORA_TARGETS["gpt2"]), fan_in_fan_out=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(model, cfg)
    out = []
    for i in range(n):
        torch.manual_seed(i)
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.data.normal_(0, 0.02)
        pm.save_pretrained(str(root / f"a{i}"))
        out.append(SimpleNamespace(path=root / f"a{i}", scale=1.0))
    pm.unload()
    model.__dict__.pop("peft_config", None)
    return out


def peft_loaded(model, ads):
    """PEFT's own way: `from_pretrained` then `load_adapter` for each further adapter."""
    from peft import PeftModel

    names = [f"a{i}" for i in range(len(ads))]
    pm = PeftModel.from_pretrained(model, str(ads[0].path), adapter_name=names[0])
    for name, ad in zip(names[1:], ads[1:]):
        pm.load_adapter(str(ad.path), adapter_name=name)
    pm.base_model.set_adapter(names, inference_mode=True)
    return pm


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[64, 256], help="adapters loaded")
    ap.add_argument("--rank", type=int, default=4)
    args = ap.parse_args()
    from transformers import GPT2Config, GPT2LMHeadModel

    from lora_lab import catalog

    catalog.family("lora")  # registers every family in order (the joint ones need theirs first)
    from lora_lab.families.lora import unmerged

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = GPT2LMHeadModel(GPT2Config(n_embd=256, n_layer=2, n_head=8, vocab_size=600, n_positions=64,
                                       bos_token_id=0, eos_token_id=0)).eval()
    ids = torch.randint(0, 600, (32, 12))
    with tempfile.TemporaryDirectory() as tmp:
        ads = adapters(model, max(args.n), args.rank, Path(tmp))
        print(f"{'N':>6} {'peft s':>8} {'unmerged s':>11} {'ratio':>6} {'forward ms':>11}")
        for n in args.n:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pm = peft_loaded(model, ads[:n])
            t_peft = time.perf_counter() - t0
            expected = {k: v.clone() for k, v in pm.state_dict().items()}
            pm.unload()
            model.__dict__.pop("peft_config", None)
            t0 = time.perf_counter()
            with unmerged(model, ads[:n]) as activate:
                t_mine = time.perf_counter() - t0
                mine = activate(n)
                state = mine.state_dict()
                assert set(state) == set(expected) and all(torch.equal(state[k], v) for k, v in expected.items())
                passes = []
                with torch.no_grad():
                    mine(input_ids=ids)  # warm-up
                    for _ in range(5):
                        t1 = time.perf_counter()
                        mine(input_ids=ids)
                        passes.append((time.perf_counter() - t1) * 1e3)
                forward = statistics.median(passes)
            print(f"{n:>6} {t_peft:>8.2f} {t_mine:>11.2f} {t_peft / t_mine:>6.1f} {forward:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
