"""How many CPUs this process may use: the one count every pool and thread setting starts from.

``os.cpu_count()`` is the host's; a container limited by affinity or a cgroup quota gets far
less, and sizing pools from the host's count oversubscribes it badly.
"""

from __future__ import annotations

import math
import os


def usable_cores(*, count_partial_cpu: bool = False) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota if any.

    A fractional quota (say 1.5 CPUs) counts down, as pools of busy threads need whole CPUs;
    ``count_partial_cpu`` counts it up instead (torch's intra-op threads, which idle between ops).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:  # cgroup v2 quota, e.g. "200000 100000" = 2 CPUs
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            share = int(quota) / int(period)
            cores = min(cores, max(1, math.ceil(share) if count_partial_cpu else int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)
