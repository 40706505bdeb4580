"""The three stream shapes of the Docker API, client side.

- JSON lines (pull, push, build, load, import, events, stats): one JSON object
  per line; an object with ``error``/``errorDetail`` is a failure reported
  in-band after a 200, which :func:`json_messages` raises as :class:`StreamError`.
- Multiplexed frames (logs, attach and exec without a TTY): an 8-byte header
  ``[stream, 0, 0, 0, size(uint32 BE)]`` then ``size`` bytes.
- Raw bytes (the same with a TTY): no framing at all.

Readers are plain callables (``read_exact(n) -> bytes``, ``read_some() -> bytes``)
so the same parsing works on an HTTP response and on a hijacked socket.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Any

from runtime.api.errors import CoveError

STDIN, STDOUT, STDERR = 0, 1, 2
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
RAW = "application/vnd.docker.raw-stream"
_HEADER = struct.Struct(">BxxxL")


class StreamError(CoveError):
    """An error the engine reported inside a 200 stream (docker exits 1 for these)."""

    exit_code = 1


def json_messages(readline: Callable[[], bytes]) -> Iterator[dict[str, Any]]:
    """Parse JSON lines until EOF; raise StreamError on an in-band error message."""
    while line := readline():
        line = line.strip()
        if not line:
            continue
        msg = json.loads(line)
        if not isinstance(msg, dict):
            continue
        if "errorDetail" in msg or "error" in msg:
            detail = msg.get("errorDetail") or {}
            raise StreamError(str(detail.get("message") or msg.get("error") or "unknown error"))
        yield msg


def encode_frame(stream: int, payload: bytes) -> bytes:
    """One multiplexed frame (used by tests and by anything that relays streams)."""
    return _HEADER.pack(stream, len(payload)) + payload


def frames(read_exact: Callable[[int], bytes]) -> Iterator[tuple[int, bytes]]:
    """Demultiplex frames until EOF; a truncated frame ends the stream quietly."""
    while True:
        header = read_exact(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        stream, size = _HEADER.unpack(header)
        payload = read_exact(size) if size else b""
        if len(payload) < size:
            if payload:
                yield stream, payload
            return
        yield stream, payload


def raw_chunks(read_some: Callable[[], bytes]) -> Iterator[tuple[int, bytes]]:
    """A TTY stream, reported as stdout chunks so callers handle both shapes alike."""
    while chunk := read_some():
        yield STDOUT, chunk


class SocketReader:
    """``read_exact``/``read_some`` over a socket (a hijacked attach or exec)."""

    def __init__(self, sock: socket.socket, bufsize: int = 65536) -> None:
        self.sock = sock
        self.bufsize = bufsize

    def read_some(self) -> bytes:
        try:
            return self.sock.recv(self.bufsize)
        except (ConnectionResetError, OSError):
            return b""

    def read_exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n > 0:
            chunk = self.read_some() if n >= self.bufsize else self._recv(n)
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _recv(self, n: int) -> bytes:
        try:
            return self.sock.recv(n)
        except OSError:
            return b""


def read_http_head(sock: socket.socket, limit: int = 65536) -> bytes:
    """Read a response's status line and headers, up to and including the blank line.

    Byte-exact on purpose: after a ``101 UPGRADED`` the very next byte is stream
    data, and a buffered reader would swallow it (docker-py#3332). So the socket is
    peeked at and only the head is taken off it (one byte per recv cost ~200 syscalls).
    """
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        peeked = sock.recv(4096, socket.MSG_PEEK)
        if not peeked:
            break
        # The blank line may straddle what is already taken and what is peeked.
        end = (head[-3:] + peeked).find(b"\r\n\r\n")
        take = len(peeked) if end < 0 else end + 4 - len(head[-3:])
        head += sock.recv(take)
        if len(head) > limit:
            raise CoveError("response headers too large")
    return bytes(head)


def parse_http_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and lower-cased headers of a raw response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise CoveError(f"malformed response from engine: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers
