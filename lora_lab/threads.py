"""Torch intra-op threads that fit the job: the cores it may use ÷ the jobs running beside it.

On a small model every intra-op thread waits at a barrier per operation, so threads beyond the
cores a job really has are pure loss: two jobs of two threads each on two cores run slower than
one job of two. `threads=0` (the default) therefore takes
- the cores this process may run on (CPU affinity), capped by `SLURM_CPUS_PER_TASK` under SLURM,
- divided by the jobs the Hydra launcher runs at once (`hydra.launcher.n_jobs` of the joblib
  launcher; 1 for the basic launcher and for submitit, whose jobs each get their own cores),
and at least 1. `threads=N` sets N.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity mask, capped by SLURM_CPUS_PER_TASK."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cores = min(cores, int(slurm))
    return max(1, cores)


def parallel_jobs(cores: int) -> int:
    """Jobs the current Hydra launcher runs at once on this machine (joblib's `n_jobs`, where
    -1 means every core and -2 all but one, as in joblib); 1 outside a parallel launcher."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    n = HydraConfig.get().launcher.get("n_jobs")
    if not isinstance(n, int) or n == 0:
        return 1
    return max(1, n if n > 0 else cores + 1 + n)


def job_threads(requested: int = 0) -> int:
    """`requested` when > 0, else usable cores ÷ parallel jobs (at least 1)."""
    if requested > 0:
        return requested
    cores = usable_cores()
    return max(1, cores // parallel_jobs(cores))
