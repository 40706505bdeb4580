"""A tiny real HTTP/1.1 server on a Unix socket, for the EventPump/TaskRunner tests.

It is not an engine: it serves canned JSON for a few paths and streams whatever
events the test pushes. It lets us test our threading, reconnects and banner
logic over a real socket while the engine is not working end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TinyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        path = "/" + path.split("/", 2)[2] if path.startswith("/v1.") else path
        if path == "/events":
            self._events()
            return
        if path == "/_ping":
            self._send(200, b"OK", "text/plain")
            return
        if self.server.delay:
            time.sleep(self.server.delay)
        body = self.server.routes.get(path)
        if body is None:
            self._send(404, json.dumps({"message": f"no route {path}"}).encode())
        else:
            self._send(200, json.dumps(body).encode())

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.server.subscribers.append(q)
        while (msg := q.get()) is not None:
            line = json.dumps(msg).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        with contextlib.suppress(BrokenPipeError):  # the client may have gone first
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True


class TinyServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.routes: dict[str, Any] = {"/containers/json": [], "/images/json": [],
                                       "/volumes": {"Volumes": []}, "/networks": [],
                                       "/info": {}}
        self.subscribers: list[queue.Queue[dict[str, Any] | None]] = []
        self.delay = 0.0
        self.path = path
        super().__init__(path, _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def push(self, msg: dict[str, Any]) -> None:
        for q in list(self.subscribers):
            q.put(msg)

    def stop(self) -> None:
        for q in self.subscribers:
            q.put(None)
        self.shutdown()
        self.server_close()
        os.unlink(self.path)
