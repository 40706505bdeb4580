"""The "engine unreachable" banner: the reason in words, and a Start action."""

from __future__ import annotations

from collections.abc import Callable

from desktop.qt import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

TEXT = {
    "stopped": "The {label} is not running.",
    "starting": "Starting the {label}…",
    "error": "The {label} reported an error.",
}


class EngineBanner(QFrame):
    def __init__(self, label: str, on_start: Callable[[], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self._label = label
        self.headline = QLabel()
        self.headline.setStyleSheet("font-weight: 600")
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        self.start_button = QPushButton(f"Start {label}")
        self.start_button.setObjectName("primary")
        self.start_button.clicked.connect(lambda: on_start())
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 8, 12, 8)
        lay.addWidget(self.headline)
        lay.addWidget(self.reason, 1)
        lay.addWidget(self.start_button)
        self.hide()

    def show_state(self, state: str, reason: str) -> None:
        if state == "running":
            self.hide()
            return
        self.headline.setText(TEXT.get(state, TEXT["error"]).format(label=self._label))
        self.reason.setText(reason)
        self.start_button.setEnabled(state != "starting")
        self.setProperty("severity", "error" if state == "error" else "warn")
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()
