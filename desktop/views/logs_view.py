"""Container logs: follow, timestamps, search; stderr shown in red.

The text widget keeps at most MAX_LINES blocks, which is what keeps memory flat
while following a chatty container for hours.
"""

from __future__ import annotations

import html

from desktop.qt import (
    QCheckBox,
    QFont,
    QFontDatabase,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTextCursor,
    QTextDocument,
    QVBoxLayout,
    QWidget,
)
from desktop.streaming import StreamFollower
from desktop.views.common import button, row
from runtime.api.streams import STDERR

MAX_LINES = 5000
OUT_COLOUR, ERR_COLOUR = "#1f2328", "#cf222e"
Chunk = tuple[int, bytes]


class LogsView(QWidget):
    def __init__(self, host: str, tail: int = 500, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._host, self._tail = host, tail
        self._key: str | None = None
        self._follower: StreamFollower[Chunk] | None = None
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(MAX_LINES)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.follow = QCheckBox("Follow")
        self.follow.setChecked(True)
        self.timestamps = QCheckBox("Timestamps")
        self.timestamps.toggled.connect(lambda _: self._restart())
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search logs")
        self.search.setClearButtonEnabled(True)
        self.search.returnPressed.connect(self.find_next)
        self.status = QLabel()
        self.status.setObjectName("muted")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addLayout(row(self.search, button("Find", self.find_next), self.follow,
                          self.timestamps, button("Clear", self.text.clear), self.status,
                          stretch_after=4))
        lay.addWidget(self.text, 1)

    def set_container(self, key: str | None) -> None:
        if key != self._key:
            self._key = key
            self._restart()

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def _restart(self) -> None:
        self.stop()
        self.text.clear()
        if self._key is None:
            return
        key, ts, tail = self._key, self.timestamps.isChecked(), str(self._tail)
        self.status.setText("following")
        self._follower = StreamFollower(
            self._host,
            lambda c: c.logs(key, follow=True, timestamps=ts, tail=tail),
            self.append, self._ended, self).start()

    def append(self, chunks: list[Chunk]) -> None:
        bar = self.text.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        # appendHtml per line (not a long-lived QTextCursor): the document trims old
        # blocks at MAX_LINES, which invalidates cursors held across inserts.
        for stream, data in chunks:
            colour = ERR_COLOUR if stream == STDERR else OUT_COLOUR
            for line in data.decode("utf-8", "replace").rstrip("\n").split("\n"):
                self.text.appendHtml(f'<span style="white-space:pre; color:{colour}">'
                                     f"{html.escape(line)}</span>")
        if self.follow.isChecked() and at_end:
            bar.setValue(bar.maximum())

    def _ended(self, reason: str) -> None:
        self.status.setText(f"stream ended: {reason}" if reason else "stream ended")

    def find_next(self) -> None:
        needle = self.search.text()
        if not needle:
            return
        if not self.text.find(needle):
            # Wrap around: start again from the top once.
            self.text.moveCursor(QTextCursor.MoveOperation.Start)
            found = self.text.find(needle, QTextDocument.FindFlag(0))
            self.status.setText("" if found else f"no match for {needle!r}")
        self.follow.setChecked(False)


def monospace() -> QFont:
    return QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
