"""``guestagent dial-stdio``: splice stdin/stdout onto the engine's Unix socket.

paramiko cannot forward Unix sockets, so each Docker API connection from the host is one SSH
exec channel running this verb (like ``docker system dial-stdio``). Half-closes are passed on:
EOF on stdin shuts down the socket's write side, EOF from the engine closes stdout, and the
process exits when the engine side is done.
"""

from __future__ import annotations

import os
import socket
import threading
import time

from runtime.api.errors import Unavailable

CHUNK = 64 * 1024


def connect_unix(path: str, wait: float) -> socket.socket:
    """Connect to *path*, retrying for up to *wait* seconds while the engine starts."""
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError as e:
            sock.close()
            if time.monotonic() >= deadline:
                raise Unavailable(f"dial {path}: {e.strerror or e}") from e
            time.sleep(0.1)


def _stdin_to_sock(in_fd: int, sock: socket.socket) -> None:
    try:
        while data := os.read(in_fd, CHUNK):
            sock.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _sock_to_stdout(sock: socket.socket, out_fd: int) -> None:
    try:
        while data := sock.recv(CHUNK):
            view = memoryview(data)
            while view:
                view = view[os.write(out_fd, view) :]
    except OSError:
        pass


def dial_stdio(path: str, *, in_fd: int = 0, out_fd: int = 1, wait: float = 30.0) -> int:
    """Relay until the engine closes its side; returns an exit status."""
    sock = connect_unix(path, wait)
    pump = threading.Thread(target=_stdin_to_sock, args=(in_fd, sock), daemon=True)
    pump.start()
    try:
        _sock_to_stdout(sock, out_fd)
    finally:
        sock.close()
        os.close(out_fd)
    return 0
