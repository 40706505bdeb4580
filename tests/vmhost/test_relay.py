"""UnixRelay + LocalGuest: every connection is a `guestagent dial-stdio` exec, no VM needed."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestagent.apiproxy import ApiProxy
from guestagent.protocol import api_preamble
from tests.vmhost.httpserver import unix_http_server
from vmhost.relay import UnixRelay
from vmhost.testing import LocalGuest


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=20)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(self.path))


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[UnixRelay, LocalGuest]]:
    engine = tmp_path / "engine.sock"
    with unix_http_server(engine):
        guest = LocalGuest(str(engine))
        r = UnixRelay(tmp_path / "relay.sock", guest)
        r.start()
        yield r, guest
        r.close()
        guest.close()


def _get(path: Path, url: str) -> bytes:
    conn = UnixHTTPConnection(path)
    conn.request("GET", url)
    body = conn.getresponse().read()
    conn.close()
    return body


def test_request_through_relay(relay: tuple[UnixRelay, LocalGuest]) -> None:
    r, guest = relay
    assert _get(r.path, "/_ping") == b"OK"
    assert guest.execs == ["guestagent dial-stdio"]


def test_keepalive_and_post_body(relay: tuple[UnixRelay, LocalGuest]) -> None:
    r, _ = relay
    conn = UnixHTTPConnection(r.path)
    payload = b"x" * 300_000
    conn.request("POST", "/echo", body=payload)
    assert conn.getresponse().read() == payload
    conn.request("GET", "/version")  # same connection, same channel
    assert conn.getresponse().read() == b'{"Version":"test"}'
    conn.close()


def test_concurrent_connections(relay: tuple[UnixRelay, LocalGuest]) -> None:
    r, _ = relay
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(_get(r.path, "/_ping"))) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [b"OK"] * 8


def test_dead_connection_mid_stream_then_recovers(relay: tuple[UnixRelay, LocalGuest]) -> None:
    r, guest = relay
    conn = UnixHTTPConnection(r.path)
    conn.request("GET", "/stream/200")
    resp = conn.getresponse()
    assert resp.fp.readline() == b"line 0\n"
    guest.kill_connection()  # like the SSH connection dying under an open stream
    try:
        rest = resp.read()
    except (http.client.IncompleteRead, OSError, ValueError):
        rest = b""
    assert rest.count(b"\n") < 199  # cut short, not completed
    conn.close()
    assert _get(r.path, "/_ping") == b"OK"  # the next connection gets a fresh channel


def test_unreachable_guest_closes_client(relay: tuple[UnixRelay, LocalGuest]) -> None:
    r, guest = relay
    guest.dead.set()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(r.path))
        try:  # the relay may close before the request is even written
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass


@pytest.fixture
def tcp_relay(tmp_path: Path) -> Iterator[tuple[UnixRelay, LocalGuest, ApiProxy]]:
    """The default path: a direct-tcpip channel to PID 1's ApiProxy, no exec per connection."""
    engine = tmp_path / "engine.sock"
    preamble = api_preamble(b"host key")
    with unix_http_server(engine):
        proxy = ApiProxy(preamble, engine_socket=str(engine), engine_wait=2)
        proxy.start()
        guest = LocalGuest(str(engine))
        r = UnixRelay(tmp_path / "relay.sock", guest, preamble=preamble, api_port=proxy.port)
        r.start()
        yield r, guest, proxy
        r.close()
        guest.close()
        proxy.close()


def test_relay_uses_guest_api_port(tcp_relay: tuple[UnixRelay, LocalGuest, ApiProxy]) -> None:
    r, guest, proxy = tcp_relay
    assert _get(r.path, "/_ping") == b"OK"
    conn = UnixHTTPConnection(r.path)
    payload = b"y" * 300_000
    conn.request("POST", "/echo", body=payload)
    assert conn.getresponse().read() == payload
    conn.request("GET", "/_ping")
    assert conn.getresponse().read() == b"OK"
    conn.close()
    assert guest.execs == []
    assert r.by_path["exec"] == 0 and r.by_path["tcp"] >= 2
    assert proxy.rejected == 0


def test_relay_falls_back_to_dial_stdio(tmp_path: Path) -> None:
    engine = tmp_path / "engine.sock"
    with socket.socket() as unused:  # a closed guest port: an old image, or PID 1 not up yet
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with unix_http_server(engine):
        guest = LocalGuest(str(engine))
        r = UnixRelay(tmp_path / "relay.sock", guest, preamble=api_preamble(b"k"), api_port=port)
        r.start()
        try:
            assert _get(r.path, "/_ping") == b"OK"
            assert guest.execs == ["guestagent dial-stdio"]
            assert r.by_path == {"tcp": 0, "exec": 1}
        finally:
            r.close()
            guest.close()
