"""The desktop on a real X display, run by tests/desktop/test_tray_xembed.py in a child process.

A process has one Qt platform, and the GUI tests' own is offscreen; so the xcb runs live
here: ``python -m tests.desktop.tray_session MODE HOST [NAME...]`` with DISPLAY set. It
drives the app the way a user does (xdotool clicks on the tray icon and on menu items)
and prints one JSON report on stdout for the test to check against the engine.

- ``tray``: a tray host (trayer) owns the display's system tray selection. The icon must
  embed; a right click opens the menu (rebuilt on open); ``Stop`` of the first NAME is
  clicked, ``Restart`` of the second triggered from its QAction in the open menu.
- ``no-tray``: nothing owns the selection: the app runs as a window whose close quits it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from desktop.app import DesktopApp
from desktop.connection import call_client
from desktop.qt import QApplication, QCoreApplication, QMenu, QPoint, QSystemTrayIcon, QTimer
from desktop.settings import Settings
from desktop.store import EngineState


def spin_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10)


def click(at: QPoint, button: int = 1) -> None:
    xdotool("mousemove", "--sync", str(at.x()), str(at.y()))
    QCoreApplication.processEvents()
    time.sleep(0.1)  # the menu sees the hover before the press, as with a real pointer
    xdotool("click", str(button))


def entries(menu: QMenu) -> list[str]:
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def submenus(menu: QMenu) -> dict[str, QMenu]:
    return {a.text(): sub for a in menu.actions() if isinstance(sub := a.menu(), QMenu)}


def open_tray_menu(desk: DesktopApp) -> QMenu:
    """Right-click the embedded icon; the tray's own menu opens (and rebuilds)."""
    assert desk.tray is not None
    menu, rect = desk.tray.menu, desk.tray.icon.geometry()
    if menu.isVisible():
        menu.hide()
    click(rect.center(), button=3)
    assert spin_until(menu.isVisible, 5), "the tray menu did not open on a right click"
    return menu


def item_centre(menu: QMenu, text: str) -> QPoint:
    for action in menu.actions():
        if action.text() == text:
            return menu.mapToGlobal(menu.actionGeometry(action).center())
    raise AssertionError(f"no {text!r} in {entries(menu)}")


def tray(host: str, names: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    report["tray_available"] = spin_until(QSystemTrayIcon.isSystemTrayAvailable, 10)
    desk = DesktopApp(Settings(host=host))
    report["app_tray"] = desk.tray is not None
    desk.start()
    store = desk.store

    def state(name: str) -> str:
        rows = [r for r in store.containers.rows() if f"/{name}" in (r.get("Names") or [])]
        return str(rows[0].get("State")) if rows else ""

    assert spin_until(lambda: all(state(n) == "running" for n in names), 20), store.reason
    assert desk.tray is not None
    icon = desk.tray.icon
    # Embedded: the tray host gave the icon a place on screen.
    assert spin_until(lambda: icon.isVisible() and icon.geometry().width() > 0, 10)
    g = icon.geometry()
    report["icon_geometry"] = [g.x(), g.y(), g.width(), g.height()]
    report["window_visible"] = desk.window.isVisible()
    desk.window.hide()  # as a tray app usually is; the menu is the subject here

    menu = open_tray_menu(desk)
    report["menu_first"] = entries(menu)
    report["submenus_first"] = {t: entries(m) for t, m in submenus(menu).items()}
    # Stop the first container with the pointer: hover its submenu, click "Stop".
    sub = submenus(menu)[f"● {names[0]}"]
    click(item_centre(menu, f"● {names[0]}"))
    assert spin_until(sub.isVisible, 5), "the container's submenu did not open"
    click(item_centre(sub, "Stop"))
    assert spin_until(lambda: not menu.isVisible(), 5), "the menu stayed open after a click"
    assert spin_until(lambda: state(names[0]) == "exited", 20), state(names[0])

    # Restart the second one from its QAction, in the menu as it is now open again.
    menu = open_tray_menu(desk)
    report["menu_second"] = entries(menu)
    report["submenus_second"] = {t: entries(m) for t, m in submenus(menu).items()}
    client = call_client(host)
    before = client.inspect_container(names[1])["State"]["StartedAt"]
    restart = next(a for a in submenus(menu)[f"● {names[1]}"].actions() if a.text() == "Restart")
    restart.trigger()
    menu.hide()
    assert spin_until(
        lambda: client.inspect_container(names[1])["State"]["StartedAt"] != before, 20)
    report["restarted_from"] = before
    desk.shutdown()
    return report


def no_tray(host: str) -> dict[str, Any]:
    report: dict[str, Any] = {"tray_available": QSystemTrayIcon.isSystemTrayAvailable()}
    desk = DesktopApp(Settings(host=host))
    report["app_tray"] = desk.tray is not None
    desk.start()

    def look_then_close() -> None:
        if not (desk.window.isVisible() and desk.store.state == EngineState.RUNNING):
            QTimer.singleShot(50, look_then_close)
            return
        report["window_visible"] = True
        report["status_bar"] = desk.window.statusBar().currentMessage()
        report["quit_on_last_window"] = QApplication.quitOnLastWindowClosed()
        desk.window.close()  # the app's only window: closing it must end exec()

    QTimer.singleShot(0, look_then_close)
    QTimer.singleShot(20_000, lambda: QCoreApplication.exit(3))  # a safety net, reported
    report["exec_exit"] = QApplication.instance().exec()  # type: ignore[union-attr]
    desk.shutdown()
    return report


def main(argv: list[str]) -> int:
    mode, host, names = argv[0], argv[1], argv[2:]
    app = QApplication(["cove-tray-test"])
    assert app.platformName() == "xcb", app.platformName()
    report = tray(host, names) if mode == "tray" else no_tray(host)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
