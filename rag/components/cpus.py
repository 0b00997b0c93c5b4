"""How many CPUs this process may really use, which is what every engine's thread count
(torch, llama.cpp, the parsing processes) is chosen from.

`os.cpu_count()` counts the machine's CPUs. A process may be allowed fewer: by its
affinity (`taskset`, a container's cpuset) or by its cgroup's CPU quota (a container's
`--cpus`, a systemd unit's `CPUQuota=`). Threads beyond what it may use only wait for
each other.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_SELF_CGROUP = Path("/proc/self/cgroup")


def available_cpus(*, cgroup_root: Path = _CGROUP_ROOT, self_cgroup: Path = _SELF_CGROUP) -> int:
    """CPUs this process may use: its affinity, lowered to its cgroup's CPU quota (whole
    CPUs, rounded down), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # pragma: no cover (not Linux)
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root=cgroup_root, self_cgroup=self_cgroup)
    if quota is not None:
        count = min(count, math.floor(quota))
    return max(1, count)


def cgroup_cpu_quota(
    *, cgroup_root: Path = _CGROUP_ROOT, self_cgroup: Path = _SELF_CGROUP
) -> float | None:
    """The CPUs' worth of time this process's cgroup (or one above it) allows, as
    quota / period; None without a quota, or where cgroups can't be read."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: one hierarchy, cpu.max in each folder
            quotas += _limits(cgroup_root, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # cgroup v1: the cpu controller's own tree
            for folder in (cgroup_root / controllers, cgroup_root / "cpu"):
                if folder.is_dir():
                    quotas += _limits(folder, path, _v1_quota)
                    break
    return min(quotas) if quotas else None


def _limits(root: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quota of the cgroup at `path` under `root` and of each one above it."""
    found = []
    folder = root / path.lstrip("/")
    while True:
        quota = read(folder)
        if quota is not None:
            found.append(quota)
        if folder == root or root not in folder.parents:
            return found
        folder = folder.parent


def _v2_quota(folder: Path) -> float | None:
    """`cpu.max`: "max 100000" (no limit) or "200000 100000" (two CPUs' worth)."""
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or int(period) <= 0:
        return None
    return int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    """`cpu.cfs_quota_us` (-1: no limit) over `cpu.cfs_period_us`."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def busy_elsewhere(
    interval_s: float = 0.1,
    *,
    stat: Path = Path("/proc/stat"),
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """The CPUs' worth of time that other processes took, over `interval_s` from now, on
    the CPUs this process may run on (its affinity); 0.0 where /proc/stat can't be read."""
    mine = _affinity()
    before, own_before = _busy_seconds(stat, mine), _own_seconds()
    started = time.monotonic()
    sleep(interval_s)
    after, own_after = _busy_seconds(stat, mine), _own_seconds()
    elapsed = max(time.monotonic() - started, 1e-3)
    if before is None or after is None:
        return 0.0
    return max(0.0, ((after - before) - (own_after - own_before)) / elapsed)


def threads_for_now(configured: int | None, interval_s: float = 0.1) -> int:
    """Threads for work that starts now: `configured` when set; else the CPUs this process
    may use less those other processes are keeping busy, at least 1.

    Engines whose threads wait for each other at every step (llama.cpp) run slower with
    one thread on a core another process holds than with one thread fewer
    (docs/benchmarks.md, issue 18).
    """
    if configured:
        return configured
    cpus = available_cpus()
    if cpus == 1:
        return 1
    # Others' time is counted on the CPUs of our affinity, which a cgroup quota may
    # leave more of than we may use: subtract it from those, then apply the quota.
    free = len(_affinity() or range(cpus)) - busy_elsewhere(interval_s)
    return max(1, min(cpus, round(free)))


def _affinity() -> set[int] | None:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return None  # pragma: no cover (not Linux)


def _busy_seconds(stat: Path, cpus: set[int] | None) -> float | None:
    """Seconds all of `cpus` (None: every CPU) have spent busy since boot, per /proc/stat."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal: all but idle and iowait are busy
        values = [int(v) for v in fields[:8]]
        total += sum(values) - values[3] - values[4]
    return total / ticks


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system
