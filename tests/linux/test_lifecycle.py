"""Start, wait, kill, logs and exit codes of real busybox containers."""

from __future__ import annotations

import os
import signal
import time

import pytest

from runtime.api.errors import CommandNotFound, Conflict, NotFound
from runtime.linux.runtime import LinuxRuntime
from tests.linux.conftest import SpecFactory, log_text, read_log, run

pytestmark = pytest.mark.root


def test_echo_lands_in_json_log(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "echo hello; echo oops >&2; printf partial"])
    assert run(runtime, spec) == 0
    entries = read_log(spec)
    assert [(e["stream"], e["log"]) for e in entries if e["stream"] == "stdout"] == [
        ("stdout", "hello\n"), ("stdout", "partial")]
    assert log_text(spec, "stderr") == "oops\n"
    assert all(e["time"].endswith("Z") and "T" in e["time"] for e in entries)


def test_exit_code(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    assert run(runtime, make_spec(["sh", "-c", "exit 3"])) == 3


def test_kill_9_is_137(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sleep", "100"])
    pid = runtime.start(spec)
    assert os.path.exists(f"/proc/{pid}")
    assert runtime.status(spec.id).running
    runtime.kill(spec.id, signal.SIGKILL)
    status = runtime.wait(spec.id, timeout=10)
    assert status is not None and status.code == 137 and not status.oom_killed
    st = runtime.status(spec.id)
    assert not st.running and st.exit == status
    with pytest.raises(Conflict):
        runtime.kill(spec.id, signal.SIGKILL)


def test_init_forwards_signal_and_exits_128_plus_n(
    runtime: LinuxRuntime, make_spec: SpecFactory
) -> None:
    # Without --init, PID 1 ignores signals it has no handler for (as under Docker).
    spec = make_spec(["sh", "-c", "echo $$; exec sleep 100"], init=True)
    runtime.start(spec)
    deadline = time.monotonic() + 5
    while "2\n" not in log_text(spec) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log_text(spec) == "2\n"  # the user process is PID 2 under the init
    runtime.kill(spec.id, signal.SIGUSR1)
    status = runtime.wait(spec.id, timeout=10)
    assert status is not None and status.code == 128 + signal.SIGUSR1


def test_wait_timeout_returns_none(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sleep", "100"])
    runtime.start(spec)
    assert runtime.wait(spec.id, timeout=0.2) is None
    runtime.delete(spec.id)
    assert spec.id not in runtime.list_ids()


def _host_mounts_mention(text: str) -> bool:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/mountinfo") as f:
                if text in f.read():
                    return True
        except OSError:
            continue
    return False


def test_command_not_found_leaves_nothing(runtime: LinuxRuntime, make_spec: SpecFactory,
                                          cgroup_parent: str) -> None:
    spec = make_spec(["nosuch"])
    with pytest.raises(CommandNotFound) as info:
        runtime.start(spec)
    assert 'exec: "nosuch": executable file not found in $PATH' in str(info.value)
    assert str(info.value).startswith("failed to create task for container: ")
    assert runtime.list_ids() == []
    assert not os.path.exists(f"/sys/fs/cgroup/memory/{cgroup_parent}/{spec.id}")
    assert not _host_mounts_mention(spec.rootfs)
    with pytest.raises(NotFound):
        runtime.status(spec.id)


def test_delete_is_idempotent(runtime: LinuxRuntime, make_spec: SpecFactory,
                              cgroup_parent: str) -> None:
    spec = make_spec(["sleep", "100"])
    pid = runtime.start(spec)
    runtime.delete(spec.id)
    runtime.delete(spec.id)
    assert runtime.list_ids() == []
    assert not os.path.exists(f"/proc/{pid}")
    assert not os.path.exists(f"/sys/fs/cgroup/memory/{cgroup_parent}/{spec.id}")
    assert not _host_mounts_mention(spec.rootfs)
