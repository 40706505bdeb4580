"""The relay's TCP endpoint (Windows has no AF_UNIX): 127.0.0.1:PORT, guarded by a token in
each connection's first request. Exercised on Linux with the same fakes as test_relay.py."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.api.client import Client
from runtime.api.errors import CoveError, InvalidArgument
from runtime.api.transport import TcpTransport, transport_for
from runtime.cli.vm import env_lines
from tests.vmhost.httpserver import unix_http_server
from vmhost.layout import InstanceLayout
from vmhost.relay import (
    Relay,
    TcpEndpoint,
    UnixEndpoint,
    endpoint_for,
    has_token,
    read_relay_info,
)
from vmhost.testing import FakeEngine, LocalGuest

TcpRelay = tuple[Relay, LocalGuest, FakeEngine, int, str]


@pytest.fixture(params=[0, 2], ids=["unpooled", "pooled"])
def tcp_relay(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TcpRelay]:
    engine = FakeEngine(str(tmp_path / "engine.sock"))
    guest = LocalGuest(engine.path)
    endpoint = TcpEndpoint(tmp_path / "vm" / "relay.json")
    r = Relay(endpoint, guest, engine_socket=engine.path, pool_size=request.param, preping=False)
    r.start()
    for _ in range(500):  # the pool filled, so what a test sees opened is its own doing
        if len(r.pool) >= request.param:
            break
        threading.Event().wait(0.01)
    info = read_relay_info(endpoint.info)
    assert info is not None
    host, token = info
    yield r, guest, engine, int(host.rsplit(":", 1)[1]), token
    r.close()
    guest.close()
    engine.close()


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got


def _get(target: str, token: str | None) -> bytes:
    line = f"X-Cove-Token: {token}\r\n" if token is not None else ""
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n{line}Connection: close\r\n\r\n".encode()


def test_right_token_reaches_the_engine(tcp_relay: TcpRelay) -> None:
    r, _, engine, port, token = tcp_relay
    got = _exchange(port, _get("/version", token))
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b'{"Version":"fake"}')
    assert engine.requests == ["GET /version"]
    assert r.unauthorized == 0


@pytest.mark.parametrize("token", [None, "", "wrong", "x" * 43])
def test_missing_or_wrong_token_gets_401_and_nothing_reaches_the_guest(
    tcp_relay: TcpRelay, token: str | None
) -> None:
    r, guest, engine, port, _ = tcp_relay
    opened_before = list(guest.unix_opens)  # the pool opens ahead, before any client
    hits, misses = r.pool.hits, r.pool.misses
    got = _exchange(port, _get("/version", token))
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert "X-Cove-Token" in json.loads(body)["message"]
    assert engine.requests == []
    assert guest.unix_opens == opened_before and guest.execs == []
    assert (r.pool.hits, r.pool.misses) == (hits, misses)  # no channel was taken for it
    assert r.unauthorized == 1


def test_token_only_in_a_later_request_is_refused(tcp_relay: TcpRelay) -> None:
    """The check is on the first request: a pipelined second one cannot carry it in."""
    _, _, engine, port, token = tcp_relay
    got = _exchange(port, _get("/a", None) + _get("/b", token))
    assert got.startswith(b"HTTP/1.1 401 ") and engine.requests == []


def test_keepalive_and_streaming_after_the_token(tmp_path: Path) -> None:
    """Later requests on an admitted connection need no token; a long streamed answer
    (logs -f, attach) flows through as on the Unix relay."""
    engine = tmp_path / "engine.sock"
    with unix_http_server(engine):
        guest = LocalGuest(str(engine))
        endpoint = TcpEndpoint(tmp_path / "relay.json")
        r = Relay(endpoint, guest, engine_socket=str(engine), pool_size=1)
        r.start()
        try:
            info = read_relay_info(endpoint.info)
            assert info is not None
            port, token = int(info[0].rsplit(":", 1)[1]), info[1]
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                payload = b"p" * 100_000
                s.sendall(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Cove-Token: %s\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (token.encode(), len(payload), payload)
                )
                rfile = s.makefile("rb")
                assert rfile.readline().startswith(b"HTTP/1.1 200")
                while rfile.readline() not in (b"\r\n", b""):
                    pass
                assert rfile.read(len(payload)) == payload
                s.sendall(b"GET /stream/20 HTTP/1.1\r\nHost: x\r\n\r\n")
                rest = rfile.read()
            assert rest.startswith(b"HTTP/1.1 200")
            assert rest.endswith(b"line 19\n") and rest.count(b"line ") == 20
        finally:
            r.close()
            guest.close()


def test_relay_json_is_0600_and_written_atomically(tmp_path: Path) -> None:
    info = tmp_path / "relay.json"
    info.write_text("stale, world-readable")
    info.chmod(0o644)
    before = info.stat().st_ino
    engine = FakeEngine(str(tmp_path / "engine.sock"))
    guest = LocalGuest(engine.path)
    r = Relay(TcpEndpoint(info), guest, engine_socket=engine.path)
    r.start()
    try:
        st = info.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_ino != before  # replaced by rename, never rewritten in place
        assert sorted(os.listdir(tmp_path)) == ["engine.sock", "relay.json"]  # no temp left
        doc = json.loads(info.read_text())
        assert doc["host"].startswith("tcp://127.0.0.1:") and not doc["host"].endswith(":0")
        assert len(doc["token"]) == 43  # 32 random bytes, urlsafe base64 without padding
        kept = info.read_bytes()
        again = endpoint_for(tmp_path / "unused.sock", info, env={"COVE_VM_RELAY": "tcp"})
        assert isinstance(again, TcpEndpoint)
        assert again.url == doc["host"] and again.token == doc["token"] and not again.fixed
    finally:
        r.close()
        guest.close()
        engine.close()
    # Kept for the next start: a DOCKER_HOST and token a user saved keep working.
    assert info.read_bytes() == kept


def test_next_start_keeps_port_and_token(tmp_path: Path) -> None:
    info, env = tmp_path / "vm" / "relay.json", {"COVE_VM_RELAY": "tcp"}
    first = endpoint_for(tmp_path / "x.sock", info, env=env)
    assert isinstance(first, TcpEndpoint) and first.port > 0
    assert read_relay_info(info) == (first.url, first.token)  # known before any listen()
    assert stat.S_IMODE(info.parent.stat().st_mode) == 0o700
    sock = first.listen()
    sock.close()
    first.cleanup()
    second = endpoint_for(tmp_path / "x.sock", info, env=env)
    assert isinstance(second, TcpEndpoint)
    assert (second.port, second.token) == (first.port, first.token)
    # The remembered port was taken meanwhile: a new port, the same token.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        sock = second.listen()
        try:
            moved = read_relay_info(info)
            assert moved is not None and moved[1] == first.token
            assert moved[0] == f"tcp://127.0.0.1:{sock.getsockname()[1]}" != first.url
        finally:
            sock.close()


def test_configured_port_taken_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        endpoint = endpoint_for(tmp_path / "x.sock", tmp_path / "relay.json",
                                env={"COVE_VM_RELAY": "tcp", "COVE_VM_RELAY_PORT": str(port)})
        with pytest.raises(CoveError, match=f"relay port 127.0.0.1:{port}"):
            endpoint.listen()


def test_configured_port(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = endpoint_for(
        tmp_path / "docker.sock",
        tmp_path / "relay.json",
        env={"COVE_VM_RELAY": "tcp", "COVE_VM_RELAY_PORT": str(port)},
    )
    sock = endpoint.listen()
    try:
        assert sock.getsockname() == ("127.0.0.1", port)
        assert read_relay_info(tmp_path / "relay.json") == (
            f"tcp://127.0.0.1:{port}",
            endpoint.token,
        )
    finally:
        sock.close()
        endpoint.cleanup()


def test_endpoint_choice(tmp_path: Path) -> None:
    sock, info = tmp_path / "docker.sock", tmp_path / "relay.json"
    assert endpoint_for(sock, info, platform="linux", env={}) == UnixEndpoint(sock)
    assert endpoint_for(sock, info, platform="darwin", env={}) == UnixEndpoint(sock)
    win = endpoint_for(sock, info, platform="win32", env={})
    assert isinstance(win, TcpEndpoint) and win.port > 0 and win.info == info
    assert isinstance(
        endpoint_for(sock, info, platform="linux", env={"COVE_VM_RELAY": "tcp"}), TcpEndpoint
    )
    with pytest.raises(InvalidArgument, match="Windows has no Unix sockets"):
        endpoint_for(sock, info, platform="win32", env={"COVE_VM_RELAY": "unix"})
    for bad in ({"COVE_VM_RELAY": "pipe"}, {"COVE_VM_RELAY": "tcp", "COVE_VM_RELAY_PORT": "x"},
                {"COVE_VM_RELAY": "tcp", "COVE_VM_RELAY_PORT": "70000"}):
        with pytest.raises(InvalidArgument):
            endpoint_for(sock, info, env=bad)
    a, b = TcpEndpoint(info), TcpEndpoint(info)
    assert a.token != b.token and a.token not in repr(a)


@pytest.mark.parametrize(
    ("request_bytes", "ok"),
    [
        (b"GET / HTTP/1.1\r\nX-Cove-Token: t0k\r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nx-cove-token:t0k \r\n\r\n", True),
        (b"GET / HTTP/1.1\r\nX-Cove-Token: T0K\r\n\r\n", False),  # tokens are case-sensitive
        (b"GET / HTTP/1.1\r\nX-Cove-Token: t0k\r\n", False),  # incomplete head
        (b"GET /?X-Cove-Token: t0k HTTP/1.1\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\n\r\nX-Cove-Token: t0k\r\n", False),  # in the body
    ],
)
def test_has_token(request_bytes: bytes, ok: bool) -> None:
    assert has_token(request_bytes, "t0k") is ok


def test_client_with_cove_host_token(tcp_relay: TcpRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime.api's Client, given COVE_HOST=tcp://... and COVE_HOST_TOKEN, gets through
    (plain requests and the hijack path); without the token it gets the relay's 401."""
    _, _, engine, port, token = tcp_relay
    monkeypatch.setenv("COVE_HOST", f"tcp://127.0.0.1:{port}")
    monkeypatch.setenv("COVE_HOST_TOKEN", token)
    client = Client()
    assert client.call("GET", "/version") == {"Version": "fake"}
    assert client.call("POST", "/build", data=b"z" * 5000) == {"read": 5000}
    hijacked = client.hijack("/containers/c/attach", {"stream": 1})
    hijacked.close()
    assert [r.split("?")[0].rsplit("/", 1)[-1] for r in engine.requests] == [
        "version",
        "build",
        "attach",
    ]
    monkeypatch.delenv("COVE_HOST_TOKEN")
    with pytest.raises(CoveError, match="X-Cove-Token"):
        Client().call("GET", "/version")
    assert len(engine.requests) == 3


def test_transport_token_only_for_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_HOST_TOKEN", "secret")
    tcp = transport_for("tcp://127.0.0.1:1")
    assert isinstance(tcp, TcpTransport) and tcp.token == "secret"
    assert "secret" not in repr(tcp)
    monkeypatch.delenv("COVE_HOST_TOKEN")
    tcp = transport_for("tcp://127.0.0.1:1")
    assert isinstance(tcp, TcpTransport) and tcp.token is None


def test_vm_env_prints_host_and_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_VM_HOME", str(tmp_path))
    monkeypatch.delenv("COVE_VM_RELAY", raising=False)
    lay = InstanceLayout.named("default")
    unix = f"unix://{lay.relay_socket}"
    assert env_lines("default", "sh") == [f"export COVE_HOST={unix}", f"export DOCKER_HOST={unix}"]
    monkeypatch.setenv("COVE_VM_RELAY", "tcp")
    info = read_relay_info(lay.relay_json)
    assert info is None
    lines = env_lines("default", "sh")
    info = read_relay_info(lay.relay_json)  # chosen on first need, the same for every client
    assert info is not None
    host, token = info
    assert lines == [
        f"export COVE_HOST={host}",
        f"export DOCKER_HOST={host}",
        f"export COVE_HOST_TOKEN={token}",
        f"export DOCKER_CUSTOM_HEADERS=X-Cove-Token={token}",
    ]
    assert env_lines("default", "powershell") == [
        f"$Env:COVE_HOST = '{host}'",
        f"$Env:DOCKER_HOST = '{host}'",
        f"$Env:COVE_HOST_TOKEN = '{token}'",
        f"$Env:DOCKER_CUSTOM_HEADERS = 'X-Cove-Token={token}'",
    ]
    assert env_lines("default", "cmd")[3] == f"SET DOCKER_CUSTOM_HEADERS=X-Cove-Token={token}"
    with pytest.raises(InvalidArgument, match="unknown shell 'fish'"):
        env_lines("default", "fish")
