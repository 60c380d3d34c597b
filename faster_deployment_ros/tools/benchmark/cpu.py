"""CPU accounting from /proc: this process, the node processes, and everyone else.

On a shared machine other users' CPU makes a run's numbers unreliable; it is recorded next to
every result (`foreign_cpu_cores`), not hidden.
"""
from __future__ import annotations

import os
import time
from typing import Dict, Sequence

_now = time.perf_counter


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (its finished children are not counted)."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def machine_busy_s() -> float:
    """CPU-seconds the whole machine has been busy (all processes), from /proc/stat."""
    try:
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


class CpuWatch:
    """This process's CPU and everyone else's over a run.

    `foreign` cores are other users of a shared machine; `others_ours` the processes in
    `other_pids` (e.g. the node).
    """

    def __init__(self, other_pids: Sequence[int] = ()) -> None:
        self.pids = list(other_pids)
        self.t0, self.own0, self.all0 = _now(), time.process_time(), machine_busy_s()
        self.oth0 = sum(proc_cpu_s(p) for p in self.pids)

    def read(self) -> Dict[str, float]:
        wall = max(1e-9, _now() - self.t0)
        own = (time.process_time() - self.own0) / wall
        oth_s = sum(proc_cpu_s(p) for p in self.pids) - self.oth0
        busy = (machine_busy_s() - self.all0) / wall
        return {'own': own, 'others_ours': oth_s / wall, 'others_ours_s': oth_s,
                'foreign': max(0.0, busy - own - oth_s / wall), 'wall_s': wall}
