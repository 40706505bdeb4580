"""TaskRunner and EventPump over a real Unix-socket HTTP server (not an engine)."""

from __future__ import annotations

import threading

import pytest

from desktop.events import EventPump
from desktop.qt import QApplication
from desktop.store import EngineState, Store
from desktop.tasks import TaskRunner
from tests.desktop import swagger
from tests.desktop.conftest import wait_until
from tests.desktop.httpd import TinyServer

pytestmark = pytest.mark.gui


def test_runner_delivers_on_main_thread(qapp: QApplication) -> None:
    runner = TaskRunner()
    seen: list[tuple[object, bool]] = []
    main = threading.main_thread()
    runner.submit(lambda: 41 + 1,
                  lambda v: seen.append((v, threading.current_thread() is main)))
    runner.submit(lambda: 1 // 0, None,
                  lambda e: seen.append((type(e).__name__, threading.current_thread() is main)))
    assert wait_until(lambda: len(seen) == 2)
    assert set(seen) == {(42, True), ("ZeroDivisionError", True)}
    runner.shutdown()


def test_runner_reports_unhandled_failures(qapp: QApplication) -> None:
    runner = TaskRunner()
    failures: list[str] = []
    runner.failed.connect(lambda what, exc: failures.append(f"{what}: {exc}"))
    empty: dict[str, int] = {}
    runner.submit(lambda: empty["x"], what="lookup")
    assert wait_until(lambda: bool(failures))
    assert failures[0].startswith("lookup")
    runner.shutdown()


def test_pump_reconnects(qapp: QApplication, sock_path: str) -> None:
    pump = EventPump("unix://" + sock_path)
    log: list[str] = []
    pump.connected.connect(lambda: log.append("up"))
    pump.disconnected.connect(lambda r: log.append("down:" + r))
    pump.received.connect(lambda e: log.append(e["Action"]))
    pump.start()
    assert wait_until(lambda: any(x.startswith("down:") for x in log))
    server = TinyServer(sock_path)
    pump.retry_now()
    assert wait_until(lambda: "up" in log)
    server.push(swagger.event("start", "abc"))
    assert wait_until(lambda: "start" in log)
    server.stop()
    n = log.count("up")
    assert wait_until(lambda: log[-1].startswith("down:"))
    server = TinyServer(sock_path)
    assert wait_until(lambda: log.count("up") > n, timeout=8)
    pump.stop()
    server.stop()


def test_store_applies_events_and_banner_state(qapp: QApplication, tiny: TinyServer) -> None:
    tiny.routes["/containers/json"] = [swagger.container("c1", "web")]
    runner = TaskRunner()
    store = Store("unix://" + tiny.path, runner)
    states: list[str] = []
    store.state_changed.connect(lambda s, r: states.append(s))
    store.start()
    assert wait_until(lambda: store.containers.rowCount() == 1)
    assert store.state == EngineState.RUNNING
    tiny.routes["/containers/json"] = [swagger.container("c1", "web"),
                                       swagger.container("c2", "new")]
    tiny.push(swagger.event("create", "c2", name="new", image="busybox"))
    assert wait_until(lambda: store.containers.rowCount() == 2)
    tiny.push(swagger.event("destroy", "c1"))
    assert wait_until(lambda: store.containers.keys() == ["c2"])
    tiny.stop()
    assert wait_until(lambda: store.state == EngineState.STOPPED)
    assert "cannot reach" in store.reason
    store.close()
    runner.shutdown()


def test_slow_engine_does_not_block_ui(qapp: QApplication, tiny: TinyServer) -> None:
    import time

    tiny.delay = 2.0
    runner = TaskRunner()
    store = Store("unix://" + tiny.path, runner)
    store.start()
    t0 = time.monotonic()
    wait_until(lambda: store.state == EngineState.RUNNING)
    store.refresh_all()  # every listing is now slow
    t1 = time.monotonic()
    assert t1 - t0 < 1.5  # refresh_all returned at once
    store.close()
    runner.shutdown()
