from __future__ import annotations

import os

from guestagent.supervise import MAX_BACKOFF, Service


def test_backoff_doubles_and_resets_when_stable() -> None:
    svc = Service("x", ("true",))
    svc.started_at = 100.0
    svc.exited(1, now=101.0)
    assert svc.restart_at == 101.5 and not svc.due(101.2) and svc.due(101.5)
    svc.started_at = 102.0
    svc.exited(1, now=103.0)
    assert svc.restart_at == 104.0
    for _ in range(10):
        svc.exited(1, now=110.0)
    assert svc.backoff == MAX_BACKOFF
    svc.started_at = 200.0
    svc.exited(0, now=300.0)  # ran a minute or more: back to the minimum
    assert svc.restart_at == 300.5


def test_start_spawns_in_own_session(tmp_path: os.PathLike[str]) -> None:
    log = os.path.join(tmp_path, "log")
    svc = Service("echo", ("sh", "-c", "echo hi; echo err >&2"), log_path=log)
    svc.start()
    _, status = os.waitpid(svc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with open(log) as f:
        assert f.read().split() == ["hi", "err"]
