"""Torch intra-op threads that fit the job: the cores it may use ÷ the jobs running beside it.

On a small model every intra-op thread waits at a barrier per operation, spinning while it waits,
so threads beyond the cores a job really has are pure loss: two jobs of two threads each on two
cores run slower than one job of two, and a training step of the default model with two threads
beside one busy process on two cores took 2.65× its quiet time (one thread: 1.13×; bench/bench_threads.py).
`threads=0` (the default) therefore takes
- the cores this process may run on: its CPU affinity, capped by `SLURM_CPUS_PER_TASK` under SLURM
  and by the cgroup's CPU quota (`cpu.max`: a container given 2 CPUs of a larger machine),
- divided by the jobs the Hydra launcher runs at once (`hydra.launcher.n_jobs` of the joblib
  launcher; 1 for the basic launcher and for submitit, whose jobs each get their own cores),
- and no more than the cores that were idle when the job started (those of its affinity, over
  0.1 s of /proc/stat: other processes keep the rest busy),
and at least 1. `threads=N` sets N. The choice is made once, when the job starts.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Dict, Optional, Set, Tuple

CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"  # cgroup v2: "<quota> <period>" in µs, or "max <period>"
log = logging.getLogger("lora_lab")
IDLE_WINDOW_S = 0.1  # how long the idle cores are watched (Linux counts CPU time in 10 ms ticks)


def _cpus() -> Set[int]:
    return set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))


def _own_cpu_max() -> str:
    """This process's cgroup v2 `cpu.max` (from /proc/self/cgroup's "0::<path>" line), else the root's."""
    try:
        for line in open("/proc/self/cgroup"):
            if line.startswith("0::"):
                own = f"/sys/fs/cgroup{line[3:].strip()}/cpu.max"
                if os.path.exists(own):
                    return own
    except OSError:
        pass
    return CGROUP_CPU_MAX


def cgroup_cores(path: Optional[str] = None) -> Optional[int]:
    """The CPU quota of this process's cgroup in whole cores (rounded up), or None (no quota, no cgroup v2)."""
    try:
        quota, period = open(path or _own_cpu_max()).read().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity mask, capped by SLURM_CPUS_PER_TASK and the cgroup quota."""
    cores = len(_cpus())
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cores = min(cores, int(slurm))
    quota = cgroup_cores()
    if quota is not None:
        cores = min(cores, quota)
    return max(1, cores)


def _cpu_times(cpus: Set[int], path: str) -> Dict[int, Tuple[int, int]]:
    """{cpu: (idle ticks incl. iowait, all ticks but guest time)} from a /proc/stat-format file
    (lines it cannot read are skipped)."""
    out = {}
    with open(path) as f:
        for line in f:
            name, *fields = line.split() or [""]
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus and len(fields) >= 5:
                try:
                    v = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
                except ValueError:
                    continue
                out[int(name[3:])] = (v[3] + v[4], sum(v))
    return out


def idle_cores(window_s: float = IDLE_WINDOW_S, path: str = "/proc/stat") -> Optional[float]:
    """Idle time of this process's CPUs over `window_s` seconds (this process sleeps meanwhile), in
    cores: 2.0 on a quiet two-core machine, about 1.0 with one busy process beside it. None where
    /proc/stat is not there (not Linux)."""
    cpus = _cpus()
    try:
        before = _cpu_times(cpus, path)
        time.sleep(window_s)
        after = _cpu_times(cpus, path)
    except OSError:
        return None
    if not after:  # none of this process's CPUs has a line (a container that renumbers them): unknown
        return None
    idle = 0.0
    for cpu, (i1, t1) in after.items():
        i0, t0 = before.get(cpu, (i1, t1))
        idle += (i1 - i0) / (t1 - t0) if t1 > t0 else 1.0
    return idle


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
    """`requested` when > 0, else usable cores ÷ parallel jobs, at most the idle cores (at least 1).
    Logged with what set it: float32 kernels round differently with the thread count (a LayerNorm's
    weight gradient is summed over rows in per-thread parts), and training amplifies that, so
    numbers computed from an empty cache are bit-identical only at the same count."""
    if requested > 0:
        log.info("torch threads: %d (threads=%d)", requested, requested)
        return requested
    cores = usable_cores()
    jobs = parallel_jobs(cores)
    share = cores // jobs
    idle = idle_cores()
    n = max(1, share if idle is None else min(share, round(idle)))
    log.info("torch threads: %d (threads=0: %d usable cores ÷ %d parallel jobs%s; threads=N pins it)", n, cores, jobs,
             "" if idle is None else f", {idle:.1f} cores idle at the start")
    return n
