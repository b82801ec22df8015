"""Scale benchmarks: composing k LoRA adapters, evaluating compositions, training adapters.

Every speed is a ratio against a baseline measured in this same run, on the same model and data:
1. compose-k: lora_lab (one fused product per module, applied and restored bit-exactly) vs the
   straightforward PEFT path (`merge_adapter(adapter_names=first k)` then `unmerge_adapter()`,
   from scratch for each subset), for k = 1, 8, 32, 128; and a whole pow2 curve 0..N, which
   lora_lab builds incrementally while PEFT merges each prefix from scratch.
2. evaluation throughput: evaluated compositions per second along that curve, each path composing
   its own way and then running the same probes.
3. adapter training throughput: optimiser steps per second for LoRA and steering vs full
   fine-tuning of the same model on the same batches.

Speeds do not depend on what the weights are, so the base is freshly initialised (no pretraining)
and the adapters are random (PEFT `init_lora_weights=False`).

    python bench/bench_scale.py [--n 128] [--d-model 128] [--n-layer 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict

from lora_lab.families.lora import lora_factors
from lora_lab.families.steer import frozen, site_views
from lora_lab.config import ComposeConfig, ModelConfig
from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic import metrics as M
from lora_lab.interventions import steering, weight_edit
from lora_lab.latency import median_ms
from lora_lab.merges import MergeParams, accumulator
from lora_lab.merges.lowrank import fused_sum
from lora_lab.model.build import build_model
from lora_lab.model.handle import LORA_TARGETS, HFTextModel
from lora_lab.worlds.synthetic.task import SyntheticTask
from lora_lab.training import LMObjective, encode_pairs, train
from lora_lab.worlds.synthetic.world import SyntheticWorld
from lora_lab.worlds.tokenizer import build_tokenizer

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def median_seconds(fn, repeats: int) -> float:
    return median_ms(fn, repeats, warmup=1) / 1000  # one untimed warm-up call


def peft_with_adapters(model, n: int, rank: int, alpha: float, seed: int):
    """`model` wrapped by PEFT with n random LoRA adapters a0..a{n-1} on every attention/MLP projection."""
    torch.manual_seed(seed)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS["gpt2"], fan_in_fan_out=True,
                     init_lora_weights=False)  # random B too: every adapter changes the weights
    pm = get_peft_model(model, cfg, adapter_name="a0")
    for i in range(1, n):
        pm.add_adapter(f"a{i}", cfg)
    factors = [lora_factors(get_peft_model_state_dict(pm, adapter_name=f"a{i}"), alpha / rank, True) for i in range(n)]
    return pm, factors


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="adapters")
    ap.add_argument("--roles", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=30)
    args = ap.parse_args()
    torch.manual_seed(0)
    world = SyntheticWorld(SyntheticWorldConfig(roles=args.roles))
    tok = build_tokenizer(world.vocab)
    mcfg = ModelConfig(name="tiny_gpt2", d_model=args.d_model, n_layer=args.n_layer)
    model = build_model(mcfg, tok, seed=0).eval()
    base = copy.deepcopy(model)  # lora_lab edits this one; PEFT wraps `model`
    pm, factors = peft_with_adapters(model, args.n, args.rank, 2.0 * args.rank, seed=1)
    names = [f"a{i}" for i in range(args.n)]
    print(f"{args.n} LoRA adapters (rank {args.rank}) on a {args.n_layer}-layer d={args.d_model} GPT-2, "
          f"{len(factors[0])} adapted modules each; torch threads={torch.get_num_threads()}; "
          f"median of {args.repeats} after a warm-up")

    def peft_compose(k):
        pm.base_model.merge_adapter(adapter_names=names[:k])
        pm.base_model.unmerge_adapter()

    def ours_compose(k):
        with weight_edit(base, fused_sum(factors[:k])):
            pass

    # Same weights, or the comparison means nothing.
    k_check = min(8, args.n)
    pm.base_model.merge_adapter(adapter_names=names[:k_check])
    with weight_edit(base, fused_sum(factors[:k_check])):
        for name, p in base.named_parameters():
            torch.testing.assert_close(p, pm.base_model.model.get_parameter(name), rtol=1e-4, atol=1e-5)
    pm.base_model.unmerge_adapter()

    print("\n1. compose k adapters into the weights and restore (from scratch)")
    print(f"   {'k':>5} {'PEFT merge_adapter':>20} {'lora_lab fused':>16} {'ratio':>8}")
    for k in [k for k in (1, 8, 32, 128, 256) if k <= args.n]:
        t_peft = median_seconds(lambda: peft_compose(k), args.repeats)
        t_ours = median_seconds(lambda: ours_compose(k), args.repeats)
        print(f"   {k:>5} {t_peft * 1e3:>17.2f} ms {t_ours * 1e3:>13.2f} ms {t_peft / t_ours:>7.1f}x")

    ks = ComposeConfig(schedule="pow2").ks(args.n)[1:]

    def peft_curve(evaluate=None):
        for k in ks:
            pm.base_model.merge_adapter(adapter_names=names[:k])
            if evaluate:
                evaluate(pm)
            pm.base_model.unmerge_adapter()

    def ours_curve(evaluate=None):
        acc, done = accumulator("sum", MergeParams()), 0
        for k in ks:
            for f, name in zip(factors[done:k], names[done:k]):
                acc.add_lowrank(f, name)
            done = k
            with weight_edit(base, acc.result()):
                if evaluate:
                    evaluate(base)

    t_peft = median_seconds(peft_curve, args.repeats)
    t_ours = median_seconds(ours_curve, args.repeats)
    print(f"\n   whole curve k = {ks[0]}, {ks[1]}, ..., {ks[-1]} ({len(ks)} compositions): PEFT {t_peft * 1e3:.1f} ms, "
          f"lora_lab incremental {t_ours * 1e3:.1f} ms, ratio {t_peft / t_ours:.1f}x")

    task = SyntheticTask(world)
    ref = M.reference(base, tok, world)
    targets = task.bias_targets("rebalance", min(args.n, args.roles * len(world.axes)))

    def evaluate(m):
        task.evaluate(m, tok, ref, targets[: len(targets) // 2], targets)

    reps = max(1, args.repeats // 2)
    t_peft = median_seconds(lambda: peft_curve(evaluate), reps)
    t_ours = median_seconds(lambda: ours_curve(evaluate), reps)
    print("\n2. evaluation throughput along that curve (compose + the full probe set per composition)")
    print(f"   PEFT {len(ks) / t_peft:.2f} compositions/s, lora_lab {len(ks) / t_ours:.2f} compositions/s, "
          f"ratio {t_peft / t_ours:.2f}x")

    pm.unload()  # LoRA layers out: the training runs below start from the bare base
    target = targets[0]
    objective = LMObjective(encode_pairs(tok, world.adapter_corpus(target, 64, 0.5, seed=0)), tok.pad_token_id)
    steps, bs = args.train_steps, 32

    def full_ft():
        m = copy.deepcopy(base).train()
        train(m, [p for p in m.parameters()], objective, steps=steps, batch_size=bs, lr=1e-4, seed=0, progress=False)

    def lora_ft():
        m = get_peft_model(copy.deepcopy(base), LoraConfig(r=args.rank, lora_alpha=2.0 * args.rank, fan_in_fan_out=True,
                                                          target_modules=LORA_TARGETS["gpt2"]))
        train(m, [p for p in m.parameters() if p.requires_grad], objective, steps=steps, batch_size=bs, lr=3e-3, seed=0,
              progress=False)

    def steer_ft():
        m = copy.deepcopy(base)
        sites = HFTextModel(m, tok).steer_sites()
        flat = torch.zeros(sum(int(torch.Size(s).numel()) for s in sites.values()), requires_grad=True)
        with frozen(m), steering(m, site_views(flat, sites)):
            train(m, [flat], objective, steps=steps, batch_size=bs, lr=3e-2, seed=0, progress=False)

    reps = max(1, args.repeats // 2)
    t_full, t_lora, t_steer = (median_seconds(f, reps) for f in (full_ft, lora_ft, steer_ft))
    print(f"\n3. adapter training throughput ({steps} steps of {bs} sequences)")
    for label, t in (("full fine-tuning", t_full), ("LoRA", t_lora), ("steering", t_steer)):
        print(f"   {label:<17} {steps / t:7.1f} steps/s  ({t_full / t:.2f}x full fine-tuning)")


if __name__ == "__main__":
    main()
