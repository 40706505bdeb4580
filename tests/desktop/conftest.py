"""Qt offscreen and a tiny HTTP server on a Unix socket (real-engine tests use tests/conftest.py's
``engine``: one EngineProcess per session with busybox:latest imported)."""

from __future__ import annotations

import os
import shutil
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
def sock_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Short path: sun_path is 108 bytes, pytest tmp paths can be long.
    d = Path("/tmp") / f"cvd{os.getpid()}{time.monotonic_ns() % 10**6}"
    d.mkdir()
    yield str(d / "e.sock")
    shutil.rmtree(d, ignore_errors=True)


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
