"""The dashboard window: sidebar, engine banner, one page per resource kind."""

from __future__ import annotations

from collections.abc import Callable

from desktop import formatting as fmt
from desktop import settings as settings_mod
from desktop.control import EngineControl
from desktop.qt import (
    QByteArray,
    QCloseEvent,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)
from desktop.settings import Settings
from desktop.store import Store
from desktop.views.banner import EngineBanner
from desktop.views.containers_view import ContainersView
from desktop.views.engine_view import EngineView
from desktop.views.resources_view import ImagesView, NetworksView, VolumesView
from desktop.views.style import STYLE

NOTICE_MS = 8000


class MainWindow(QMainWindow):
    def __init__(self, store: Store, control: EngineControl, settings: Settings,
                 on_start_engine: Callable[[], None], keep_running_on_close: bool) -> None:
        super().__init__()
        self.store, self.settings = store, settings
        self.keep_running_on_close = keep_running_on_close
        self.setWindowTitle("Cove")
        self.setStyleSheet(STYLE)
        self.resize(1180, 760)
        self.banner = EngineBanner(control.label, on_start_engine)
        self.containers = ContainersView(store, settings.follow_tail)
        self.engine = EngineView(store, control, settings)
        self.pages: list[tuple[str, QWidget]] = [
            ("Containers", self.containers), ("Images", ImagesView(store)),
            ("Volumes", VolumesView(store)), ("Networks", NetworksView(store)),
            ("Engine", self.engine)]
        self.sidebar = QListWidget()
        self.sidebar.setObjectName("sidebar")
        self.engine_dot = QLabel()
        self.engine_dot.setObjectName("engine-dot")
        self._label = fmt.initial_capital(control.label)
        self.stack = QStackedWidget()
        for name, page in self.pages:
            self.sidebar.addItem(name)
            self.stack.addWidget(page)
        self.sidebar.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.sidebar.setCurrentRow(0)
        self._layout()
        store.state_changed.connect(self._engine_state)
        store.notice.connect(lambda text: self.statusBar().showMessage(text, NOTICE_MS))
        store.runner.failed.connect(
            lambda what, exc: self.statusBar().showMessage(f"{what} failed: {exc}", NOTICE_MS))
        self._engine_state(store.state.value, store.reason)
        if settings.geometry:
            self.restoreGeometry(QByteArray.fromBase64(settings.geometry.encode()))

    def _layout(self) -> None:
        side = QWidget()
        side.setObjectName("side")
        side.setFixedWidth(200)
        side_col = QVBoxLayout(side)
        side_col.setContentsMargins(0, 0, 0, 0)
        side_col.setSpacing(0)
        brand = QLabel("Cove")
        brand.setObjectName("brand")
        side_col.addWidget(brand)
        side_col.addWidget(self.sidebar, 1)
        side_col.addWidget(self.engine_dot)
        banner_box = QWidget()
        banner_lay = QVBoxLayout(banner_box)
        banner_lay.setContentsMargins(16, 16, 16, 0)  # the pages' own margins: edges line up
        banner_lay.addWidget(self.banner)
        self.banner_box = banner_box
        right = QWidget()
        col = QVBoxLayout(right)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(0)
        col.addWidget(banner_box)
        col.addWidget(self.stack, 1)
        central = QWidget()
        lay = QHBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(side)
        lay.addWidget(right, 1)
        self.setCentralWidget(central)

    def _engine_state(self, state: str, reason: str) -> None:
        colour = {"running": "#3fb950", "starting": "#d29922", "error": "#f85149"}.get(
            state, "#8c959f")
        self.engine_dot.setText(f'<span style="color:{colour}">●</span> '
                                f'<span style="color:#d0d7de">{self._label} {state}</span>')
        self.engine_dot.setToolTip(reason or self.store.host)
        self.banner.show_state(state, reason)
        self.banner_box.setVisible(state != "running")

    def show_page(self, name: str) -> None:
        for i, (page_name, _) in enumerate(self.pages):
            if page_name == name:
                self.sidebar.setCurrentRow(i)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settings.geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        try:
            settings_mod.save(self.settings)
        except OSError as e:
            self.statusBar().showMessage(f"could not save settings: {e}")
        # Streams of a hidden window cost for nothing; the tray keeps its own picture.
        self.containers.shutdown()
        super().closeEvent(event)
