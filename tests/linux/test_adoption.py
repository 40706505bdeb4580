"""Containers outlive the engine; a fresh LinuxRuntime adopts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.linux.runtime import LinuxRuntime
from runtime.linux.syscalls import PR_SET_CHILD_SUBREAPER, SYSCALLS
from runtime.spec import to_json
from tests.linux.conftest import ROOT, SpecFactory, log_text

pytestmark = pytest.mark.root

ENGINE = """
import json, os, sys, time
from pathlib import Path
from runtime.linux.runtime import LinuxRuntime
from runtime.spec import spec_from_json
spec = spec_from_json(json.loads(sys.stdin.read()))
rt = LinuxRuntime(Path(sys.argv[1]), cgroup_parent="unused")
pid = rt.start(spec)
print(pid, flush=True)
time.sleep(1000)
"""


def test_container_survives_engine_death(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["sh", "-c", "echo up; exec sleep 100"])
    # Orphaned monitors come to us, not to a PID 1 that may not reap them.
    SYSCALLS.prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        engine = subprocess.Popen(
            [sys.executable, "-c", ENGINE, str(runtime.state_dir)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert engine.stdin is not None and engine.stdout is not None
        engine.stdin.write(json.dumps(to_json(spec)))
        engine.stdin.close()
        pid = int(engine.stdout.readline())
        engine.send_signal(signal.SIGKILL)
        engine.wait()
        state = json.loads(Path(runtime.state_dir, spec.id, "state.json").read_text())

        fresh = LinuxRuntime(runtime.state_dir)
        assert fresh.list_ids() == [spec.id]
        status = fresh.status(spec.id)
        assert status.running and status.pid == pid
        assert fresh.top(spec.id) == [pid]
        fresh.kill(spec.id, signal.SIGKILL)
        exit_status = fresh.wait(spec.id, timeout=10)
        assert exit_status is not None and exit_status.code == 137
        assert fresh.status(spec.id).exit == exit_status
        assert log_text(spec) == "up\n"
        os.waitpid(state["monitor_pid"], 0)
    finally:
        SYSCALLS.prctl(PR_SET_CHILD_SUBREAPER, 0)
