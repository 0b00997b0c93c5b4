"""The CPUs a process may use (rag/components/cpus.py), on cgroup trees made here."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rag.components.cpus import available_cpus, busy_elsewhere, cgroup_cpu_quota, threads_for_now

pytestmark = pytest.mark.unit


def tree(tmp_path: Path, membership: str, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "self").write_text(membership)
    return {"cgroup_root": root, "self_cgroup": tmp_path / "self"}


def test_no_quota_leaves_the_affinity(tmp_path: Path) -> None:
    paths = tree(tmp_path, "0::/app\n", {"app/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(**paths) is None
    assert available_cpus(**paths) == len(os.sched_getaffinity(0))


def test_a_v2_quota_anywhere_above_the_process_counts(tmp_path: Path) -> None:
    paths = tree(
        tmp_path,
        "0::/system.slice/lore.service\n",
        {
            "system.slice/cpu.max": "150000 100000\n",  # 1.5 CPUs for the whole slice
            "system.slice/lore.service/cpu.max": "max 100000\n",
        },
    )
    assert cgroup_cpu_quota(**paths) == 1.5
    assert available_cpus(**paths) == 1


def test_a_v1_quota_is_read_from_the_cpu_controller(tmp_path: Path) -> None:
    paths = tree(
        tmp_path,
        "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_cpu_quota(**paths) == 0.5
    assert available_cpus(**paths) == 1  # never fewer than one


def test_unreadable_cgroups_mean_no_quota(tmp_path: Path) -> None:
    missing = {"cgroup_root": tmp_path / "none", "self_cgroup": tmp_path / "none" / "self"}
    assert cgroup_cpu_quota(**missing) is None
    assert available_cpus(**missing) >= 1


def test_this_machine_answers_something_sensible() -> None:
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


def stat_lines(busy: dict[int, int], idle: int = 1000) -> str:
    """A /proc/stat whose CPU n has spent busy[n] ticks in user time."""
    rows = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    rows += [f"cpu{n} {ticks} 0 0 {idle} 0 0 0 0 0 0" for n, ticks in sorted(busy.items())]
    return "\n".join([*rows, "intr 1 2 3", "ctxt 42"]) + "\n"


def test_busy_elsewhere_counts_other_processes_time_on_this_processs_cpus(
    tmp_path: Path,
) -> None:
    mine = sorted(os.sched_getaffinity(0))
    stat = tmp_path / "stat"
    stat.write_text(stat_lines(dict.fromkeys(mine, 0)))
    ticks = os.sysconf("SC_CLK_TCK")

    def one_cpu_busy_for(seconds: float) -> None:
        # During the interval another process kept the first of our CPUs busy.
        time.sleep(seconds)
        stat.write_text(stat_lines({n: int(ticks * seconds) if n == mine[0] else 0 for n in mine}))

    others = busy_elsewhere(0.5, stat=stat, sleep=one_cpu_busy_for)
    # Seconds of busy time over the measured interval (which includes our own reading).
    assert 0.5 < others <= 1.01


def test_busy_elsewhere_is_zero_where_proc_stat_is_unreadable(tmp_path: Path) -> None:
    assert busy_elsewhere(0.0, stat=tmp_path / "missing") == 0.0


def test_configured_threads_are_kept_whatever_the_load() -> None:
    assert threads_for_now(3) == 3
