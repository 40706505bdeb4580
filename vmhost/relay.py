"""The Docker API relay: a host Unix socket whose every connection reaches the guest engine.

``docker -H unix://<relay.sock>`` connects here. Each accepted connection becomes an SSH
``direct-tcpip`` channel, on the one shared SSH connection, to guest 127.0.0.1:API_PORT,
where PID 1 (:mod:`guestagent.apiproxy`) splices it to the engine's Unix socket after
checking the token line the relay sends first: no process is started in the guest per
connection. When that port does not answer (an older guest image, PID 1 not up yet), the
connection falls back to a ``guestagent dial-stdio`` exec channel (sshd session + socat,
130-180 ms under TCG). A failed channel open closes just that client connection;
:class:`vmhost.ssh.SSHGuest` reconnects on the next one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

from guestagent.protocol import API_PORT
from runtime.api.errors import CoveError
from vmhost.guest import DIAL_STDIO, GuestConnection
from vmhost.streams import SocketStream, Stream, splice

log = logging.getLogger(__name__)


def open_api(
    guest: GuestConnection,
    preamble: bytes | None,
    *,
    port: int = API_PORT,
    command: str = DIAL_STDIO,
) -> tuple[Stream, str]:
    """A byte stream to the guest engine's API and how it was opened ("tcp" or "exec").
    *preamble* None means exec only. Raises CoveError when neither path works."""
    if preamble is not None:
        try:
            ch = guest.open_tcp(port)
        except CoveError as e:
            log.debug("relay: guest api port: %s; falling back to %s", e, command)
        else:
            try:
                ch.sendall(preamble)
                return ch, "tcp"
            except (OSError, EOFError):
                ch.close()
    return guest.open_exec(command), "exec"


class UnixRelay:
    def __init__(
        self,
        path: Path,
        guest: GuestConnection,
        command: str = DIAL_STDIO,
        *,
        preamble: bytes | None = None,
        api_port: int = API_PORT,
    ) -> None:
        self.path = path
        self.guest = guest
        self.command = command
        self.preamble = preamble
        self.api_port = api_port
        self.by_path: dict[str, int] = {"tcp": 0, "exec": 0}
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
            channel, how = open_api(
                self.guest, self.preamble, port=self.api_port, command=self.command
            )
        except CoveError as e:
            log.warning("relay: %s", e)
            conn.close()
            return
        self.by_path[how] += 1
        splice(SocketStream(conn), channel, name="relay")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
