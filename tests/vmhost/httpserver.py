"""A tiny Docker-ish HTTP server on a Unix socket (stands in for the engine in unit tests)."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the engine

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/_ping":
            body = b"OK"
        elif self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for i in range(int(self.path.rsplit("/", 1)[1])):
                    self.wfile.write(b"line %d\n" % i)
                    self.wfile.flush()
                    threading.Event().wait(0.05)
            except BrokenPipeError:
                pass  # the relay tests cut streams on purpose
            return
        else:
            body = b'{"Version":"test"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(200 if self.path == "/_ping" else 404)
        self.send_header("Api-Version", "1.44")
        self.send_header("Content-Length", "2" if self.path == "/_ping" else "0")
        self.end_headers()

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", 0))
        data = self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextlib.contextmanager
def unix_http_server(path: Path) -> Iterator[_Server]:
    server = _Server(str(path), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
