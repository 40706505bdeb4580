"""Limits, OOM, pause/resume and stats through the host's cgroups."""

from __future__ import annotations

import time

import pytest

from runtime.api.errors import Conflict
from runtime.linux.cgroups import CgroupV2, open_cgroup
from runtime.linux.runtime import LinuxRuntime
from runtime.spec import Resources
from tests.linux.conftest import SpecFactory, log_text

pytestmark = pytest.mark.root


def test_memory_limit_oom_is_137(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                     resources=Resources(memory=16 << 20, memory_swap=16 << 20))
    runtime.start(spec)
    status = runtime.wait(spec.id, timeout=20)
    assert status is not None
    assert (status.code, status.oom_killed) == (137, True)


def test_pids_limit(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    # busybox sh exits when fork fails, so the forking shell is not PID 1.
    spawner = "i=0; while [ $i -lt 8 ]; do sleep 30 & i=$((i+1)); done"
    spec = make_spec(["sh", "-c", f"sh -c '{spawner}'; sleep 30"],
                     resources=Resources(pids_limit=4))
    runtime.start(spec)
    deadline = time.monotonic() + 5
    while "fork" not in log_text(spec, "stderr") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "can't fork" in log_text(spec, "stderr")
    stats = runtime.stats(spec.id)
    assert stats.pids_limit == 4
    assert 3 <= stats.pids_current <= 4
    assert len(runtime.top(spec.id)) == stats.pids_current


def test_pause_resume(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sleep", "100"])
    runtime.start(spec)
    runtime.pause(spec.id)
    assert runtime.status(spec.id).paused
    cg = open_cgroup(spec.cgroup_path)
    if not isinstance(cg, CgroupV2):
        with open(cg.dirs["freezer"] / "freezer.state") as f:  # type: ignore[attr-defined]
            assert f.read().strip() == "FROZEN"
    runtime.resume(spec.id)
    status = runtime.status(spec.id)
    assert status.running and not status.paused
    # delete() of a paused container must still work: pause again and delete.
    runtime.pause(spec.id)
    runtime.delete(spec.id)
    assert not cg.exists()


def test_pause_needs_running(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["true"])
    runtime.start(spec)
    runtime.wait(spec.id, timeout=10)
    with pytest.raises(Conflict):
        runtime.pause(spec.id)


def test_stats_and_update(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    script = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo busy; sleep 100"
    spec = make_spec(["sh", "-c", script], resources=Resources(memory=64 << 20))
    runtime.start(spec)
    deadline = time.monotonic() + 10
    while "busy" not in log_text(spec) and time.monotonic() < deadline:
        time.sleep(0.05)
    s = runtime.stats(spec.id)
    assert s.cpu_total_ns > 0 and s.cpu_user_ns + s.cpu_system_ns > 0
    assert s.system_cpu_ns > s.cpu_total_ns and s.online_cpus >= 1
    assert 0 < s.memory_usage < 64 << 20 and s.memory_limit == 64 << 20
    assert s.memory_stats and s.pids_current >= 1
    runtime.update(spec.id, Resources(memory=128 << 20, pids_limit=50))
    s = runtime.stats(spec.id)
    assert (s.memory_limit, s.pids_limit) == (128 << 20, 50)


def test_cgroup_removed_after_exit(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["true"])
    runtime.start(spec)
    assert runtime.wait(spec.id, timeout=10) is not None
    assert not open_cgroup(spec.cgroup_path).exists()
