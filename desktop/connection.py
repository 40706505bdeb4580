"""Connections the desktop can cut: a Transport wrapper that remembers its sockets.

Streams (events, logs -f, stats, exec) block in ``recv`` with no timeout; the
only clean way to stop one from the UI thread is to shut its socket down,
which makes the blocked read return EOF in the worker thread.
"""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Mapping

from runtime.api.client import Client
from runtime.api.transport import Transport, transport_for

# Ordinary calls give up after this long so a hung engine shows up as an error
# instead of a worker stuck forever; streams use timeout=None.
CALL_TIMEOUT = 15.0


class TrackingTransport:
    """Delegates to ``inner`` and keeps (weakly) every socket it handed out."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    @property
    def endpoint(self) -> str:
        return self._inner.endpoint

    @property
    def headers(self) -> Mapping[str, str]:
        return self._inner.headers

    def connect(self) -> socket.socket:
        sock = self._inner.connect()
        with self._lock:
            self._socks.add(sock)
        return sock

    def cut(self) -> None:
        """Shut every open socket down; blocked readers on other threads see EOF."""
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def call_client(host: str) -> Client:
    """A client for short calls (timeouts on)."""
    return Client(transport_for(host, timeout=CALL_TIMEOUT))


def stream_client(host: str) -> tuple[Client, TrackingTransport]:
    """A client for one long-lived stream, plus the handle that cuts it."""
    tracking = TrackingTransport(transport_for(host, timeout=None))
    return Client(tracking), tracking
