"""A tiny registry in the test process: it can lie, fail, cut connections and demand tokens."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from runtime.images import digest as dg
from tests.images.layers import config_for, gz

TOKEN = "tok-123"


@dataclass
class Behaviour:
    bearer: bool = False  # demand a Bearer token from our /token realm
    user: str = ""  # with bearer: the token endpoint wants Basic user:password
    password: str = ""
    lie_digest: bool = False  # serve other bytes for the first layer
    lie_size: int = 0  # serve this many extra bytes for the first layer
    truncate_once: bool = False  # cut the first layer download halfway, once
    fail_status: int = 0  # answer every blob request with this status
    seen: list[str] = field(default_factory=list)
    ranges: list[str] = field(default_factory=list)


class FakeRegistry:
    def __init__(self, layers: list[bytes], behaviour: Behaviour) -> None:
        self.b = behaviour
        self.blobs: dict[str, bytes] = {}
        descs = []
        for raw in layers:
            blob = gz(raw)
            self.blobs[dg.sha256(blob)] = blob
            descs.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                          "digest": dg.sha256(blob), "size": len(blob)})
        config = config_for([dg.sha256(r) for r in layers])
        self.blobs[dg.sha256(config)] = config
        self.manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": dg.sha256(config), "size": len(config)},
            "layers": descs}).encode()
        self.first_layer = descs[0]["digest"] if descs else ""
        self.truncated = False


def _handler(reg: FakeRegistry, port_box: list[int]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
                  ) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            b = reg.b
            b.seen.append(self.path)
            if self.path.startswith("/token"):
                return self._token()
            if b.bearer and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                realm = f"http://127.0.0.1:{port_box[0]}/token"
                return self._send(401, b"{}", {"WWW-Authenticate":
                                               f'Bearer realm="{realm}",service="fake"'})
            if self.path == "/v2/":
                return self._send(200, b"{}")
            if "/manifests/" in self.path:
                return self._send(200, reg.manifest, {
                    "Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
            digest = self.path.rsplit("/", 1)[1]
            if b.fail_status:
                return self._send(b.fail_status, b'{"errors":[{"message":"boom"}]}')
            return self._blob(digest)

        def _token(self) -> None:
            b = reg.b
            want = "Basic " + base64.b64encode(f"{b.user}:{b.password}".encode()).decode()
            if b.user and self.headers.get("Authorization") != want:
                return self._send(401, b"{}")
            self._send(200, json.dumps({"token": TOKEN}).encode())

        def _blob(self, digest: str) -> None:
            b = reg.b
            data = reg.blobs.get(digest)
            if data is None:
                return self._send(404, b"{}")
            if digest == reg.first_layer:
                if b.lie_digest:
                    data = bytes([data[0] ^ 1]) + data[1:]
                data += b"\0" * b.lie_size
            rng = self.headers.get("Range", "")
            if rng:
                b.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])
                return
            if b.truncate_once and digest == reg.first_layer and not reg.truncated:
                reg.truncated = True
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(200, data)

    return Handler


@contextmanager
def serve(layers: list[bytes], behaviour: Behaviour) -> Iterator[tuple[str, FakeRegistry]]:
    reg = FakeRegistry(layers, behaviour)
    port_box = [0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(reg, port_box))
    server.daemon_threads = True
    port_box[0] = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{port_box[0]}", reg
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
