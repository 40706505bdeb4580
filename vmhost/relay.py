"""The Docker API relay: a host Unix socket whose every connection is a guest exec channel.

``docker -H unix://<relay.sock>`` connects here; each accepted connection gets a fresh
``guestagent dial-stdio`` channel on the shared SSH connection and the two are spliced.
paramiko cannot forward Unix sockets, which is why the guest side is an exec (like
``docker system dial-stdio``). A failed channel open closes just that client connection;
:class:`vmhost.ssh.SSHGuest` reconnects on the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

from runtime.api.errors import CoveError
from vmhost.guest import DIAL_STDIO, GuestConnection
from vmhost.streams import SocketStream, splice

log = logging.getLogger(__name__)


class UnixRelay:
    def __init__(self, path: Path, guest: GuestConnection, command: str = DIAL_STDIO) -> None:
        self.path = path
        self.guest = guest
        self.command = command
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.connections = 0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.listen(128)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="relay", daemon=True)
        self._thread.start()
        log.info("relay listening on %s", self.path)

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        self.connections += 1
        try:
            channel = self.guest.open_exec(self.command)
        except CoveError as e:
            log.warning("relay: %s", e)
            conn.close()
            return
        splice(SocketStream(conn), channel, name="relay")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
