"""Reading Docker's multiplexed attach/exec streams in tests."""

from __future__ import annotations

import socket
import struct
import time


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def demux(raw: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {1: b"", 2: b""}
    while raw:
        stream, size = struct.unpack(">BxxxI", raw[:8])
        out[stream] = out.get(stream, b"") + raw[8 : 8 + size]
        raw = raw[8 + size :]
    return out


def read_until(sock: socket.socket, needle: bytes, timeout: float = 10.0) -> bytes:
    sock.settimeout(0.2)
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        if not data:
            break
        buf += data
    return buf
