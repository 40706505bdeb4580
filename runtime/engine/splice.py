"""Copies bytes both ways between a client's hijacked socket and a process's socket.

The client half-closes when its stdin ends: that becomes a half-close toward
the process (its stdin closes), while output keeps flowing until the process
side closes. Then the client's socket is shut down.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
from collections.abc import Callable

from runtime.api.errors import InvalidArgument

_BUF = 1 << 16
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """moby's term.ToBytes: ``ctrl-p,ctrl-q`` or single characters, comma-separated."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if len(key) == 1:
            out.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6 and \
                key[5].upper() in "ABCDEFGHIJKLMNOPQRSTUVWXYZ@[\\]^_":
            out.append(ord(key[5].upper()) & 0x1F)
        else:
            raise InvalidArgument(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class EscapeScanner:
    """Holds back a possible detach sequence in stdin; releases it if it does not complete."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""
        self.detached = False

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            if self.keys and byte == self.keys[len(self._held)]:
                self._held += bytes([byte])
                if self._held == self.keys:
                    self.detached = True
                    return bytes(out)
                continue
            out += self._held
            self._held = b""
            if self.keys and byte == self.keys[0]:
                self._held = bytes([byte])
            else:
                out.append(byte)
        return bytes(out)


def splice(client: socket.socket, process: socket.socket, *, forward_stdin: bool,
           detach_keys: bytes = b"", wrap: Callable[[bytes], bytes] | None = None) -> bool:
    """Pump until the process side ends; True if the client detached with *detach_keys*.

    *wrap* transforms each chunk of output (framing a TTY's bytes as stdout).
    """
    escape = EscapeScanner(detach_keys)
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
                        return False
                    client.sendall(wrap(data) if wrap else data)
                elif key.data == "in":
                    data = _recv(client)
                    if data:
                        data = escape.feed(data)
                        if data:
                            process.sendall(data)
                        if escape.detached:
                            return True
                    else:
                        sel.unregister(client)
                        with contextlib.suppress(OSError):
                            process.shutdown(socket.SHUT_WR)
                elif not _recv(client):
                    # EOF only means the client will not write; keep sending output.
                    sel.unregister(client)
    except (BrokenPipeError, ConnectionResetError):
        return False
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
