"""Threads that fit the job: a training step beside a busy process, and a sweep's jobs side by side.

1. Step time: LoRA training steps of the default model (the adapter stage's step: 32 sequences)
   in a fresh process, with torch's threads as a job sets them (`threads=0`: lora_lab/threads.py)
   and, for reference, with one thread per core whatever else runs (torch's own default) — each on
   a quiet machine and beside one busy process (a Python loop that never sleeps). Prints each
   time and the ratio busy ÷ quiet.
2. A sweep: the default sweep's three families (lora, steer, prompt; one seed) one job after the
   other (`hydra/launcher=basic`) and three jobs at once (`hydra/launcher=joblib
   hydra.launcher.n_jobs=3`), each from a copy of one cache that holds the base (pretrained once,
   first), so both time the same work. Prints both wall times and their ratio.

    python bench/bench_threads.py [--steps 60] [--skip-sweep] [--sweep-args "adapters.n=8"]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STEP = r"""
import sys, time, warnings
warnings.filterwarnings("ignore")
import torch
from lora_lab.config import AdaptersConfig, ModelConfig
from lora_lab.families.lora import LoraFamily, LoraFamilyConfig
from lora_lab.model.build import build_model
from lora_lab.model.handle import HFTextModel
from lora_lab.threads import job_threads
from lora_lab.training import train
from lora_lab.worlds.synthetic.config import SyntheticWorldConfig
from lora_lab.worlds.synthetic.task import SyntheticTask
from lora_lab.worlds.synthetic.world import SyntheticWorld
from lora_lab.worlds.tokenizer import build_tokenizer

threads = int(sys.argv[2]) if sys.argv[2] != "job" else job_threads()
torch.set_num_threads(threads)
steps = int(sys.argv[1])
world = SyntheticWorld(SyntheticWorldConfig())
task, tok = SyntheticTask(world), build_tokenizer(world.vocab)
model = build_model(ModelConfig(name="tiny_gpt2"), tok, seed=0)
objective = task.objective(task.bias_targets("rebalance", 1)[0], tok, AdaptersConfig(), 0)
fam = LoraFamily()
with fam.wrapped(model, fam.peft_config(HFTextModel(model, tok), LoraFamilyConfig()), 0) as pm:
    params = [p for p in pm.parameters() if p.requires_grad]
    train(pm, params, objective, steps=5, batch_size=32, lr=3e-3, seed=0, progress=False)  # warm-up
    res = train(pm, params, objective, steps=steps, batch_size=32, lr=3e-3, seed=0, progress=False)
print(threads, res.seconds / steps * 1000)
"""


def step_ms(steps: int, threads: str) -> tuple:
    out = subprocess.run([sys.executable, "-c", STEP, str(steps), threads], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    return int(out[0]), float(out[1])


def busy():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def sweep(cache: Path, out: Path, launcher, extra) -> float:
    env = {**os.environ, "LORA_LAB_CACHE": str(cache), "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lora_lab.run", "+sweep=stacking", "family=lora,steer,prompt", "seed=0",
                    "progress=false", f"hydra.sweep.dir={out}", *launcher, *extra], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--sweep-args", default="", help="overrides for both sweeps, space-separated")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"1. LoRA training step of the default model (32 sequences), {cores} cores")
    print(f"   {'threads':<28} {'quiet':>9} {'beside a busy process':>22} {'ratio':>7}")
    for label, threads in (("as a job sets them", "job"), (f"{cores} (one per core, always)", str(cores))):
        n_quiet, quiet = step_ms(args.steps, threads)
        hog = busy()
        try:
            time.sleep(0.5)
            n_busy, loaded = step_ms(args.steps, threads)
        finally:
            hog.kill()
            hog.wait()
        print(f"   {label:<28} {quiet:6.1f} ms ({n_quiet}) {loaded:12.1f} ms ({n_busy}) {loaded / quiet:6.2f}x")
    if args.skip_sweep:
        return
    extra = args.sweep_args.split()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "LORA_LAB_CACHE": str(tmp / "base"), "WANDB_MODE": "disabled"}
        subprocess.run([sys.executable, "-m", "lora_lab.pretrain", "seed=0", "progress=false", f"hydra.run.dir={tmp / 'pt'}",
                        *extra], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times = {}
        for name, launcher in (("serial", ["hydra/launcher=basic"]),
                               ("joblib, 3 jobs", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"])):
            cache = tmp / name.split(",")[0]
            shutil.copytree(tmp / "base", cache)
            times[name] = sweep(cache, tmp / f"out-{cache.name}", launcher, extra)
        serial, parallel = times["serial"], times["joblib, 3 jobs"]
        print(f"\n2. the default sweep's three families, seed 0, base cached{' (' + args.sweep_args + ')' if extra else ''}")
        print(f"   one after the other {serial:.0f} s; three jobs at once {parallel:.0f} s; "
              f"serial ÷ parallel {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()
