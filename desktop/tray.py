"""The tray icon: engine state at a glance, and a menu rebuilt each time it opens.

Rebuilding on ``aboutToShow`` (Vorta's TrayMenu) means the menu always shows
the current containers without keeping a second copy of state up to date.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from desktop import formatting as fmt
from desktop.qt import (
    QColor,
    QGuiApplication,
    QIcon,
    QMenu,
    QObject,
    QPainter,
    QPixmap,
    QSystemTrayIcon,
    Qt,
    QUrl,
)
from desktop.qt import QDesktopServices as Desktop
from desktop.store import Store

ICON_COLOURS = {"running": "#2ea043", "starting": "#d29922", "stopped": "#8b949e",
                "error": "#f85149"}
RECENT_STOPPED = 5


def state_icon(state: str, size: int = 64) -> QIcon:
    """A rounded square with a status dot: the app mark, coloured by engine state."""
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor("#24292f"))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(2, 2, size - 4, size - 4, size // 5, size // 5)
    p.setBrush(QColor(ICON_COLOURS.get(state, "#8b949e")))
    d = size // 2
    p.drawEllipse((size - d) // 2, (size - d) // 2, d, d)
    p.end()
    return QIcon(pix)


class TrayController(QObject):
    def __init__(self, store: Store, control_label: str, open_dashboard: Callable[[], None],
                 start_engine: Callable[[], None], stop_engine: Callable[[], None],
                 show_logs: Callable[[str], None], quit_app: Callable[[], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store, self.label = store, control_label
        self._open, self._start, self._stop = open_dashboard, start_engine, stop_engine
        self._logs, self._quit = show_logs, quit_app
        self.menu = QMenu()
        # Submenus are made with the menu as parent and kept here: PySide6 deletes a
        # submenu made by ``addMenu(title)`` as soon as its Python wrapper goes away.
        self._subs: list[QMenu] = []
        self.menu.aboutToShow.connect(self.rebuild)
        self.icon = QSystemTrayIcon(state_icon(store.state.value))
        self.icon.setContextMenu(self.menu)
        self.icon.setToolTip("Cove")
        self.icon.activated.connect(self._activated)
        store.state_changed.connect(self._state_changed)
        self.rebuild()

    def show(self) -> None:
        self.icon.show()

    def _state_changed(self, state: str, reason: str) -> None:
        self.icon.setIcon(state_icon(state))
        self.icon.setToolTip(f"Cove: {self.label} {state}" + (f"\n{reason}" if reason else ""))

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self._open()

    def rebuild(self) -> None:
        m = self.menu
        m.clear()
        for old in self._subs:
            old.deleteLater()
        self._subs = []
        state = self.store.state.value
        m.addAction(f"{fmt.initial_capital(self.label)}: {state}").setEnabled(False)
        if state == "running":
            m.addAction(f"Stop {self.label}", self._stop)
        else:
            m.addAction(f"Start {self.label}", self._start).setEnabled(state != "starting")
        m.addSeparator()
        for c in sorted(self.store.containers.running(), key=fmt.container_name):
            self._container_menu(c)
        self._stopped_menu()
        m.addSeparator()
        m.addAction("Open dashboard", self._open)
        m.addAction("Quit Cove (containers keep running)", self._quit)

    def _container_menu(self, c: dict[str, Any]) -> None:
        key, name = str(c["Id"]), fmt.container_name(c)
        sub = self._submenu(f"● {name}")
        sub.addAction("Stop", functools.partial(self._act, "stop", name, key))
        sub.addAction("Restart", functools.partial(self._act, "restart", name, key))
        for port in fmt.published_ports(c):
            url = f"http://localhost:{port}"
            sub.addAction(f"Open {url}", functools.partial(Desktop.openUrl, QUrl(url)))
        sub.addAction("Show logs", lambda: self._logs(key))
        sub.addAction("Copy ID", lambda: QGuiApplication.clipboard().setText(key))

    def _stopped_menu(self) -> None:
        stopped = [c for c in self.store.containers.rows() if c.get("State") == "exited"]
        stopped.sort(key=lambda c: -int(c.get("Created") or 0))
        if not stopped:
            return
        sub = self._submenu("Recently stopped")
        for c in stopped[:RECENT_STOPPED]:
            key, name = str(c["Id"]), fmt.container_name(c)
            sub.addAction(f"Start {name}", functools.partial(self._act, "start", name, key))

    def _submenu(self, title: str) -> QMenu:
        sub = QMenu(title, self.menu)
        self.menu.addMenu(sub)
        self._subs.append(sub)
        return sub

    def _act(self, verb: str, name: str, key: str) -> None:
        self.store.act(f"{verb} {name}", lambda client: getattr(client, verb)(key))
