"""The Docker API relay: a host Unix socket whose every connection reaches the guest engine.

``docker -H unix://<relay.sock>`` connects here. Each accepted connection is spliced to a
stream to the guest engine, on the one shared SSH connection, opened the cheapest way that
works (:func:`open_api`):

1. ``unix``: an OpenSSH ``direct-streamlocal@openssh.com`` channel straight to the engine's
   socket: sshd connects it, no guest process or proxy hop per connection or per byte.
2. ``tcp``: a ``direct-tcpip`` channel to guest 127.0.0.1:API_PORT, where PID 1
   (:mod:`guestagent.apiproxy`) splices it to the engine after checking the token line the
   relay sends first. For sshd configs without stream-local forwarding, and for the moment
   the engine's listen backlog is full (sshd's connect does not wait; the proxy's does).
3. ``exec``: a ``guestagent dial-stdio`` exec channel (sshd session + socat, 130-180 ms under
   TCG), when neither answers (an older image, PID 1 not up yet).

Opening a channel costs a round trip into the guest and an accept there (tens of ms under
TCG), so :class:`StreamPool` keeps a couple opened ahead of time and a client connection
takes one; the pool refills between connections, when the guest is otherwise idle. A failed
open closes just that client connection; :class:`vmhost.ssh.SSHGuest` reconnects on the
next one, and pooled streams of a dropped connection are discarded, never handed out.

A pooled stream is an idle keep-alive connection, which an engine may close at any moment
(an idle timeout, a restart), so the client's first request must not be lost to it
(:meth:`UnixRelay._forward_first`): the stream is checked again once that request has
arrived; a bodiless GET/HEAD that gets EOF before a byte of answer is sent once more on a
fresh stream (safe to repeat); any other request on a stream idle for more than
:data:`PROBE_AFTER_IDLE` goes after a ``HEAD /_ping`` round trip on it, and on a fresh
stream if that fails, because it must never reach the engine twice.

Where the relay listens is an :class:`Endpoint`: a Unix socket (:class:`UnixEndpoint`), or,
where there are none (Windows; ``COVE_VM_RELAY=tcp`` elsewhere), 127.0.0.1:PORT
(:class:`TcpEndpoint`). Any local user can reach a loopback port, so there each
connection's first request must carry ``X-Cove-Token``; without it the client gets a 401
before a channel is taken or a byte reaches the guest. The port and token are in the
instance's ``relay.json`` (0600) for ``cove vm env``.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hmac
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from guestagent.protocol import API_PORT
from runtime.api.errors import CoveError, InvalidArgument, Unavailable
from runtime.api.transport import unix_stream_socket
from runtime.fsutil import write_atomic
from vmhost.guest import DIAL_STDIO, GuestConnection
from vmhost.streams import CHUNK, SocketStream, Stream, splice

log = logging.getLogger(__name__)

POOL_SIZE = 2
POOL_MAX_AGE = 60.0  # seconds; an idle engine connection older than this is reopened
PREPING_TIMEOUT = 10.0
# A pooled stream idle longer than this is probed (a HEAD /_ping round trip into the guest,
# ~3 ms under TCG) before a request that cannot be repeated (POST, a body) goes on it, so an
# engine that closes idle connections after longer than this never loses one (ours has no
# idle timeout; a restart closes them all the same).
PROBE_AFTER_IDLE = 1.0
REFUSE_TIMEOUT = 5.0
MAX_HEAD = 16 * 1024
PING_REQUEST = b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n"
KIND_ENV = "COVE_VM_RELAY"  # unix | tcp: overrides the platform's choice
PORT_ENV = "COVE_VM_RELAY_PORT"  # a fixed port for a TCP relay (default: ephemeral)
TOKEN_HEADER = b"x-cove-token"  # runtime.api.transport.TOKEN_HEADER, as _headers() keys it

Opened = tuple[Stream, str]


def open_api(
    guest: GuestConnection,
    preamble: bytes | None,
    *,
    port: int = API_PORT,
    command: str = DIAL_STDIO,
    engine_socket: str | None = None,
) -> Opened:
    """A byte stream to the guest engine's API and how it was opened ("unix", "tcp" or
    "exec"). *engine_socket* None skips the stream-local channel, *preamble* None the API
    port. Raises CoveError when no path works."""
    if engine_socket is not None:
        try:
            return guest.open_unix(engine_socket), "unix"
        except CoveError as e:
            log.debug("relay: engine socket channel: %s; trying the api port", e)
    if preamble is not None:
        try:
            ch = guest.open_tcp(port)
        except CoveError as e:
            log.debug("relay: guest api port: %s; falling back to %s", e, command)
        else:
            try:
                ch.sendall(preamble)
                return ch, "tcp"
            except (OSError, EOFError):
                ch.close()
    return guest.open_exec(command), "exec"


def _socket_open(sock: socket.socket) -> bool:
    """False once the peer has closed *sock* (a peek reads EOF) or it failed; never blocks.
    A zero timeout rather than MSG_DONTWAIT, which Windows lacks."""
    timeout = sock.gettimeout()
    try:
        sock.settimeout(0.0)
        try:
            return sock.recv(1, socket.MSG_PEEK) != b""
        finally:
            sock.settimeout(timeout)
    except BlockingIOError:
        return True
    except OSError:  # closed here (EBADF) or failed
        return False


def is_alive(stream: Stream) -> bool:
    """False when an idle pooled stream has already ended (its SSH connection dropped, the
    engine closed it); an idle API connection never has data to read."""
    from vmhost.ssh import ChannelStream

    if isinstance(stream, ChannelStream):
        ch = stream.channel
        t = ch.get_transport()
        return not (ch.closed or ch.eof_received or t is None or not t.is_active())
    if isinstance(stream, SocketStream):
        return _socket_open(stream.sock)
    return False  # a kind it cannot check (exec streams): never pooled


def _set_timeout(stream: Stream, timeout: float | None) -> None:
    from vmhost.ssh import ChannelStream

    with contextlib.suppress(OSError):  # closed meanwhile: the next recv says so
        if isinstance(stream, ChannelStream):
            stream.channel.settimeout(timeout)
        elif isinstance(stream, SocketStream):
            stream.sock.settimeout(timeout)


def _read_head(stream: Stream, limit: int = MAX_HEAD) -> bytes:
    """Bytes up to the end of the first HTTP head (and whatever came with it); fewer at EOF
    or past *limit*."""
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < limit:
        chunk = stream.recv(limit)
        if not chunk:
            break
        buf += chunk
    return buf


def preping(stream: Stream, timeout: float = PREPING_TIMEOUT) -> bytes | None:
    """Send the docker CLI's first request (``HEAD /_ping``) on a new engine connection and
    return the engine's answer, or None when it did not answer 200 in time."""
    _set_timeout(stream, timeout)
    try:
        stream.sendall(PING_REQUEST)
        head = _read_head(stream)
    except (OSError, EOFError, TimeoutError):
        return None
    finally:
        _set_timeout(stream, None)
    end = head.find(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 ") or end != len(head) - 4:
        return None
    return head


def is_plain_head_ping(request: bytes) -> bool:
    """True for a complete ``HEAD /_ping HTTP/1.1`` with no body and nothing that would make
    the engine close the connection or switch protocols: answerable with a prepinged head."""
    head, sep, rest = request.partition(b"\r\n\r\n")
    if not sep or rest:
        return False
    line, *headers = head.split(b"\r\n")
    if line != b"HEAD /_ping HTTP/1.1":
        return False
    for h in headers:
        name, _, value = h.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name in (b"transfer-encoding", b"upgrade"):
            return False
        if (name, value) not in ((b"content-length", b"0"), (b"connection", b"keep-alive")) and (
            name in (b"content-length", b"connection")
        ):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Pooled:
    stream: Stream
    how: str
    born: float = 0.0  # when it was last used (its preping); 0.0: opened for this client
    ping: bytes | None = None  # the engine's answer to a HEAD /_ping already sent on it

    @property
    def pooled(self) -> bool:
        return self.born > 0.0


def _headers(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """The request line and the (lower-cased) headers of a complete request head."""
    line, *lines = head.split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for h in lines:
        name, _, value = h.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    return line, headers


def is_repeatable(request: bytes) -> bool:
    """True for a complete bodiless GET or HEAD with nothing after it (no pipelined bytes,
    no protocol switch): sending it to the engine twice does no harm (RFC 9110 9.2.2)."""
    head, sep, rest = request.partition(b"\r\n\r\n")
    if not sep or rest:
        return False
    line, headers = _headers(head)
    if line.split(b" ", 1)[0] not in (b"GET", b"HEAD"):
        return False
    if b"upgrade" in headers or b"transfer-encoding" in headers:
        return False
    return headers.get(b"content-length", b"0") == b"0"


class StreamPool:
    """Up to *size* engine streams opened ahead by *opener*, each handed out once.

    Each is *prepinged* (:func:`preping`): its first exchange, the docker CLI's HEAD /_ping,
    has already happened, which checks that the engine answers before a client gets it and
    saves a client that starts with exactly that request one round trip into the guest.
    """

    def __init__(
        self, opener: Callable[[], Opened], size: int = POOL_SIZE, *, ping_ahead: bool = True
    ) -> None:
        self.opener = opener
        self.size = size
        self.ping_ahead = ping_ahead
        self.max_age = POOL_MAX_AGE
        self._idle: list[Pooled] = []
        self._lock = threading.Lock()
        self._filling = False
        self._closed = False
        self.hits = 0
        self.misses = 0

    def take(self) -> Pooled:
        """A pooled stream if a live one is there, else a freshly opened one (CoveError)."""
        while True:
            with self._lock:
                if not self._idle:
                    break
                got = self._idle.pop(0)
            if time.monotonic() - got.born < self.max_age and is_alive(got.stream):
                self.hits += 1
                return got
            got.stream.close()
        self.misses += 1
        return Pooled(*self.opener())

    def refill(self) -> None:
        """Top the pool up on a background thread (one at a time; stops at the first error)."""
        with self._lock:
            if self._filling or self._closed or len(self._idle) >= self.size:
                return
            self._filling = True
        threading.Thread(target=self._fill, name="relay-pool", daemon=True).start()

    def _fill(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closed or len(self._idle) >= self.size:
                        return
                try:
                    stream, how = self.opener()
                except CoveError as e:
                    log.debug("relay pool: %s", e)
                    return
                # An exec stream is a guest process per idle connection: not worth keeping.
                ping = preping(stream) if how != "exec" and self.ping_ahead else None
                if how == "exec" or (self.ping_ahead and ping is None) or not is_alive(stream):
                    stream.close()
                    return
                with self._lock:
                    if self._closed:
                        stream.close()
                        return
                    self._idle.append(Pooled(stream, how, time.monotonic(), ping))
        finally:
            with self._lock:
                self._filling = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    def empty(self) -> bool:
        return len(self) == 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for got in idle:
            got.stream.close()


class _RefillOnClose:
    """A client's guest stream that refills the pool once the connection is over, so the
    next channel opens while the guest is idle rather than while it answers this one."""

    def __init__(self, stream: Stream, pool: StreamPool) -> None:
        self.stream = stream
        self.pool = pool

    def recv(self, n: int) -> bytes:
        return self.stream.recv(n)

    def sendall(self, data: bytes) -> None:
        self.stream.sendall(data)

    def shutdown_write(self) -> None:
        self.stream.shutdown_write()

    def close(self) -> None:
        self.stream.close()
        self.pool.refill()


def bad_gateway(error: CoveError) -> bytes:
    """A 502 that says why (the docker CLI prints "Error response from daemon: ..." rather
    than a bare EOF)."""
    body = json.dumps({"message": f"cove vm: the guest engine is unreachable: {error}"}).encode()
    head = (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    return head + body


def refuse(conn: socket.socket, error: CoveError) -> None:
    """Answer the client's first request with :func:`bad_gateway`, then close."""
    try:
        conn.settimeout(REFUSE_TIMEOUT)
        _read_head(SocketStream(conn))
        conn.sendall(bad_gateway(error))
    except OSError:
        pass
    finally:
        conn.close()


def new_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


class Endpoint(Protocol):
    """Where the relay listens, and whether a connection must show a token first."""

    @property
    def token(self) -> str | None: ...

    def listen(self) -> socket.socket:
        """A bound, listening socket; whatever clients need to find it is written."""
        ...

    def cleanup(self) -> None:
        """Remove what listen() left for clients (the socket file, relay.json)."""
        ...


@dataclass(frozen=True, slots=True)
class UnixEndpoint:
    path: Path
    token: str | None = None  # a Unix socket is guarded by its mode

    def listen(self) -> socket.socket:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = unix_stream_socket()  # endpoint_for() never picks this endpoint on Windows
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.listen(128)
        return sock

    def cleanup(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """127.0.0.1:*port*, guarded by *token*; both are kept in *info* (0600) across VM
    restarts, so a ``DOCKER_HOST`` and token a user saved keep working. A remembered port
    that something else took meanwhile gives way to a new one unless it was configured
    (*fixed*); a fixed port that is taken is an error."""

    info: Path
    port: int = 0
    token: str = field(default_factory=new_token, repr=False)
    fixed: bool = False

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(("127.0.0.1", self.port))
            except OSError as e:
                if self.fixed or e.errno != errno.EADDRINUSE:
                    raise Unavailable(f"relay port 127.0.0.1:{self.port}: {e.strerror}") from e
                sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            _write_info(self.info, sock.getsockname()[1], self.token)
        except BaseException:
            sock.close()
            raise
        return sock

    def cleanup(self) -> None:
        """Nothing to remove: *info* stays for the next start (same port and token)."""

    def __str__(self) -> str:
        return f"{self.url} ({self.info})"


def _write_info(info: Path, port: int, token: str) -> None:
    info.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the instance dir's mode
    data = json.dumps({"host": f"tcp://127.0.0.1:{port}", "token": token}).encode()
    write_atomic(info, data, 0o600)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def endpoint_for(
    socket_path: Path,
    info: Path,
    *,
    platform: str = sys.platform,
    env: Mapping[str, str] = os.environ,
) -> UnixEndpoint | TcpEndpoint:
    """The relay's endpoint here: TCP on Windows (Python there has no AF_UNIX), a Unix
    socket elsewhere; ``COVE_VM_RELAY=unix|tcp`` chooses (tests take the TCP path on
    Linux), ``COVE_VM_RELAY_PORT`` fixes a TCP relay's port.

    A TCP endpoint's port and token are chosen once, written to *info* and reused from
    there, so the supervisor and clients that ask before the first start (the desktop,
    ``cove vm env``) agree on them."""
    kind = env.get(KIND_ENV) or ("tcp" if platform == "win32" else "unix")
    if kind == "unix" and platform == "win32":
        raise InvalidArgument(f"{KIND_ENV}=unix: Windows has no Unix sockets; use tcp")
    if kind == "unix":
        return UnixEndpoint(socket_path)
    if kind != "tcp":
        raise InvalidArgument(f"{KIND_ENV}={kind!r}: use unix or tcp")
    configured = env.get(PORT_ENV, "")
    if configured and (not configured.isdigit() or not 0 < int(configured) <= 65535):
        raise InvalidArgument(f"{PORT_ENV}={configured!r}: not a port number")
    known = read_relay_info(info)
    token = known[1] if known else new_token()
    if configured:
        port, fixed = int(configured), True
    elif known and (remembered := known[0].rsplit(":", 1)[-1]).isdigit():
        port, fixed = int(remembered), False
    else:
        port, fixed = _free_port(), False
    if known != (f"tcp://127.0.0.1:{port}", token):
        _write_info(info, port, token)
    return TcpEndpoint(info, port, token, fixed)


def relay_endpoint(socket_path: Path, info: Path) -> tuple[str, str | None]:
    """(URL, token) a client uses for this instance's relay: ``unix://…`` and None, or
    ``tcp://127.0.0.1:PORT`` and its token."""
    endpoint = endpoint_for(socket_path, info)
    if isinstance(endpoint, UnixEndpoint):
        return f"unix://{endpoint.path}", None
    return endpoint.url, endpoint.token


def read_relay_info(info: Path) -> tuple[str, str] | None:
    """(host URL, token) of a TCP relay from its relay.json; None when there is none."""
    try:
        doc = json.loads(info.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    host, token = doc.get("host"), doc.get("token")
    return (host, token) if isinstance(host, str) and isinstance(token, str) else None


def has_token(request: bytes, token: str) -> bool:
    """True when the complete request head carries ``X-Cove-Token: <token>`` (compared in
    constant time, so a wrong guess says nothing about the right one)."""
    head, sep, _ = request.partition(b"\r\n\r\n")
    if not sep:
        return False
    _, *lines = head.split(b"\r\n")
    for h in lines:
        name, _, value = h.partition(b":")
        if name.strip().lower() == TOKEN_HEADER:
            return hmac.compare_digest(value.strip(), token.encode())
    return False


def unauthorized() -> bytes:
    body = json.dumps(
        {"message": "cove vm: this relay needs the X-Cove-Token header (COVE_HOST_TOKEN)"}
    ).encode()
    head = (
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    return head + body


class Relay:
    """Listens on *where* (a Unix socket path, or an :class:`Endpoint`) and splices each
    connection to a stream to the guest engine."""

    def __init__(
        self,
        where: Path | Endpoint,
        guest: GuestConnection,
        command: str = DIAL_STDIO,
        *,
        preamble: bytes | None = None,
        api_port: int = API_PORT,
        engine_socket: str | None = None,
        pool_size: int = 0,
        preping: bool = True,
        probe_after_idle: float = PROBE_AFTER_IDLE,
    ) -> None:
        self.endpoint: Endpoint = UnixEndpoint(where) if isinstance(where, Path) else where
        self.guest = guest
        self.command = command
        self.preamble = preamble
        self.api_port = api_port
        self.engine_socket = engine_socket
        self.by_path: dict[str, int] = {"unix": 0, "tcp": 0, "exec": 0}
        self.pool = StreamPool(self._open, pool_size, ping_ahead=preping)
        self.probe_after_idle = probe_after_idle
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.connections = 0
        self.pings_answered = 0
        self.stale = 0  # pooled streams found closed (or not answering) at first use
        self.unauthorized = 0  # connections refused for a missing or wrong token

    @property
    def path(self) -> Path:
        """The socket path of a Unix relay."""
        if not isinstance(self.endpoint, UnixEndpoint):
            raise TypeError(f"not a Unix relay: {self.endpoint}")
        return self.endpoint.path

    def _open(self) -> Opened:
        return open_api(
            self.guest,
            self.preamble,
            port=self.api_port,
            command=self.command,
            engine_socket=self.engine_socket,
        )

    def start(self) -> None:
        self._sock = self.endpoint.listen()
        self._thread = threading.Thread(target=self._serve, name="relay", daemon=True)
        self._thread.start()
        self.pool.refill()
        log.info("relay listening on %s", self.endpoint)

    def _serve(self) -> None:
        sock = self._sock  # close() clears the attribute while this waits in accept()
        assert sock is not None
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        self.connections += 1
        first = b""
        if self.endpoint.token is not None:
            first = self._admit(conn, self.endpoint.token)
            if not first:
                return
        try:
            got = self.pool.take()
        except CoveError as e:
            log.warning("relay: %s", e)
            if first:
                self._answer_502(conn, e)
            else:
                refuse(conn, e)
            self.pool.refill()
            return
        if self.pool.empty():
            self.pool.refill()  # a burst, or a long-lived stream: do not wait for its end
        client = SocketStream(conn)
        try:
            first = self._first_request(conn, got, first)
            stream, how, answer = self._forward_first(got, first)
        except CoveError as e:
            log.warning("relay: %s", e)
            self._answer_502(conn, e)
            self.pool.refill()
            return
        except (OSError, EOFError) as e:
            log.debug("relay: %s", e)
            conn.close()
            got.stream.close()
            self.pool.refill()
            return
        self.by_path[how] += 1
        channel = _RefillOnClose(stream, self.pool)
        try:
            if answer:
                conn.sendall(answer)
        except OSError:
            conn.close()
            channel.close()
            return
        splice(client, channel, name="relay")

    def _admit(self, conn: socket.socket, token: str) -> bytes:
        """The client's first request when it carries *token*; else b"", the client
        answered 401 (or gone) and the connection closed, before anything reached the guest."""
        try:
            conn.settimeout(REFUSE_TIMEOUT)  # a silent client must not hold a thread forever
            first = _read_head(SocketStream(conn))
            conn.settimeout(None)
            if has_token(first, token):
                return first
            if first:
                self.unauthorized += 1
                log.warning("relay: a connection without the right X-Cove-Token refused")
                conn.sendall(unauthorized())
        except OSError as e:
            log.debug("relay: %s", e)
        conn.close()
        return b""

    def _first_request(self, conn: socket.socket, got: Pooled, first: bytes = b"") -> bytes:
        """The client's first request to pass on (its head and whatever came with it;
        *first* when it was read already). A HEAD /_ping that was already sent on *got*
        gets that answer, and the next one is read. b"" when the client closed first."""
        first = first or _read_head(SocketStream(conn))
        if got.ping is not None and is_plain_head_ping(first):
            self.pings_answered += 1
            conn.sendall(got.ping)
            first = _read_head(SocketStream(conn))
        return first

    def _forward_first(self, got: Pooled, first: bytes) -> tuple[Stream, str, bytes]:
        """Send *first* to the engine on *got*'s stream, or on a fresh one when the engine
        may have closed that idle connection: (stream, how it was opened, the first bytes
        of the answer when they were read here). CoveError when no fresh one opens."""
        stream, how = got.stream, got.how
        if not first or not got.pooled:
            if first:
                stream.sendall(first)
            return stream, how, b""
        repeatable = is_repeatable(first)
        idle = time.monotonic() - got.born
        if not is_alive(stream) or (
            not repeatable and idle > self.probe_after_idle and preping(stream) is None
        ):
            return (*self._resend(stream, first), b"")
        try:
            stream.sendall(first)
            answer = stream.recv(CHUNK) if repeatable else b""
        except (OSError, EOFError):
            if not repeatable:
                raise  # the engine may have it: the client sees the connection end
            answer = b""
        if not repeatable or answer:
            return stream, how, answer
        # EOF before a byte of answer on an idle connection: the engine closed it as the
        # request arrived. A GET/HEAD goes once more, on a fresh stream.
        log.info("relay: engine closed a pooled connection; resending %r", first[:80])
        return (*self._resend(stream, first), b"")

    def _resend(self, stale: Stream, first: bytes) -> Opened:
        """*first* on a freshly opened stream, in place of the pooled *stale* one."""
        self.stale += 1
        stale.close()
        stream, how = self._open()
        try:
            stream.sendall(first)
        except (OSError, EOFError):
            stream.close()
            raise
        return stream, how

    def _answer_502(self, conn: socket.socket, error: CoveError) -> None:
        """The client's request is read already: answer it as refuse() does."""
        with contextlib.suppress(OSError):
            conn.sendall(bad_gateway(error))
        conn.close()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
            self._sock.close()
            self._sock = None
        self.pool.close()
        self.endpoint.cleanup()


UnixRelay = Relay  # the name from before TCP endpoints
