"""A shell in the selected container: ``exec`` with a TTY, shown in a TerminalWidget."""

from __future__ import annotations

from collections.abc import Iterator

from desktop.qt import QComboBox, QLabel, QVBoxLayout, QWidget
from desktop.store import Store
from desktop.streaming import StreamFollower
from desktop.views.common import button, row
from desktop.views.terminal import TerminalWidget
from runtime.api.client import Client
from runtime.api.wire import Hijacked

SHELLS = ["/bin/sh", "/bin/bash", "/bin/ash"]


class TerminalView(QWidget):
    def __init__(self, store: Store, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._key: str | None = None
        self._exec_id: str | None = None
        self._hijacked: Hijacked | None = None
        self._follower: StreamFollower[bytes] | None = None
        self.term = TerminalWidget(self._send, self._resized)
        self.shell = QComboBox()
        self.shell.addItems(SHELLS)
        self.shell.setEditable(True)
        self.shell.setMinimumWidth(140)
        self.status = QLabel("Select a running container and press Connect.")
        self.status.setObjectName("muted")
        self.connect_button = button("Connect", self.open_shell, "primary")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addLayout(row(self.shell, self.connect_button,
                          button("Disconnect", self.close_shell), self.status, stretch_after=3))
        lay.addWidget(self.term, 1)

    def set_container(self, key: str | None) -> None:
        if key != self._key:
            self.close_shell()
            self._key = key

    def open_shell(self) -> None:
        self.close_shell()
        if self._key is None:
            return
        self.term.vt.reset()
        self.status.setText("connecting…")
        self._follower = StreamFollower(self._store.host, self._session, self._output,
                                        self._ended, self).start()
        self.term.setFocus()

    def close_shell(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
            self.status.setText("disconnected")
        self._hijacked, self._exec_id = None, None

    def _session(self, client: Client) -> Iterator[bytes]:
        """Runs on the follower's thread: create, start, then relay output."""
        assert self._key is not None
        cols, rows = self.term.grid_size()
        config = {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
                  "Tty": True, "Cmd": [self.shell.currentText()], "Env": ["TERM=xterm"],
                  "ConsoleSize": [rows, cols]}
        self._exec_id = str(client.exec_create(self._key, config)["Id"])
        hijacked = client.exec_start(self._exec_id, {"Detach": False, "Tty": True,
                                                     "ConsoleSize": [rows, cols]})
        assert hijacked is not None
        self._hijacked = hijacked
        for _stream, data in hijacked.output():
            yield data

    def _output(self, chunks: list[bytes]) -> None:
        self.status.setText("connected")
        self.term.feed(b"".join(chunks))

    def _ended(self, reason: str) -> None:
        self.status.setText(f"session ended: {reason}" if reason else "session ended")
        self._hijacked = None

    def _send(self, data: bytes) -> None:
        if self._hijacked is not None:
            try:
                self._hijacked.send(data)
            except OSError as e:
                self.status.setText(f"write failed: {e}")

    def _resized(self, cols: int, rows: int) -> None:
        exec_id = self._exec_id
        if exec_id is not None:
            self._store.act("resize terminal", lambda c: c.exec_resize(exec_id, rows, cols))
