"""Adapters trained together vs one at a time: the wall-time ratio, on the default model.

N adapters per family (LoRA and steering), each on its own target's corpus of the 64-role world
(the `+experiments=scale` setting), trained `--steps` steps of `adapters.batch_size` sequences:
once one after another (`Family.train`, as with `adapters.together=1`) and once in one batched pass
per `--together` adapters (`Family.train_many`, the default). Both in this process, on the same
base and data; the ratio is the speed-up. Step time does not depend on the weights, so the base is
freshly initialised (no pretraining). Also prints how far the two sets of adapters are apart
(max |Δ| ÷ max |·| over each stored tensor) and the peak RSS of the process.

    python bench/bench_together.py [--n 128] [--steps 20] [--together 128] [--threads 0]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import load_file

from lora_lab import catalog
from lora_lab.adapters.stage import adapter_seed
from lora_lab.config import AdaptersConfig, ModelConfig
from lora_lab.model.build import build_model
from lora_lab.model.handle import HFTextModel
from lora_lab.threads import job_threads
from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.task import SyntheticTask
from lora_lab.worlds.synthetic.world import SyntheticWorld
from lora_lab.worlds.tokenizer import build_tokenizer

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def stored(d: Path):
    return load_file(str(next(d.glob("*.safetensors"))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="adapters per family")
    ap.add_argument("--roles", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="training steps per adapter (the default budget is 120)")
    ap.add_argument("--together", type=int, default=128, help="adapters per batched pass")
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0: the job's cores (lora_lab/threads.py)")
    ap.add_argument("--families", default="lora,steer")
    args = ap.parse_args()
    torch.set_num_threads(job_threads(args.threads))
    world = SyntheticWorld(SyntheticWorldConfig(roles=args.roles))
    task = SyntheticTask(world)
    tok = build_tokenizer(world.vocab)
    model = build_model(ModelConfig(name="tiny_gpt2"), tok, seed=0).eval()
    base = SimpleNamespace(handle=HFTextModel(model, tok), model=model, tokenizer=tok)
    acfg = AdaptersConfig(steps=args.steps)
    targets = task.bias_targets("rebalance", args.n)
    seeds = [adapter_seed(0, t) for t in targets]
    objectives = [task.objective(t, tok, acfg, s) for t, s in zip(targets, seeds)]
    print(f"{args.n} adapters per family, {args.steps} steps of {acfg.batch_size} sequences each, default model "
          f"(2-layer d=128 GPT-2), {torch.get_num_threads()} thread(s)")
    print(f"   {'family':<7} {'one at a time':>14} {'together':>10} {'ratio':>7} {'max rel. diff':>14}")
    for name in args.families.split(","):
        fam = catalog.family(name)
        fcfg = fam.schema()
        with tempfile.TemporaryDirectory() as tmp:
            alone = [Path(tmp) / f"alone{i}" for i in range(args.n)]
            together = [Path(tmp) / f"together{i}" for i in range(args.n)]
            for d in alone + together:
                d.mkdir()
            t0 = time.perf_counter()
            for o, s, d in zip(objectives, seeds, alone):
                fam.train(base, fcfg, o, acfg, s, d, False, "")
            t_alone = time.perf_counter() - t0
            t0 = time.perf_counter()
            for lo in range(0, args.n, args.together):
                part = slice(lo, lo + args.together)
                fam.train_many(base, fcfg, objectives[part], acfg, seeds[part], together[part], False, "")
            t_together = time.perf_counter() - t0
            diff = max(float((sb[k] - sa[k]).abs().max() / sa[k].abs().max())
                       for a, b in zip(alone, together) for sa, sb in [(stored(a), stored(b))] for k in sa)
        print(f"   {name:<7} {t_alone:>12.1f} s {t_together:>8.1f} s {t_alone / t_together:>6.2f}x {diff:>14.1e}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
