"""ApiProxy: PID 1's guest-loopback listener for the Docker API relay (token, splice)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from guestagent.apiproxy import ApiProxy
from guestagent.events import IGNORED_PORTS
from guestagent.protocol import API_PORT, API_PREAMBLE_LEN, api_preamble
from tests.vmhost.httpserver import unix_http_server

KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nnot really\n"


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ApiProxy]:
    engine = tmp_path / "engine.sock"
    with unix_http_server(engine):
        p = ApiProxy(api_preamble(KEY), engine_socket=str(engine), engine_wait=2)
        p.preamble_timeout = 1.0
        p.start()
        yield p
        p.close()


def _exchange(port: int, first: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(first + b"GET /_ping HTTP/1.0\r\n\r\n")
        out = b""
        try:
            while chunk := s.recv(4096):
                out += chunk
        except ConnectionResetError:  # closed with our request unread
            pass
        return out


def test_preamble_is_fixed_length_and_key_bound() -> None:
    assert len(api_preamble(KEY)) == len(api_preamble(b"")) == API_PREAMBLE_LEN
    assert api_preamble(KEY) != api_preamble(KEY + b"x")
    assert api_preamble(KEY).endswith(b"\n")


def test_token_then_http(proxy: ApiProxy) -> None:
    out = _exchange(proxy.port, api_preamble(KEY))
    assert out.startswith(b"HTTP/1.") and out.endswith(b"OK")
    assert proxy.rejected == 0


@pytest.mark.parametrize("first", [b"", api_preamble(b"another vm's key")])
def test_without_the_token_nothing_reaches_the_engine(proxy: ApiProxy, first: bytes) -> None:
    assert _exchange(proxy.port, first) == b""
    assert proxy.rejected == 1


def test_listens_on_loopback_only(proxy: ApiProxy) -> None:
    assert proxy._sock.getsockname()[0] == "127.0.0.1"


def test_api_port_is_never_published() -> None:
    assert API_PORT in IGNORED_PORTS
