"""Copies bytes both ways between a client's hijacked socket and a process's socket.

The client half-closes when its stdin ends: that becomes a half-close toward
the process (its stdin closes), while output keeps flowing until the process
side closes. Then the client's socket is shut down.
"""

from __future__ import annotations

import contextlib
import selectors
import socket

_BUF = 1 << 16


def splice(client: socket.socket, process: socket.socket, *, forward_stdin: bool) -> None:
    sel = selectors.DefaultSelector()
    sel.register(process, selectors.EVENT_READ, "out")
    if forward_stdin:
        sel.register(client, selectors.EVENT_READ, "in")
    else:
        # Still watch the client: a disconnect must end the stream.
        sel.register(client, selectors.EVENT_READ, "watch")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "out":
                    data = _recv(process)
                    if not data:
                        return
                    client.sendall(data)
                elif key.data == "in":
                    data = _recv(client)
                    if data:
                        process.sendall(data)
                    else:
                        sel.unregister(client)
                        with contextlib.suppress(OSError):
                            process.shutdown(socket.SHUT_WR)
                elif not _recv(client):
                    # EOF only means the client will not write; keep sending output.
                    sel.unregister(client)
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        sel.close()
        with contextlib.suppress(OSError):
            process.close()
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(_BUF)
    except (ConnectionResetError, BrokenPipeError):
        return b""
