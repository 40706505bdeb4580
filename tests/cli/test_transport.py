from __future__ import annotations

import io

import pytest

from runtime.api import streams
from runtime.api.errors import InvalidArgument
from runtime.api.transport import (
    DEFAULT_HOST,
    DEFAULT_SOCKET_PATH,
    TcpTransport,
    UnixSocketTransport,
    resolve_host,
    transport_for,
)
from runtime.layout import DEFAULT_SOCKET


def test_default_socket_matches_engine_layout() -> None:
    assert str(DEFAULT_SOCKET) == DEFAULT_SOCKET_PATH


def test_host_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COVE_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")  # ignored on purpose
    assert resolve_host() == DEFAULT_HOST
    monkeypatch.setenv("COVE_HOST", "unix:///tmp/env.sock")
    assert resolve_host() == "unix:///tmp/env.sock"
    assert resolve_host("tcp://h:1") == "tcp://h:1"


def test_transport_for() -> None:
    t = transport_for("unix:///run/x.sock")
    assert isinstance(t, UnixSocketTransport) and t.path == "/run/x.sock"
    assert transport_for("/run/y.sock").endpoint == "unix:///run/y.sock"
    tcp = transport_for("tcp://127.0.0.1:2375")
    assert isinstance(tcp, TcpTransport) and (tcp.host, tcp.port) == ("127.0.0.1", 2375)
    for bad in ("ssh://x", "unix://", "tcp://:5"):
        with pytest.raises(InvalidArgument):
            transport_for(bad)


def test_frames_roundtrip_and_truncation() -> None:
    data = (
        streams.encode_frame(1, b"a")
        + streams.encode_frame(2, b"")
        + streams.encode_frame(2, b"bc")
        + streams.encode_frame(1, b"xyz")[:-1]
    )
    assert list(streams.frames(io.BytesIO(data).read)) == [
        (1, b"a"),
        (2, b""),
        (2, b"bc"),
        (1, b"xy"),
    ]


def test_json_messages_skips_blank_lines() -> None:
    src = io.BytesIO(b'{"a":1}\r\n\r\n{"b":2}\n')
    assert list(streams.json_messages(src.readline)) == [{"a": 1}, {"b": 2}]


def test_parse_http_head() -> None:
    status, headers = streams.parse_http_head(
        b"HTTP/1.1 101 UPGRADED\r\nContent-Type: x\r\nUpgrade: tcp\r\n\r\n"
    )
    assert status == 101 and headers == {"content-type": "x", "upgrade": "tcp"}
    with pytest.raises(Exception, match="malformed"):
        streams.parse_http_head(b"garbage\r\n\r\n")
