"""Bootstrap: wire settings, TaskRunner, Store (client + EventPump), window and tray.

The tray is the app's root when a system tray exists (maestral-qt): closing the
window hides it and the app stays in the tray. Without a tray the app says so
and lives as a plain window; closing it quits. Quitting never stops containers.
"""

from __future__ import annotations

import logging
import os
import sys

from desktop import settings as settings_mod
from desktop.control import EngineControl, VMEngine, control_for
from desktop.qt import QApplication, QCoreApplication, QObject, QSystemTrayIcon
from desktop.settings import Settings
from desktop.store import EngineState, Store
from desktop.tasks import TaskRunner
from desktop.tray import TrayController, state_icon
from desktop.views.main_window import MainWindow
from runtime.api.transport import TOKEN_ENV
from vmhost import control as vm_control

log = logging.getLogger(__name__)


class DesktopApp(QObject):
    def __init__(self, settings: Settings, control: EngineControl | None = None,
                 use_tray: bool = True) -> None:
        super().__init__()
        self.settings = settings
        self.control = control or control_for(settings)
        self.runner = TaskRunner(parent=self)
        self.store = Store(settings.host, self.runner, self)
        if isinstance(self.control, VMEngine):
            self.store.explain = self.control.status
        self.tray_available = use_tray and QSystemTrayIcon.isSystemTrayAvailable()
        self.window = MainWindow(self.store, self.control, settings, self.start_engine,
                                 keep_running_on_close=self.tray_available)
        self.window.setWindowIcon(state_icon("running"))
        self.tray: TrayController | None = None
        if self.tray_available:
            self.tray = TrayController(self.store, self.control.label, self.open_dashboard,
                                       self.start_engine, self.stop_engine, self.show_logs,
                                       self.quit)
        QApplication.setQuitOnLastWindowClosed(not self.tray_available)

    def start(self) -> None:
        self.store.start()
        self.window.show()
        if self.tray is not None:
            self.tray.show()
        else:
            self.window.statusBar().showMessage(
                "No system tray on this desktop: Cove runs as a window; closing it quits.")

    def open_dashboard(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def show_logs(self, key: str) -> None:
        self.open_dashboard()
        self.window.show_page("Containers")
        view = self.window.containers
        view.details.setCurrentWidget(view.logs)
        pos = self.store.containers.position(key)
        if pos is not None:
            src = self.store.containers.index(pos, 0)
            view.table.selectRow(view.table.proxy.mapFromSource(src).row())

    def start_engine(self) -> None:
        self.store.set_state(EngineState.STARTING, f"starting the {self.control.label}")
        self.runner.submit(self.control.start, lambda _: self.store.retry_now(),
                           lambda e: self.store.set_state(EngineState.ERROR, str(e)),
                           what="start engine")

    def stop_engine(self) -> None:
        self.runner.submit(self.control.stop, None,
                           lambda e: self.store.notice.emit(f"stop failed: {e}"))

    def quit(self) -> None:
        self.shutdown()
        QCoreApplication.quit()

    def shutdown(self) -> None:
        self.window.containers.shutdown()
        self.store.close()
        self.runner.shutdown()
        if self.tray is not None:
            self.tray.icon.hide()


def main(host: str | None = None, no_tray: bool = False) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("Cove")
    app.setApplicationDisplayName("Cove")
    settings = settings_mod.load()
    if host:
        settings.host = host
    elif settings.mode == "vm":  # the supervisor's relay to the guest engine
        settings.host, token = vm_control.relay_endpoint(settings.vm_name)
        if token is not None:  # a TCP relay (Windows): transports send it (COVE_HOST_TOKEN)
            os.environ[TOKEN_ENV] = token
    desktop = DesktopApp(settings, use_tray=not no_tray)
    desktop.start()
    try:
        return int(app.exec())
    finally:
        desktop.shutdown()
