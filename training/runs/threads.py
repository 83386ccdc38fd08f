"""The thread policy of training processes: one torch thread per physical core given to the run, passive waiting.

OpenMP threads that spin while they wait for each other collapse as soon as anything else runs on the machine
(issue 13: one forward+backward took 962 ms instead of 46 ms at load 4.5; with passive waiting, 56 ms). The OpenMP
runtime reads these variables once, when torch loads it, so they must be in the environment before ``import torch``:
the launcher puts them in the trainer's environment and ``python -m training.lora`` in its own.
"""
from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path
from typing import Mapping

log = logging.getLogger(__name__)


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (hyper-threads count once; a cgroup CPU quota caps it)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:  # no sysfs (macOS, some containers): every logical CPU counts
            cores.add(("cpu", str(cpu)))
    return max(1, min(len(cores), _cgroup_cpus() or len(cores)))


def _cgroup_cpus() -> int | None:
    """CPUs allowed by a cgroup v2 quota (``cpu.max``), or None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))


def thread_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The policy's variables that ``environ`` does not set already (a value set by the user wins)."""
    processes = int(environ.get("LOCAL_WORLD_SIZE") or 1)  # torchrun / accelerate: ranks share this machine
    policy = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(max(1, physical_cores() // processes))}
    return {key: value for key, value in policy.items() if key not in environ}


def use_thread_policy() -> None:
    """Put the policy into this process's environment, and so its children's; too late once torch is imported."""
    if "torch" in sys.modules:  # an in-process caller (a test, a notebook) already chose its threads
        log.debug("torch is already imported; the thread policy is left to the caller")
        return
    os.environ.update(thread_env())
