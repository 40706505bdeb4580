"""A minimal HTTP/1.1 client exchange over one connected socket.

Why not ``http.client``: importing it (with ssl and the email package) costs
~20 ms, a visible share of ``cove run --rm IMAGE true``, and the engine API
needs only this much: one request per connection, Content-Length or chunked
bodies both ways, and response bodies readable as lines, exact sizes or
"whatever has arrived" (for streams).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import IO

from runtime.api.errors import CoveError

BLOCK = 65536
_NO_BODY = (204, 304)


class ProtocolError(CoveError):
    """The engine's answer was not valid HTTP/1.1."""


def _chunks(body: IO[bytes] | Iterable[bytes]) -> Iterator[bytes]:
    if hasattr(body, "read"):
        while block := body.read(BLOCK):
            yield block
    else:
        yield from body


def send_request(
    sock: socket.socket,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | IO[bytes] | Iterable[bytes] | None = None,
) -> None:
    """Write a request; non-bytes bodies are streamed with chunked transfer encoding."""
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "User-Agent: cove"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if isinstance(body, bytes):
        lines.append(f"Content-Length: {len(body)}")
    elif body is not None:
        lines.append("Transfer-Encoding: chunked")
    elif method in ("POST", "PUT"):
        lines.append("Content-Length: 0")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if isinstance(body, bytes):
        sock.sendall(head + body)  # one write: small JSON requests go out in one segment
        return
    sock.sendall(head)
    if body is not None:
        for chunk in _chunks(body):
            if chunk:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")


class Response:
    """A response whose body is read lazily from the socket."""

    def __init__(self, sock: socket.socket, method: str) -> None:
        self.sock = sock
        self.fp = sock.makefile("rb")
        self.status, self.reason, self.headers = self._read_head()
        te = self.headers.get("transfer-encoding", "").lower()
        self._chunked = "chunked" in te
        self._chunk_left = 0
        self._eof = False
        self._left: int | None = None
        if method == "HEAD" or self.status in _NO_BODY or 100 <= self.status < 200:
            self._eof = True
        elif not self._chunked and "content-length" in self.headers:
            self._left = int(self.headers["content-length"])
            self._eof = self._left == 0

    def _read_head(self) -> tuple[int, str, dict[str, str]]:
        line = self.fp.readline(65537)
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"malformed response from engine: {line[:80]!r}")
        headers: dict[str, str] = {}
        while True:
            h = self.fp.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    # --- body -------------------------------------------------------------------

    def _next_chunk_size(self) -> int:
        line = self.fp.readline(1024)
        if not line:
            return 0
        try:
            return int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk header {line[:40]!r}") from None

    def read1(self, n: int = BLOCK) -> bytes:
        """Some bytes (at most n) as soon as any are available; b"" at the end."""
        if self._eof:
            return b""
        if self._chunked:
            if self._chunk_left == 0:
                self._chunk_left = self._next_chunk_size()
                if self._chunk_left == 0:
                    self._finish_chunked()
                    return b""
            data = self.fp.read1(min(n, self._chunk_left))
            if not data:
                self._eof = True
                return b""
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.fp.readline(8)  # the CRLF after each chunk
            return data
        if self._left is not None:
            data = self.fp.read1(min(n, self._left))
            self._left -= len(data)
            self._eof = not data or self._left == 0
            return data
        data = self.fp.read1(n)
        self._eof = not data
        return data

    def _finish_chunked(self) -> None:
        while self.fp.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        self._eof = True

    def read(self, n: int | None = None) -> bytes:
        """Exactly n bytes (fewer only at the end), or everything when n is None."""
        parts: list[bytes] = []
        want = n
        while want is None or want > 0:
            data = self.read1(BLOCK if want is None else min(want, BLOCK))
            if not data:
                break
            parts.append(data)
            if want is not None:
                want -= len(data)
        return b"".join(parts)

    def readline(self) -> bytes:
        """One line including its newline (JSON-lines streams); b"" at the end."""
        out = bytearray()
        while not out.endswith(b"\n"):
            if self._chunked or self._left is not None:
                data = self._peekline()
            else:
                data = self.fp.readline(BLOCK)
                self._eof = not data
            if not data:
                break
            out += data
        return bytes(out)

    def _peekline(self) -> bytes:
        """Up to the next newline within the current chunk / remaining length."""
        if self._eof:
            return b""
        if self._chunked and self._chunk_left == 0:
            self._chunk_left = self._next_chunk_size()
            if self._chunk_left == 0:
                self._finish_chunked()
                return b""
        limit = self._chunk_left if self._chunked else (self._left or 0)
        data = self.fp.readline(limit)
        if not data:
            self._eof = True
            return b""
        if self._chunked:
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self.fp.readline(8)
        else:
            assert self._left is not None
            self._left -= len(data)
            self._eof = self._left == 0
        return data

    def close(self) -> None:
        self.fp.close()
        self.sock.close()
