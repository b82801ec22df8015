"""Peak memory of composing many LoRA adapters into a ~1B-parameter model, on CPU.

A Llama-architecture model of about 1B parameters, randomly initialised (float32; nothing is
downloaded), and `--n` random rank-`--rank` LoRA adapters on every attention and MLP projection, held
as factors. The sum of all of them goes into the weights in place the way a stack does
(`merges` sum accumulator: each module's sum an unexpanded `LowRank`, added with one `addmm_` per
module, factors concatenated one module at a time). Printed: the model's parameter bytes, the
factors' bytes, the process's RSS holding both, and its peak while composing (Linux's VmHWM,
restarted once model and factors are built), as (peak − factor bytes) ÷ parameter bytes and as
peak ÷ (parameter bytes + factor bytes). Also checks one module against its dense sum computed
independently (float64).

    python bench/bench_compose_large.py [--n 256] [--rank 8] [--layers 16] [--hidden 2048]
"""

from __future__ import annotations

import argparse
import time

import torch


def status_gib(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak resident since start or the last `reset_peak`) from /proc/self/status."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20  # kB
    raise KeyError(field)


def reset_peak() -> None:
    """Restart VmHWM from the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="adapters")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=5504)
    ap.add_argument("--vocab", type=int, default=32000)
    args = ap.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    from lora_lab.interventions import add_into
    from lora_lab.merges import MergeParams, accumulator
    from lora_lab.model.handle import LORA_TARGETS

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                      num_attention_heads=16, num_key_value_heads=16, vocab_size=args.vocab)
    t0 = time.perf_counter()
    with torch.no_grad():
        model = LlamaForCausalLM(cfg).eval()
    model.requires_grad_(False)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"Llama, {args.layers} layers, hidden {args.hidden}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B "
          f"parameters, {model_bytes / 2**30:.2f} GiB (built in {time.perf_counter() - t0:.0f} s)")
    suffixes = tuple(LORA_TARGETS["llama"])
    modules = {n: m for n, m in model.named_modules() if n.endswith(suffixes) and isinstance(m, torch.nn.Linear)}
    adapters = []
    for i in range(args.n):
        # (left [out, r], right [r, in]) per module, as lora_factors gives them: small random deltas
        adapters.append({n: (torch.randn(m.out_features, args.rank) * 1e-3, torch.randn(args.rank, m.in_features) * 1e-3)
                         for n, m in modules.items()})
    factor_bytes = sum(t.numel() * t.element_size() for a in adapters for pair in a.values() for t in pair)
    probe = next(iter(modules))
    w0 = modules[probe].weight.detach().double().clone()
    built_peak = status_gib("VmHWM")
    reset_peak()
    held = status_gib("VmRSS")
    print(f"{args.n} rank-{args.rank} adapters on {len(modules)} modules: factors {factor_bytes / 2**30:.2f} GiB; "
          f"RSS {held:.2f} GiB holding them and the model (peak while building them {built_peak:.2f} GiB)")
    t0 = time.perf_counter()
    acc = accumulator("sum", MergeParams())
    for i, a in enumerate(adapters):
        acc.add_lowrank(a, f"a{i}")
    add_into(model, acc.result())
    seconds = time.perf_counter() - t0
    peak = status_gib("VmHWM")
    expect = w0 + sum(a[probe][0].double() @ a[probe][1].double() for a in adapters)
    err = float((modules[probe].weight.double() - expect).abs().max() / (expect - w0).abs().max())
    base = (model_bytes + factor_bytes) / 2**30
    print(f"composed in {seconds:.1f} s; peak RSS while composing {peak:.2f} GiB (+{peak - held:.2f} GiB) = "
          f"{(peak - factor_bytes / 2**30) / (model_bytes / 2**30):.3f} x the parameter bytes + the factor bytes "
          f"= {peak / base:.3f} x (parameters + factors)")
    print(f"{probe}: max |W - (W0 + sum, float64)| = {err:.1e} of the summed delta's largest entry (float32 rounding of W)")


if __name__ == "__main__":
    main()
