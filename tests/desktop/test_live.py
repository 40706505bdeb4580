"""The desktop against a real engine (tests/conftest.py ``engine``: busybox:latest imported).

Every container a test makes is named ``dsk-…`` and removed when the test ends.
"""

from __future__ import annotations

import gc
import shutil
import signal
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from desktop import formatting as fmt
from desktop.connection import call_client
from desktop.control import LocalEngine
from desktop.models.base import ROW_ROLE
from desktop.qt import (
    QAbstractItemModelTester,
    QAction,
    QApplication,
    QCoreApplication,
    QEvent,
    QGuiApplication,
    QMenu,
    QObject,
    Qt,
    QTest,
    QWidget,
)
from desktop.settings import Settings
from desktop.store import EngineState, Store
from desktop.tasks import TaskRunner
from desktop.tray import TrayController
from desktop.views.containers_view import ContainersView
from desktop.views.image_dialogs import PullDialog, RunDialog
from desktop.views.logs_view import ERR_COLOUR, OUT_COLOUR, LogsView
from desktop.views.main_window import MainWindow
from desktop.views.resources_view import ImagesView
from desktop.views.terminal_view import TerminalView
from runtime.api.client import Client
from tests.desktop.conftest import wait_until

pytestmark = [pytest.mark.gui, pytest.mark.root]

T = TypeVar("T", bound=QObject)
PREFIX = "dsk-"
FATAL = QAbstractItemModelTester.FailureReportingMode.Fatal
# Exits on SIGTERM within a second (a bare `sleep` as pid 1 ignores it: stop would wait 10 s).
POLITE = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]


@dataclass
class Live:
    store: Store
    runner: TaskRunner
    client: Client
    widgets: list[QObject] = field(default_factory=list)  # deleted at teardown, not by GC later
    full_lists: list[int] = field(default_factory=list)  # GET /containers/json without filters
    one_lists: list[str] = field(default_factory=list)  # re-fetches of one container

    def run(self, name: str, cmd: list[str] | None = None, start: bool = True,
            **extra: Any) -> str:
        body = {"Image": "busybox", "Cmd": cmd or POLITE, **extra}
        cid = str(self.client.create_container(body, name=PREFIX + name)["Id"])
        if start:
            self.client.start(cid)
        return cid

    def keep(self, obj: T) -> T:
        self.widgets.append(obj)
        return obj

    def state(self, cid: str) -> str | None:
        row = self.store.containers.row(cid)
        return None if row is None else str(row.get("State"))


def dispose(objs: list[QObject]) -> None:
    """Delete Qt objects now, in order, so the garbage collector never does it mid-test."""
    for obj in objs:
        if isinstance(obj, QWidget):
            obj.close()
        obj.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()
    gc.collect()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live(qapp: QApplication, engine: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    runner = TaskRunner()
    store = Store(engine.url, runner)
    live = Live(store, runner, call_client(engine.url))
    real = store.client.containers

    def counting(*args: Any, **kwargs: Any) -> Any:
        filters = kwargs.get("filters")
        if filters:
            live.one_lists.extend(filters.get("id", []))
        else:
            live.full_lists.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.client, "containers", counting)
    store.start()
    assert wait_until(lambda: store.state == EngineState.RUNNING and bool(live.full_lists))
    try:
        yield live
    finally:
        store.close()
        runner.shutdown()
        dispose([*live.widgets, store, runner])
        for c in live.client.containers(all=True):
            if any(n.lstrip("/").startswith(PREFIX) for n in c.get("Names") or []):
                live.client.remove_container(str(c["Id"]), force=True)


def test_containers_table_follows_events(live: Live) -> None:
    store = live.store
    view = live.keep(ContainersView(store))
    view.resize(1000, 600)
    view.show()
    _testers = [QAbstractItemModelTester(store.containers, FATAL),
                QAbstractItemModelTester(view.table.proxy, FATAL)]
    assert wait_until(lambda: live.full_lists == [1])  # the connect-time listing
    cid = live.run("table", start=False)
    assert wait_until(lambda: live.state(cid) == "created")
    row = store.containers.row(cid)
    assert row is not None and fmt.container_name(row) == PREFIX + "table"
    assert row["Image"] == "busybox"
    live.client.start(cid)
    assert wait_until(lambda: live.state(cid) == "running")
    assert wait_until(lambda: str((store.containers.row(cid) or {}).get("Status")).startswith("Up"))
    # The proxy shows it too (sorted, grouped).
    proxy = view.table.proxy
    shown = [proxy.index(r, 0).data(ROW_ROLE) for r in range(proxy.rowCount())]
    assert cid in [str(r["Id"]) for r in shown]
    live.client.stop(cid, timeout=5)
    assert wait_until(lambda: live.state(cid) == "exited")
    assert str((store.containers.row(cid) or {}).get("Status")).startswith("Exited")
    live.client.remove_container(cid)
    assert wait_until(lambda: store.containers.row(cid) is None)
    # Events were applied incrementally: no full listing besides the first one, and at most
    # one single-container re-fetch per event that asks for it (create, start, die).
    assert live.full_lists == [1]
    assert 1 <= live.one_lists.count(cid) <= 3
    view.shutdown()


def _submenus(menu: QMenu) -> dict[str, QMenu]:
    out = {}
    for action in menu.actions():
        sub = action.menu()
        if isinstance(sub, QMenu):
            out[action.text()] = sub
    return out


def _action(menu: QMenu, text: str) -> QAction:
    for action in menu.actions():
        if action.text() == text:
            return action
    raise AssertionError(f"no {text!r} in {[a.text() for a in menu.actions()]}")


def test_tray_menu_lists_running_and_recent(live: Live) -> None:
    store, port = live.store, free_port()
    web = live.run("web", ExposedPorts={"80/tcp": {}},
                   HostConfig={"PortBindings": {"80/tcp": [{"HostPort": str(port)}]}})
    old = live.run("old")
    live.client.stop(old, timeout=5)
    logs_for: list[str] = []
    tray = live.keep(TrayController(store, "engine", lambda: None, lambda: None, lambda: None,
                          logs_for.append, lambda: None))
    assert wait_until(lambda: live.state(old) == "exited" and bool(
        fmt.published_ports(store.containers.row(web) or {})))
    tray.menu.aboutToShow.emit()
    top = [a.text() for a in tray.menu.actions()]
    assert top[0] == "Engine: running" and "Stop engine" in top
    subs = _submenus(tray.menu)
    web_menu = subs["● dsk-web"]
    assert [a.text() for a in web_menu.actions()] == [
        "Stop", "Restart", f"Open http://localhost:{port}", "Show logs", "Copy ID"]
    assert "● dsk-old" not in subs
    assert "Start dsk-old" in [a.text() for a in subs["Recently stopped"].actions()]
    _action(web_menu, "Copy ID").trigger()
    assert QGuiApplication.clipboard().text() == web
    _action(web_menu, "Show logs").trigger()
    assert logs_for == [web]
    _action(subs["Recently stopped"], "Start dsk-old").trigger()
    assert wait_until(lambda: live.state(old) == "running", timeout=10)
    _action(web_menu, "Stop").trigger()
    assert wait_until(lambda: live.state(web) == "exited", timeout=10)
    tray.menu.aboutToShow.emit()
    subs = _submenus(tray.menu)
    assert "● dsk-old" in subs and "● dsk-web" not in subs
    assert "Start dsk-web" in [a.text() for a in subs["Recently stopped"].actions()]
    tray.icon.hide()


def test_banner_when_engine_stops_and_recovery(qapp: QApplication, engine: Any) -> None:
    from tests.harness import EngineProcess

    base = Path(tempfile.mkdtemp(prefix="cvdb", dir="/tmp"))
    second = EngineProcess(base)
    runner = TaskRunner()
    window: MainWindow | None = None
    store: Store | None = None
    try:
        second.start()
        settings = Settings(host=second.url)
        store = Store(second.url, runner)
        window = MainWindow(store, LocalEngine(settings), settings, lambda: None,
                            keep_running_on_close=False)
        window.show()
        store.start()
        assert wait_until(lambda: store is not None and store.state == EngineState.RUNNING)
        assert not window.banner.isVisible()
        stop_engine(second)
        assert wait_until(lambda: window is not None and window.banner.isVisible(), timeout=8)
        assert window.banner.headline.text() == "The engine is not running."
        reason = window.banner.reason.text()
        assert f"cannot reach {second.url}" in reason
        assert len(reason) > len(f"cannot reach {second.url}: ")  # says why, not just "down"
        assert window.banner.start_button.isEnabled()
        second.start()  # no user action from here on
        assert wait_until(lambda: store is not None and store.state == EngineState.RUNNING,
                          timeout=10)
        assert not window.banner.isVisible()
    finally:
        if window is not None:
            window.containers.shutdown()
        if store is not None:
            store.close()
        runner.shutdown()
        dispose([w for w in (window, store) if w is not None] + [runner])
        second.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def stop_engine(proc: Any) -> None:
    """SIGTERM, as a user's `systemctl stop` would; SIGKILL if it hangs (an engine bug, not
    what this test is about: the banner must show either way)."""
    proc.proc.send_signal(signal.SIGTERM)
    try:
        proc.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        warnings.warn(f"the engine ignored SIGTERM for 10 s:\n{proc.log_tail(20)}", stacklevel=1)
        proc.proc.kill()
        proc.proc.wait(timeout=10)
    proc.proc = None


def test_terminal_round_trip(live: Live) -> None:
    cid = live.run("term")
    view = live.keep(TerminalView(live.store))
    view.resize(720, 420)
    view.show()
    view.set_container(cid)
    view.open_shell()
    assert wait_until(lambda: "/ #" in view.term.text(), timeout=10), view.term.text()
    QTest.keyClicks(view.term, "echo hi")
    QTest.keyClick(view.term, Qt.Key.Key_Return)
    assert wait_until(lambda: "hi" in [ln.strip() for ln in view.term.text().splitlines()]), (
        view.term.text())
    view.close_shell()


def _line_colours(view: LogsView) -> dict[str, str]:
    doc = view.text.document()
    out = {}
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        if not it.atEnd():
            out[block.text()] = it.fragment().charFormat().foreground().color().name()
        block = block.next()
    return out


def test_logs_follow_tells_stdout_from_stderr(live: Live) -> None:
    cid = live.run("logs", ["sh", "-c", "i=0; while [ $i -lt 600 ]; do echo out$i; "
                            "echo err$i >&2; i=$((i+1)); sleep 0.05; done"])
    view = live.keep(LogsView(live.store.host))
    view.resize(700, 400)
    view.show()
    view.set_container(cid)
    assert wait_until(lambda: "err3" in view.text.toPlainText(), timeout=10)
    colours = _line_colours(view)
    assert colours["out1"] == OUT_COLOUR and colours["err1"] == ERR_COLOUR
    # Still following: lines written after the view attached keep arriving.
    assert wait_until(lambda: "out25" in view.text.toPlainText(), timeout=10)
    assert view.status.text() == "following"
    view.stop()


def test_images_page_shows_busybox(live: Live) -> None:
    view = live.keep(ImagesView(live.store))
    view.show()
    _tester = QAbstractItemModelTester(live.store.images, FATAL)

    def shown() -> list[tuple[str, str]]:
        proxy = view.table.proxy
        return [(str(proxy.index(r, 0).data()), str(proxy.index(r, 1).data()))
                for r in range(proxy.rowCount())]

    assert wait_until(lambda: ("busybox", "latest") in shown())


def test_run_form_creates_container(live: Live) -> None:
    port = free_port()
    dialog = live.keep(RunDialog(live.store, "busybox:latest"))
    dialog.name.setText(PREFIX + "run")
    dialog.ports.setText(f"{port}:80")
    dialog.env.setPlainText("GREETING=hello\nMODE=test\n")
    dialog.command.setText("sleep 300")
    dialog.run()

    def created() -> str | None:
        for r in live.store.containers.rows():
            if fmt.container_name(r) == PREFIX + "run" and r.get("State") == "running":
                return str(r["Id"])
        return None

    assert wait_until(lambda: created() is not None, timeout=10)
    info = live.client.inspect_container(str(created()))
    assert {"GREETING=hello", "MODE=test"} <= set(info["Config"]["Env"])
    assert info["Config"]["Cmd"] == ["sleep", "300"]
    assert info["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"] == str(port)


@pytest.mark.registry
def test_pull_dialog_from_local_registry(live: Live, tmp_path: Path) -> None:
    if shutil.which("docker-registry") is None or shutil.which("skopeo") is None:
        pytest.skip("docker-registry and skopeo are needed")
    from tests.images.layers import file, tar_bytes
    from tests.images.registry import docker_archive, start_registry

    reg = start_registry(tmp_path / "registry")
    name = f"{reg.host}/desk/tiny:1"
    try:
        archive = tmp_path / "tiny.tar"
        docker_archive(archive, [tar_bytes([file("hello.txt", b"hi")]),
                                 tar_bytes([file("second.txt", b"2" * 50_000)])], Cmd=["sh"])
        reg.push_archive(archive, "desk/tiny:1")
        dialog = live.keep(PullDialog(live.store))
        dialog.name.setText(name)
        dialog.start()
        assert wait_until(lambda: dialog.status.text() in ("Done.",) or
                          dialog.status.text().startswith("Failed"), timeout=30)
        assert dialog.status.text() == "Done.", dialog.status.text()
        assert len(dialog.bars) == 2
        assert all(b.value() == b.maximum() for b in dialog.bars.values())
        assert wait_until(lambda: any(name in (r.get("RepoTags") or [])
                                      for r in live.store.images.rows()))
        dialog.done(0)
    finally:
        reg.stop()
        try:
            live.client.remove_image(name, force=True)
        except Exception:
            pass
