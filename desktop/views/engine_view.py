"""Engine / VM: status, start/stop/restart, resources, disk usage (system df), logs."""

from __future__ import annotations

from typing import Any

from desktop import settings as settings_mod
from desktop.control import EngineControl
from desktop.qt import (
    QFontDatabase,
    QFormLayout,
    QGridLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from desktop.settings import Settings
from desktop.store import Store
from desktop.views.common import button, row, title
from runtime.api.units import human_size

STATE_WORDS = {"running": "● Running", "starting": "◌ Starting", "stopped": "○ Stopped",
               "error": "✕ Error"}
STATE_COLOURS = {"running": "#1a7f37", "starting": "#9a6700", "stopped": "#656d76",
                 "error": "#cf222e"}


def df_rows(df: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    """(kind, count, active, size) per kind, as `docker system df` sums them."""
    containers = df.get("Containers") or []
    images = df.get("Images") or []
    volumes = df.get("Volumes") or []
    return [
        ("Images", len(images), sum(1 for i in images if (i.get("Containers") or 0) > 0),
         int(df.get("LayersSize") or sum(int(i.get("Size") or 0) for i in images))),
        ("Containers", len(containers),
         sum(1 for c in containers if c.get("State") == "running"),
         sum(int(c.get("SizeRw") or 0) for c in containers)),
        ("Volumes", len(volumes),
         sum(1 for v in volumes if ((v.get("UsageData") or {}).get("RefCount") or 0) > 0),
         sum(max(0, int((v.get("UsageData") or {}).get("Size") or 0)) for v in volumes)),
    ]


class EngineView(QWidget):
    def __init__(self, store: Store, control: EngineControl, settings: Settings,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store, self.control, self.settings = store, control, settings
        self.state = QLabel()
        self.state.setStyleSheet("font-size: 13pt; font-weight: 600")
        self.reason = QLabel()
        self.reason.setObjectName("muted")
        self.reason.setWordWrap(True)
        self.endpoint = QLabel(store.host)
        self.endpoint.setObjectName("muted")
        self.cpus, self.memory, self.disk = QSpinBox(), QSpinBox(), QSpinBox()
        for box, (lo, hi, value, suffix) in ((self.cpus, (1, 64, settings.cpus, " CPUs")),
                                             (self.memory, (1, 256, settings.memory_gib, " GiB")),
                                             (self.disk, (8, 4096, settings.disk_gib, " GiB"))):
            box.setRange(lo, hi)
            box.setValue(value)
            box.setSuffix(suffix)
        self.df = QGridLayout()
        self.logs = QPlainTextEdit()
        self.logs.setReadOnly(True)
        self.logs.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self._build()
        store.state_changed.connect(self.show_state)
        self.show_state(store.state.value, store.reason)

    def _build(self) -> None:
        label = self.control.label
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 16, 16, 16)
        lay.setSpacing(12)
        lay.addLayout(row(title(f"Engine{' / VM' if label == 'VM' else ''}"), self.state,
                          button(f"Start {label}", self.start, "primary"),
                          button(f"Stop {label}", self.stop),
                          button(f"Restart {label}", self.restart), stretch_after=1))
        lay.addWidget(self.reason)
        lay.addWidget(self.endpoint)
        form = QFormLayout()
        form.addRow("CPUs", self.cpus)
        form.addRow("Memory", self.memory)
        form.addRow("Disk", self.disk)
        form.addRow("", button("Apply resources", self.apply_resources))
        lay.addLayout(row(_boxed("Resources", form), _boxed("Disk usage", self.df)))
        lay.addLayout(row(title("Logs"), button("Refresh", self.load_logs),
                          button("Refresh disk usage", self.load_df), stretch_after=0))
        lay.addWidget(self.logs, 1)

    def show_state(self, state: str, reason: str) -> None:
        self.state.setText(STATE_WORDS.get(state, state))
        self.state.setStyleSheet(f"font-size: 13pt; font-weight: 600; "
                                 f"color: {STATE_COLOURS.get(state, '#656d76')}")
        self.reason.setText(reason)
        if state == "running":
            self.load_df()

    def start(self) -> None:
        from desktop.store import EngineState

        self.store.set_state(EngineState.STARTING, f"starting the {self.control.label}")
        self.store.runner.submit(self.control.start, lambda _: self.store.retry_now(),
                                 self._control_failed, what="start")

    def stop(self) -> None:
        self.store.runner.submit(self.control.stop, lambda _: self.load_logs(),
                                 self._control_failed, what="stop")

    def restart(self) -> None:
        def both() -> None:
            self.control.stop()
            self.control.start()
        self.store.runner.submit(both, lambda _: self.store.retry_now(), self._control_failed)

    def _control_failed(self, exc: BaseException) -> None:
        from desktop.store import EngineState

        self.store.set_state(EngineState.ERROR, str(exc))

    def apply_resources(self) -> None:
        new = (self.cpus.value(), self.memory.value(), self.disk.value())
        if new == self.settings.resources():
            return
        self.settings.cpus, self.settings.memory_gib, self.settings.disk_gib = new
        settings_mod.save(self.settings)
        answer = QMessageBox.question(
            self, "Restart needed",
            f"The new resources apply after the {self.control.label} restarts. Restart now?")
        if answer == QMessageBox.StandardButton.Yes:
            self.restart()

    def load_df(self) -> None:
        self.store.runner.submit(self.store.client.df, self._show_df, lambda e: None)

    def _show_df(self, df: dict[str, Any]) -> None:
        while self.df.count():
            item = self.df.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        for col, head in enumerate(("Type", "Total", "Active", "Size")):
            self.df.addWidget(_bold(head), 0, col)
        for r, (kind, total, active, size) in enumerate(df_rows(df), start=1):
            for col, text in enumerate((kind, str(total), str(active), human_size(size))):
                self.df.addWidget(QLabel(text), r, col)

    def load_logs(self) -> None:
        self.store.runner.submit(self.control.logs, self.logs.setPlainText, lambda e: None)

    def showEvent(self, event: Any) -> None:
        self.load_logs()
        super().showEvent(event)


def _bold(text: str) -> QLabel:
    label = QLabel(text)
    label.setStyleSheet("font-weight: 600; color: #656d76")
    return label


def _boxed(heading: str, layout: Any) -> QWidget:
    box = QWidget()
    box.setStyleSheet("QWidget#card { background: white; border: 1px solid #d0d7de; "
                      "border-radius: 6px; }")
    box.setObjectName("card")
    inner = QVBoxLayout(box)
    inner.setContentsMargins(12, 12, 12, 12)
    inner.addWidget(_bold(heading))
    inner.addLayout(layout)
    return box
