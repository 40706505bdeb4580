"""Byte streams and the pump that splices two of them (relay and port forwards share it).

A :class:`Stream` is the smallest duplex surface both a socket and a paramiko Channel offer.
:func:`splice` copies both ways on two threads and passes half-closes on: EOF from one side
becomes ``shutdown_write`` on the other, and both are closed when both directions are done.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Protocol

log = logging.getLogger(__name__)

CHUNK = 64 * 1024


class Stream(Protocol):
    def recv(self, n: int) -> bytes:
        """Up to *n* bytes; b"" at EOF. Blocks."""
        ...

    def sendall(self, data: bytes) -> None:
        """Write all of *data*; raises OSError (or EOFError) when the peer is gone."""
        ...

    def shutdown_write(self) -> None:
        """Send EOF; reading stays possible. Idempotent."""
        ...

    def close(self) -> None:
        """Release everything. Idempotent."""
        ...


class SocketStream:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, n: int) -> bytes:
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def _copy(src: Stream, dst: Stream, done: threading.Event, other_done: threading.Event) -> None:
    try:
        while data := src.recv(CHUNK):
            dst.sendall(data)
    except (OSError, EOFError) as e:
        log.debug("splice: %s", e)
    finally:
        dst.shutdown_write()
        done.set()
        if other_done.is_set():
            src.close()
            dst.close()


def splice(a: Stream, b: Stream, *, name: str = "splice") -> threading.Thread:
    """Copy a->b and b->a until both directions end; returns the a->b thread (daemon)."""
    a_done, b_done = threading.Event(), threading.Event()
    t1 = threading.Thread(target=_copy, args=(a, b, a_done, b_done), name=f"{name}>", daemon=True)
    t2 = threading.Thread(target=_copy, args=(b, a, b_done, a_done), name=f"{name}<", daemon=True)
    t1.start()
    t2.start()
    return t1
