"""Qt offscreen, a tiny HTTP server on a Unix socket, and (when it works) a real engine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
PySide6 = pytest.importorskip("PySide6")

from desktop.qt import QApplication, QCoreApplication  # noqa: E402
from tests.desktop.httpd import TinyServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def qapp() -> QApplication:
    app = QApplication.instance() or QApplication(["cove-tests"])
    assert isinstance(app, QApplication)
    return app


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Spin the Qt event loop until cond() holds (queued signals need the loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        if cond():
            return True
        time.sleep(0.01)
    QCoreApplication.processEvents()
    return cond()


@pytest.fixture
def sock_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Short path: sun_path is 108 bytes, pytest tmp paths can be long.
    d = Path("/tmp") / f"cvd{os.getpid()}{time.monotonic_ns() % 10**6}"
    d.mkdir()
    return str(d / "e.sock")


@pytest.fixture
def tiny(sock_path: str) -> Iterator[TinyServer]:
    server = TinyServer(sock_path)
    yield server
    try:
        server.stop()
    except OSError:
        pass


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_DESKTOP_CONFIG", str(tmp_path / "config"))


@pytest.fixture(scope="session")
def engine() -> Iterator[str]:
    """A real engine on a private socket; skipped while the engine cannot start."""
    if os.geteuid() != 0:
        pytest.skip("the engine needs root")
    base = Path("/tmp") / f"cvde{os.getpid()}"
    base.mkdir(exist_ok=True)
    sock = base / "e.sock"
    cmd = [sys.executable, "-m", "runtime.engine", "--host", f"unix://{sock}",
           "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
           "--cgroup-parent", "cove-test-desktop", "--bridge", "cvtD",
           "--bip", "10.213.77.1/24"]
    log = open(base / "engine.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 20
    while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not sock.exists():
        proc.kill()
        proc.wait()
        tail = (base / "engine.log").read_text()[-400:]
        pytest.skip(f"the engine does not start yet: {tail}")
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(10)
    log.close()
