"""A tiny HTTP/1.1 peer on a Unix socket for client tests (our own test double, not the engine).

Each test passes a ``respond(request, sock)`` function; it sees the parsed request
(body de-chunked) and writes whatever raw bytes the scenario needs.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)


Responder = Callable[[Request, socket.socket], None]


def _read_request(f: socketserver.StreamRequestHandler) -> Request | None:
    line = f.rfile.readline()
    if not line:
        return None
    method, target, _ = line.decode().split(" ", 2)
    headers: dict[str, str] = {}
    while (h := f.rfile.readline()) not in (b"\r\n", b""):
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int(f.rfile.readline().strip(), 16)
            if size == 0:
                f.rfile.readline()
                break
            body += f.rfile.read(size)
            f.rfile.readline()
    elif "content-length" in headers:
        body = f.rfile.read(int(headers["content-length"]))
    parts = urlsplit(target)
    return Request(method, target, headers, body, parts.path, parse_qs(parts.query))


def json_response(sock: socket.socket, status: int, value: object) -> None:
    body = json.dumps(value).encode()
    sock.sendall(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def chunked_response(sock: socket.socket, chunks: list[bytes], ctype: str) -> None:
    sock.sendall(
        f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    for c in chunks:
        sock.sendall(b"%x\r\n%s\r\n" % (len(c), c))
    sock.sendall(b"0\r\n\r\n")


@contextmanager
def serve(tmp: Path, respond: Responder) -> Iterator[tuple[str, list[Request]]]:
    """Serve ``respond`` on a socket under ``tmp``; yields (host URL, requests seen)."""
    seen: list[Request] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            req = _read_request(self)
            if req is not None:
                seen.append(req)
                respond(req, self.connection)

    path = str(tmp / "peer.sock")
    server = socketserver.ThreadingUnixStreamServer(path, Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield "unix://" + path, seen
    finally:
        server.shutdown()
        server.server_close()
