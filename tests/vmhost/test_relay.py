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
from runtime.api.errors import Unavailable
from tests.vmhost.httpserver import unix_http_server
from vmhost.relay import UnixRelay, is_plain_head_ping, is_repeatable
from vmhost.ssh import SSHGuest
from vmhost.streams import Stream
from vmhost.testing import FakeEngine, FakeSSHServer, LocalGuest


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


def test_unreachable_guest_answers_502(relay: tuple[UnixRelay, LocalGuest]) -> None:
    r, guest = relay
    guest.dead.set()
    conn = UnixHTTPConnection(r.path)
    conn.request("GET", "/_ping")
    resp = conn.getresponse()
    assert resp.status == 502
    assert b"guest engine is unreachable" in resp.read()  # what the docker CLI prints
    conn.close()


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
            assert r.by_path == {"unix": 0, "tcp": 0, "exec": 1}
        finally:
            r.close()
            guest.close()


@pytest.fixture
def unix_relay(tmp_path: Path) -> Iterator[tuple[UnixRelay, LocalGuest, Path]]:
    """The default path: a stream-local channel straight to the engine socket, pooled."""
    engine = tmp_path / "engine.sock"
    with unix_http_server(engine):
        guest = LocalGuest(str(engine))
        r = UnixRelay(tmp_path / "relay.sock", guest, engine_socket=str(engine), pool_size=2)
        r.start()
        yield r, guest, engine
        r.close()
        guest.close()


def _wait_pooled(r: UnixRelay, n: int) -> None:
    for _ in range(200):
        if len(r.pool) >= n:
            return
        threading.Event().wait(0.02)
    raise AssertionError(f"pool never reached {n}")


def test_pooled_engine_channels(unix_relay: tuple[UnixRelay, LocalGuest, Path]) -> None:
    r, guest, engine = unix_relay
    _wait_pooled(r, 2)  # opened ahead, before any client
    assert guest.unix_opens == [str(engine)] * 2
    for _ in range(3):
        assert _get(r.path, "/_ping") == b"OK"
        _wait_pooled(r, 2)  # refilled between connections
    assert r.pool.hits == 3 and r.pool.misses == 0
    assert r.by_path == {"unix": 3, "tcp": 0, "exec": 0} and guest.execs == []
    conn = UnixHTTPConnection(r.path)  # keep-alive and a body on a pooled stream
    payload = b"z" * 300_000
    conn.request("POST", "/echo", body=payload)
    assert conn.getresponse().read() == payload
    conn.request("GET", "/_ping")
    assert conn.getresponse().read() == b"OK"
    conn.close()


def test_pool_discards_streams_of_a_dead_connection(
    unix_relay: tuple[UnixRelay, LocalGuest, Path],
) -> None:
    r, guest, _ = unix_relay
    _wait_pooled(r, 2)
    guest.kill_connection()  # the pooled streams die with it, as channels do with SSH
    assert _get(r.path, "/_ping") == b"OK"  # never handed a dead one
    assert r.pool.hits == 0 and r.pool.misses == 1


def test_unix_channel_refused_falls_back_to_api_port(tmp_path: Path) -> None:
    """sshd refuses stream-local forwarding, or the engine's backlog is full: the proxy."""
    engine = tmp_path / "engine.sock"
    preamble = api_preamble(b"host key")
    with unix_http_server(engine):
        proxy = ApiProxy(preamble, engine_socket=str(engine), engine_wait=2)
        proxy.start()
        guest = LocalGuest(str(engine))
        r = UnixRelay(
            tmp_path / "relay.sock",
            guest,
            preamble=preamble,
            api_port=proxy.port,
            engine_socket=str(tmp_path / "not-there.sock"),
        )
        r.start()
        try:
            assert _get(r.path, "/_ping") == b"OK"
            assert r.by_path == {"unix": 0, "tcp": 1, "exec": 0}
        finally:
            r.close()
            guest.close()
            proxy.close()


def test_half_close_through_pooled_channel(unix_relay: tuple[UnixRelay, LocalGuest, Path]) -> None:
    """A hijacked stream's client half-closes stdin and still reads the rest (attach/exec)."""
    r, _, _ = unix_relay
    _wait_pooled(r, 1)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(str(r.path))
        s.sendall(b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello")
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(4096):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"hello")


def _exchange(s: socket.socket, request: bytes, until: bytes) -> bytes:
    s.sendall(request)
    got = b""
    while not got.endswith(until):
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    return got


def test_prepinged_channel_answers_the_cli_first_request(
    unix_relay: tuple[UnixRelay, LocalGuest, Path],
) -> None:
    """A pooled channel already carried HEAD /_ping; the docker CLI's own HEAD /_ping gets
    that answer at once, and the connection goes on to the engine as usual."""
    r, _, _ = unix_relay
    _wait_pooled(r, 1)
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(str(r.path))
        ping = b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker\r\n\r\n"
        head = _exchange(s, ping, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"Api-Version: 1.44" in head
        assert r.pings_answered == 1
        body = _exchange(s, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n", b"}")
        assert body.endswith(b'{"Version":"test"}')
        head = _exchange(s, ping, b"\r\n\r\n")  # a second ping goes to the engine
        assert head.startswith(b"HTTP/1.1 200 ") and r.pings_answered == 1


def test_other_first_requests_pass_through(
    unix_relay: tuple[UnixRelay, LocalGuest, Path],
) -> None:
    r, _, _ = unix_relay
    _wait_pooled(r, 2)
    assert _get(r.path, "/_ping") == b"OK"  # GET, not HEAD: the engine answers
    conn = UnixHTTPConnection(r.path)
    conn.request("HEAD", "/_ping", headers={"Connection": "close"})
    assert conn.getresponse().status == 200
    conn.close()
    assert r.pings_answered == 0 and r.pool.hits == 2


@pytest.mark.parametrize(
    ("request_bytes", "answerable"),
    [
        (b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", True),
        (b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", True),
        (b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
        (b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", False),
        (b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\nGET /v HTTP/1.1\r\n\r\n", False),
        (b"HEAD /_ping HTTP/1.0\r\nHost: x\r\n\r\n", False),
        (b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n", False),
        (b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n", False),  # incomplete
    ],
)
def test_is_plain_head_ping(request_bytes: bytes, answerable: bool) -> None:
    assert is_plain_head_ping(request_bytes) is answerable


PROBE_AFTER_IDLE = 0.3  # the relay's default is longer: a test need not wait for it


@pytest.fixture
def idle_closing(tmp_path: Path) -> Iterator[tuple[UnixRelay, FakeEngine]]:
    """A pooled relay in front of an engine that closes idle keep-alive connections."""
    engine = FakeEngine(str(tmp_path / "engine.sock"))
    guest = LocalGuest(engine.path)
    r = UnixRelay(
        tmp_path / "relay.sock",
        guest,
        engine_socket=engine.path,
        pool_size=2,
        probe_after_idle=PROBE_AFTER_IDLE,
    )
    r.start()
    _wait_pooled(r, 2)
    yield r, engine
    r.close()
    guest.close()
    engine.close()


def _taken(r: UnixRelay, s: socket.socket) -> None:
    """Connect *s* and wait until the relay has handed it a pooled stream."""
    hits = r.pool.hits
    s.settimeout(20)
    s.connect(str(r.path))
    for _ in range(500):
        if r.pool.hits > hits:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the relay never took a pooled stream")


def _response(s: socket.socket) -> bytes:
    got = b""
    while chunk := s.recv(65536):
        got += chunk
    return got


def _import_request(body: bytes) -> bytes:
    """A client's first request that must not be repeated: a chunked image upload."""
    head = b"POST /images/load HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    return head + b"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def test_idle_close_after_take_loses_no_request(
    idle_closing: tuple[UnixRelay, FakeEngine],
) -> None:
    """The engine closes the pooled connection after the relay handed it to a client and
    before the client's request came: the relay sees that and uses a fresh stream."""
    r, engine = idle_closing
    for request, answer in (
        (b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b'{"Version":"fake"}'),
        (_import_request(b"x" * 200_000), b'{"read":200000}'),
    ):
        _wait_pooled(r, 2)
        with socket.socket(socket.AF_UNIX) as s:
            _taken(r, s)
            assert engine.close_idle() >= 1
            s.sendall(request)
            got = _response(s)
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(answer), got[:200]
    assert engine.requests.count("POST /images/load") == 1
    assert r.stale == 2


@pytest.mark.parametrize("first_is_ping", [False, True])
def test_engine_closing_as_the_request_arrives(
    idle_closing: tuple[UnixRelay, FakeEngine], first_is_ping: bool
) -> None:
    """The race itself: the pooled connection looks alive, the request goes out, and the
    engine closes it unread. A GET is sent again; an upload is preceded by a ping that
    meets the close instead, so it reaches the engine exactly once; the docker CLI's
    HEAD /_ping first (answered by the relay) changes nothing."""
    r, engine = idle_closing
    ping = b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n" if first_is_ping else b""
    for request, answer in (
        (b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b'{"Version":"fake"}'),
        (_import_request(b"y" * 300_000), b'{"read":300000}'),
    ):
        _wait_pooled(r, 2)
        threading.Event().wait(PROBE_AFTER_IDLE + 0.1)  # pooled streams idle for a while
        engine.drop_next = 1
        with socket.socket(socket.AF_UNIX) as s:
            _taken(r, s)
            if ping:
                assert _exchange(s, ping, b"\r\n\r\n").startswith(b"HTTP/1.1 200 ")
            s.sendall(request)
            got = _response(s)
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(answer), got[:200]
        assert engine.dropped == 1 and engine.drop_next == 0
        engine.dropped = 0
    assert engine.requests.count("POST /images/load") == 1
    assert engine.requests.count("GET /version") == 1


def test_request_the_engine_read_is_never_resent(
    idle_closing: tuple[UnixRelay, FakeEngine],
) -> None:
    """An engine that read the upload and then died without answering: the client sees
    its connection end, and the engine got the upload once (no replay)."""
    r, engine = idle_closing
    engine.fail_after_read.add("/images/load")
    threading.Event().wait(PROBE_AFTER_IDLE + 0.1)
    with socket.socket(socket.AF_UNIX) as s:
        _taken(r, s)
        s.sendall(_import_request(b"z" * 1000))
        assert _response(s) == b""
    assert engine.requests.count("POST /images/load") == 1


@pytest.mark.parametrize(
    ("request_bytes", "repeatable"),
    [
        (b"GET /containers/json HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", True),
        (b"GET /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", False),
        (b"GET /x HTTP/1.1\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n", False),
        (b"POST /containers/create HTTP/1.1\r\nContent-Length: 0\r\n\r\n", False),
        (b"DELETE /containers/c HTTP/1.1\r\n\r\n", False),
        (b"GET /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n", False),
        (b"GET /x HTTP/1.1\r\nHost: x\r\n", False),
    ],
)
def test_is_repeatable(request_bytes: bytes, repeatable: bool) -> None:
    assert is_repeatable(request_bytes) is repeatable


def test_stale_stream_and_no_fresh_one_answers_502(
    idle_closing: tuple[UnixRelay, FakeEngine],
) -> None:
    """The pooled connection is gone and the guest cannot be reached for another: the
    client's request gets the relay's 502, not a bare EOF."""
    r, engine = idle_closing
    assert isinstance(r.guest, LocalGuest)
    with socket.socket(socket.AF_UNIX) as s:
        _taken(r, s)
        engine.close_idle()
        r.guest.dead.set()
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        got = _response(s)
    assert got.startswith(b"HTTP/1.1 502 ") and b"guest engine is unreachable" in got


@pytest.fixture
def fake_sshd(tmp_path: Path) -> Iterator[tuple[FakeSSHServer, SSHGuest]]:
    from vmhost import keys

    host_pub = keys.generate_ed25519(tmp_path / "host_key", "host")
    client_pub = keys.generate_ed25519(tmp_path / "client_key", "client")
    server = FakeSSHServer(tmp_path / "host_key", client_pub)
    guest = SSHGuest(
        host="127.0.0.1",
        port=server.port,
        client_key=tmp_path / "client_key",
        host_key_line=host_pub,
        connect_timeout=5,
    )
    yield server, guest
    guest.close()
    server.close()


def _echoes(stream: Stream, data: bytes) -> bool:
    stream.sendall(data)
    got = b""
    while len(got) < len(data) and (chunk := stream.recv(65536)):
        got += chunk
    return got == data


def test_refused_channel_keeps_the_other_channels(
    fake_sshd: tuple[FakeSSHServer, SSHGuest],
) -> None:
    """The guest's sshd refusing one channel (a session) says the connection is fine: the
    relay's client connections on it (here a stream-local channel) must go on."""
    server, guest = fake_sshd
    client = guest.open_unix("/run/cove/engine.sock")
    assert _echoes(client, b"before")
    server.refuse.add("session")
    with pytest.raises(Unavailable, match="ssh open session"):
        guest.open_exec("guestagent events")
    assert _echoes(client, b"after")  # not cut by a reconnect
    assert server.connections == 1
    client.close()
