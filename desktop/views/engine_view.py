"""Engine / VM: status, start/stop/restart, resources, disk usage (system df), logs."""

from __future__ import annotations

import time
from typing import Any

from desktop import settings as settings_mod
from desktop.control import EngineControl, VMEngine, describe_vm_event
from desktop.qt import (
    QFontDatabase,
    QFormLayout,
    QGridLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QPlainTextEdit,
    QSpinBox,
    Qt,
    QTimer,
    QVBoxLayout,
    QWidget,
)
from desktop.settings import Settings
from desktop.store import Store
from desktop.views.common import button, card, row, section, title
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
            box.setMaximumWidth(160)
        self.about = QGridLayout()
        self.df = QGridLayout()
        self.logs = QPlainTextEdit()
        self.logs.setReadOnly(True)
        self.logs.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.logs.setObjectName("log")
        self.vm_events = QListWidget()
        self.vm_events.setObjectName("events")
        # Lines carry socket paths: wrap them in the card rather than scroll sideways.
        self.vm_events.setWordWrap(True)
        self.vm_events.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.vm_state = QLabel()
        self._vm_timer = QTimer(self)
        self._vm_timer.setInterval(2000)
        self._vm_timer.timeout.connect(self.load_vm)
        self._build()
        store.state_changed.connect(self.show_state)
        self.show_state(store.state.value, store.reason)

    def _build(self) -> None:
        label = self.control.label
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 16, 16, 16)
        lay.setSpacing(12)
        self.start_button = button(f"Start {label}", self.start, "primary")
        self.stop_button = button(f"Stop {label}", self.stop)
        self.restart_button = button(f"Restart {label}", self.restart)
        lay.addLayout(row(title("Virtual machine" if label == "VM" else "Engine"), self.state,
                          self.start_button, self.stop_button, self.restart_button,
                          stretch_after=1))
        sub = QVBoxLayout()
        sub.setSpacing(2)
        sub.addWidget(self.endpoint)
        sub.addWidget(self.reason)
        lay.addLayout(sub)
        cards = QGridLayout()
        cards.setHorizontalSpacing(12)
        cards.setVerticalSpacing(12)
        if isinstance(self.control, VMEngine):
            # CPUs/memory/disk only mean something for a VM; a local engine uses the host's.
            form = QFormLayout()
            form.setHorizontalSpacing(16)
            form.setVerticalSpacing(8)
            form.addRow("CPUs", self.cpus)
            form.addRow("Memory", self.memory)
            form.addRow("Disk", self.disk)
            cards.addWidget(card("Resources", form, button("Apply", self.apply_resources)), 0, 0)
        else:
            self.about.setHorizontalSpacing(24)
            self.about.setVerticalSpacing(8)
            self.about.setColumnStretch(1, 1)
            cards.addWidget(card("About this engine", self.about), 0, 0)
        self.df.setHorizontalSpacing(24)
        self.df.setVerticalSpacing(8)
        self.df.setColumnStretch(0, 1)
        cards.addWidget(card("Disk usage", self.df, button("Refresh", self.load_df)), 0, 1)
        if isinstance(self.control, VMEngine):
            vm = QVBoxLayout()
            vm.addWidget(self.vm_state)
            vm.addWidget(self.vm_events, 1)
            cards.addWidget(card("VM events", vm), 0, 2)
            cards.setColumnStretch(2, 2)
        cards.setColumnStretch(0, 1)
        cards.setColumnStretch(1, 1)
        lay.addLayout(cards)
        lay.addLayout(row(section("Engine log"), button("Refresh", self.load_logs),
                          stretch_after=0))
        lay.addWidget(self.logs, 1)

    def show_state(self, state: str, reason: str) -> None:
        self.start_button.setEnabled(state in ("stopped", "error"))
        self.stop_button.setEnabled(state == "running")
        self.restart_button.setEnabled(state in ("running", "error"))
        self.state.setText(STATE_WORDS.get(state, state))
        self.state.setStyleSheet(f"font-size: 13pt; font-weight: 600; "
                                 f"color: {STATE_COLOURS.get(state, '#656d76')}")
        self.reason.setText(reason)
        if state == "running":
            self.load_df()
            self.store.runner.submit(self.store.client.info, self._show_about, lambda e: None)

    def start(self) -> None:
        from desktop.store import EngineState

        self.store.set_state(EngineState.STARTING, f"starting the {self.control.label}")
        self.store.runner.submit(self.control.start, lambda _: self.store.retry_now(),
                                 self._control_failed, what="start")

    def stop(self) -> None:
        self.store.runner.submit(self.control.stop, lambda _: self.load_logs(),
                                 self._control_failed, what="stop")

    def restart(self) -> None:
        from desktop.store import EngineState

        def both() -> None:
            self.control.stop()
            self.control.start()
        # Like Start: "starting" until it connects, not the "stopped" of the way down.
        self.store.set_state(EngineState.STARTING, f"starting the {self.control.label} again")
        self.store.runner.submit(both, lambda _: self.store.retry_now(), self._control_failed,
                                 what="restart")

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
        _clear(self.df)
        for col, head in enumerate(("", "Total", "Active", "Size")):
            self.df.addWidget(_cell(head, header=True, right=col > 0), 0, col)
        for r, (kind, total, active, size) in enumerate(df_rows(df), start=1):
            for col, text in enumerate((kind, str(total), str(active), human_size(size))):
                self.df.addWidget(_cell(text, right=col > 0, strong=col == 0), r, col)
        self.df.setRowStretch(len(df_rows(df)) + 1, 1)

    def _show_about(self, info: dict[str, Any]) -> None:
        _clear(self.about)
        mem = info.get("MemTotal")
        for r, (name, value) in enumerate((
                ("Version", info.get("ServerVersion")),
                ("Host", " · ".join(str(x) for x in (info.get("OperatingSystem"),
                                                      info.get("KernelVersion")) if x)),
                ("CPUs / memory", f"{info.get('NCPU', '?')} CPUs · "
                                  f"{human_size(mem) if isinstance(mem, int) else '?'}"),
                ("Storage", info.get("Driver")),
                ("Data root", info.get("DockerRootDir")))):
            self.about.addWidget(_cell(name, header=True), r, 0)
            value_label = _cell(str(value or "-"))
            value_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.about.addWidget(value_label, r, 1)

    def load_vm(self) -> None:
        control = self.control
        if isinstance(control, VMEngine):
            self.store.runner.submit(lambda: (control.status(), control.events()),
                                     self._show_vm, lambda e: self.vm_state.setText(str(e)))

    def _show_vm(self, result: tuple[tuple[str, str], list[Any]]) -> None:
        (state, reason), events = result
        self.vm_state.setText(f"{STATE_WORDS.get(state, state)}" + (f" · {reason}"
                                                                     if reason else ""))
        self.vm_events.clear()
        for ev in reversed(events):
            stamp = time.strftime("%H:%M:%S", time.localtime(ev.time))
            self.vm_events.addItem(f"{stamp}  {describe_vm_event(ev)}")

    def load_logs(self) -> None:
        self.store.runner.submit(self.control.logs, self.logs.setPlainText, lambda e: None)

    def showEvent(self, event: Any) -> None:
        self.load_logs()
        if isinstance(self.control, VMEngine):
            self.load_vm()
            self._vm_timer.start()
        super().showEvent(event)

    def hideEvent(self, event: Any) -> None:
        self._vm_timer.stop()
        super().hideEvent(event)


def _clear(grid: QGridLayout) -> None:
    while grid.count():
        item = grid.takeAt(0)
        widget = item.widget() if item is not None else None
        if widget is not None:
            widget.deleteLater()


def _cell(text: str, header: bool = False, right: bool = False, strong: bool = False) -> QLabel:
    label = QLabel(text)
    if header:
        label.setObjectName("colhead")
    elif strong:
        label.setObjectName("strong")
    if right:
        label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return label
