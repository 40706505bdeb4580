"""Published ports: guest port events -> host listeners on 127.0.0.1 -> direct-tcpip channels.

:meth:`PortForwarder.apply` is driven by ``guestagent events``; a ``snapshot`` reconciles the
whole set (after a reconnect, ports may have come and gone). A host port that cannot be
bound (in use, privileged) is reported and skipped, never fatal.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from guestagent.protocol import Event, Port
from runtime.api.errors import CoveError
from vmhost.guest import GuestConnection
from vmhost.streams import SocketStream, splice

log = logging.getLogger(__name__)

Notify = Callable[[str, int, str], None]  # (action, port, error)


class PortForwarder:
    def __init__(
        self, guest: GuestConnection, *, host: str = "127.0.0.1", notify: Notify | None = None
    ) -> None:
        self.guest = guest
        self.host = host
        self.notify = notify or (lambda _a, _p, _e: None)
        self._listeners: dict[int, socket.socket] = {}
        self._lock = threading.Lock()

    @property
    def ports(self) -> set[int]:
        with self._lock:
            return set(self._listeners)

    def apply(self, event: Event) -> None:
        if event.type == "snapshot":
            wanted = {p.port for p in event.ports if p.proto == "tcp"}
            for port in self.ports - wanted:
                self._close(port)
            for port in sorted(wanted - self.ports):
                self._open(port)
        elif event.type == "port" and event.port is not None and event.port.proto == "tcp":
            if event.action == "open":
                self._open(event.port.port)
            elif event.action == "close":
                self._close(event.port.port)

    def _open(self, port: int) -> None:
        with self._lock:
            if port in self._listeners:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port))
                sock.listen(64)
            except OSError as e:
                sock.close()
                log.warning("forward %d: %s", port, e)
                self.notify("port-forward-failed", port, str(e))
                return
            self._listeners[port] = sock
        threading.Thread(target=self._serve, args=(sock, port), daemon=True).start()
        self.notify("port-forward-open", port, "")

    def _close(self, port: int) -> None:
        with self._lock:
            sock = self._listeners.pop(port, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread; close alone does not
            sock.close()
            self.notify("port-forward-close", port, "")

    def _serve(self, sock: socket.socket, port: int) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, port), daemon=True).start()

    def _handle(self, conn: socket.socket, port: int) -> None:
        try:
            channel = self.guest.open_tcp(port)
        except CoveError as e:
            log.warning("forward %d: %s", port, e)
            conn.close()
            return
        splice(SocketStream(conn), channel, name=f"fwd{port}")

    def close(self) -> None:
        for port in list(self.ports):
            with contextlib.suppress(OSError):
                self._close(port)


__all__ = ["Port", "PortForwarder"]
