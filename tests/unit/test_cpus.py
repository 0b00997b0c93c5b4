"""The CPUs a process may use (rag/components/cpus.py), on cgroup trees made here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.components.cpus import available_cpus, cgroup_cpu_quota

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
