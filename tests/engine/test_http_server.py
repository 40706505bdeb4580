"""The engine's HTTP server on a real Unix socket: keep-alive, errors, streams, threads, shutdown.

The server runs in-process with a real Router and small handlers; clients are
raw sockets, so the bytes on the wire are what is checked.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.engine.http import Request, Response, UnixHTTPServer, json_response
from runtime.engine.router import Router


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, threading.Event]]:
    """A server with a few routes; the event releases the streaming route."""
    release = threading.Event()
    router = Router()

    @router.route("GET", "/_ping")
    def ping(req: Request) -> Response:
        return Response(200, b"OK", content_type="text/plain; charset=utf-8",
                        headers={"Swarm": "inactive"})

    @router.route("GET", "/things/{id}/json")
    def thing(req: Request) -> Response:
        return json_response({"Id": req.params["id"], "q": req.str_arg("q")})

    @router.route("POST", "/echo")
    def echo(req: Request) -> Response:
        return Response(200, req.body().read(), content_type="application/octet-stream")

    @router.route("GET", "/stream")
    def stream(req: Request) -> Response:
        def body() -> Iterator[bytes]:
            yield b""
            release.wait(10)
            yield b"late\n"

        return Response(200, body())

    path = str(tmp_path / "api.sock")
    server = UnixHTTPServer(path, router.dispatch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path, release
    finally:
        release.set()
        server.shutdown()
        thread.join(5)
        assert not thread.is_alive(), "serve_forever did not return after shutdown"
    assert not Path(path).exists()


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def _read_response(f: object, head_only: bool = False) -> tuple[str, dict[str, str], bytes]:
    readline = f.readline  # type: ignore[attr-defined]
    status = readline().decode().rstrip("\r\n")
    headers: dict[str, str] = {}
    while (line := readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only:
        return status, headers, b""
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(readline().strip(), 16):
            body += f.read(size)  # type: ignore[attr-defined]
            readline()
        readline()
        return status, headers, body
    return status, headers, f.read(int(headers.get("content-length", "0")))  # type: ignore[attr-defined]


def test_keep_alive_serves_requests_in_order_on_one_connection(
        served: tuple[str, threading.Event]) -> None:
    path, _ = served
    with _connect(path) as s, s.makefile("rb") as f:
        s.sendall(b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v1.44/things/a%20b/json?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /_ping HTTP/1.1\r\n\r\n")
        status, headers, _ = _read_response(f, head_only=True)
        assert status == "HTTP/1.1 200 OK"
        assert headers["content-length"] == "2"
        assert headers["api-version"] == "1.44" and headers["swarm"] == "inactive"
        assert headers["date"].endswith(" GMT")
        status, headers, body = _read_response(f)
        assert (status, body) == ("HTTP/1.1 200 OK", b'{"Id": "a b", "q": "1"}\n')
        assert headers["content-type"] == "application/json"
        assert _read_response(f)[2] == b"hello"
        assert _read_response(f)[2] == b"OK"


def test_http10_closes_and_errors_close(served: tuple[str, threading.Event]) -> None:
    path, _ = served
    with _connect(path) as s, s.makefile("rb") as f:
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        assert _read_response(f)[2] == b"OK"
        assert f.read() == b""  # closed after an HTTP/1.0 request without keep-alive
    with _connect(path) as s, s.makefile("rb") as f:
        s.sendall(b"garbage\r\n\r\n")
        status, headers, _ = _read_response(f)
        assert status.startswith("HTTP/1.1 400 ")
        assert headers["connection"] == "close"
        assert f.read() == b""
    with _connect(path) as s, s.makefile("rb") as f:
        s.sendall(b"PATCH /_ping HTTP/1.1\r\n\r\n")
        assert _read_response(f)[0].startswith("HTTP/1.1 501 ")
    with _connect(path) as s, s.makefile("rb") as f:
        s.sendall(b"GET /nowhere HTTP/1.1\r\n\r\nDELETE /_ping HTTP/1.1\r\n\r\n")
        status, _, body = _read_response(f)
        assert status == "HTTP/1.1 404 Not Found"
        assert b"page not found" in body
        status, _, body = _read_response(f)  # the connection lives on after a 404
        assert status.startswith("HTTP/1.1 500 ") and b"not allowed" in body


def test_request_targets_and_api_versions(served: tuple[str, threading.Event]) -> None:
    """Plain paths, escapes, queries, fragments and a ``//`` start all decode as urlsplit
    would; a version is refused as too old or too new however often a good one came first."""
    path, _ = served
    cases = [
        (b"/things/plain/json", b'{"Id": "plain", "q": ""}\n'),
        (b"/things/a%3Ab/json?q=x%20y", b'{"Id": "a:b", "q": "x y"}\n'),
        (b"/things/f/json#q=ignored", b'{"Id": "f", "q": ""}\n'),
        (b"/v1.24/things/old/json?q=", b'{"Id": "old", "q": ""}\n'),
        (b"/v1.44/things/new/json", b'{"Id": "new", "q": ""}\n'),
    ]
    with _connect(path) as s, s.makefile("rb") as f:
        for target, body in cases * 2:
            s.sendall(b"GET " + target + b" HTTP/1.1\r\n\r\n")
            assert _read_response(f)[2] == body, target
        for target, words in ((b"//things/x/json", b"page not found"),
                              (b"/v1.23/things/x/json", b"is too old"),
                              (b"/v1.45/things/x/json", b"is too new"),
                              (b"/v1.44/things/x/json", b'"Id": "x"')):
            s.sendall(b"GET " + target + b" HTTP/1.1\r\n\r\n")
            assert words in _read_response(f)[2], target


def test_expect_100_continue(served: tuple[str, threading.Event]) -> None:
    path, _ = served
    with _connect(path) as s, s.makefile("rb") as f:
        s.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert f.readline() == b"\r\n"
        s.sendall(b"abc")
        assert _read_response(f)[2] == b"abc"


def test_chunked_request_body(served: tuple[str, threading.Event]) -> None:
    path, _ = served
    with _connect(path) as s, s.makefile("rb") as f:
        s.sendall(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n")
        assert _read_response(f)[2] == b"abcde"
        assert _read_response(f)[2] == b"OK"


def test_more_streams_than_spare_threads_and_pings_still_answer(
        served: tuple[str, threading.Event]) -> None:
    """Each open stream holds a thread; the server starts more rather than queueing."""
    path, release = served
    streams = []
    for _ in range(6):
        s = _connect(path)
        s.sendall(b"GET /stream HTTP/1.1\r\n\r\n")
        f = s.makefile("rb")
        status, headers, _ = _read_response(f, head_only=True)  # headers come at once
        assert status == "HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
        streams.append((s, f))
    with _connect(path) as s, s.makefile("rb") as f:
        s.sendall(b"GET /_ping HTTP/1.1\r\n\r\n")
        assert _read_response(f)[2] == b"OK"
    release.set()
    for s, f in streams:
        assert f.readline() == b"5\r\n"
        assert f.readline() == b"late\n"
        assert f.readline() == b"\r\n"
        assert f.readline() == b"0\r\n"
        f.close()
        s.close()
