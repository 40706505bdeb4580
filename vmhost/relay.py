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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from guestagent.protocol import API_PORT
from runtime.api.errors import CoveError
from vmhost.guest import DIAL_STDIO, GuestConnection
from vmhost.streams import SocketStream, Stream, splice

log = logging.getLogger(__name__)

POOL_SIZE = 2
POOL_MAX_AGE = 60.0  # seconds; an idle engine connection older than this is reopened
PREPING_TIMEOUT = 10.0
REFUSE_TIMEOUT = 5.0
MAX_HEAD = 16 * 1024
PING_REQUEST = b"HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n"

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


def is_alive(stream: Stream) -> bool:
    """False when an idle pooled stream has already ended (its SSH connection dropped, the
    engine closed it); an idle API connection never has data to read."""
    from vmhost.ssh import ChannelStream

    if isinstance(stream, ChannelStream):
        ch = stream.channel
        t = ch.get_transport()
        return not (ch.closed or ch.eof_received or t is None or not t.is_active())
    if isinstance(stream, SocketStream):
        try:
            return stream.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False
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
    born: float = 0.0
    ping: bytes | None = None  # the engine's answer to a HEAD /_ping already sent on it


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


def refuse(conn: socket.socket, error: CoveError) -> None:
    """Answer the client's first request with a 502 that says why (the docker CLI prints
    "Error response from daemon: ..." rather than a bare EOF), then close."""
    body = json.dumps({"message": f"cove vm: the guest engine is unreachable: {error}"}).encode()
    head = (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    try:
        conn.settimeout(REFUSE_TIMEOUT)
        _read_head(SocketStream(conn))
        conn.sendall(head + body)
    except OSError:
        pass
    finally:
        conn.close()


class UnixRelay:
    def __init__(
        self,
        path: Path,
        guest: GuestConnection,
        command: str = DIAL_STDIO,
        *,
        preamble: bytes | None = None,
        api_port: int = API_PORT,
        engine_socket: str | None = None,
        pool_size: int = 0,
        preping: bool = True,
    ) -> None:
        self.path = path
        self.guest = guest
        self.command = command
        self.preamble = preamble
        self.api_port = api_port
        self.engine_socket = engine_socket
        self.by_path: dict[str, int] = {"unix": 0, "tcp": 0, "exec": 0}
        self.pool = StreamPool(self._open, pool_size, ping_ahead=preping)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.connections = 0
        self.pings_answered = 0

    def _open(self) -> Opened:
        return open_api(
            self.guest,
            self.preamble,
            port=self.api_port,
            command=self.command,
            engine_socket=self.engine_socket,
        )

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.listen(128)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="relay", daemon=True)
        self._thread.start()
        self.pool.refill()
        log.info("relay listening on %s", self.path)

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        self.connections += 1
        try:
            got = self.pool.take()
        except CoveError as e:
            log.warning("relay: %s", e)
            refuse(conn, e)
            self.pool.refill()
            return
        self.by_path[got.how] += 1
        if self.pool.empty():
            self.pool.refill()  # a burst, or a long-lived stream: do not wait for its end
        channel = _RefillOnClose(got.stream, self.pool)
        if got.ping is not None and not self._answer_ping(conn, channel, got.ping):
            conn.close()
            channel.close()
            return
        splice(SocketStream(conn), channel, name="relay")

    def _answer_ping(self, conn: socket.socket, channel: Stream, ping: bytes) -> bool:
        """The client's first request: answered with *ping* when it is the HEAD /_ping that
        was already sent on *channel*, else passed on. False when either side went away."""
        try:
            first = _read_head(SocketStream(conn))
            if is_plain_head_ping(first):
                self.pings_answered += 1
                conn.sendall(ping)
            elif first:
                channel.sendall(first)
        except (OSError, EOFError) as e:
            log.debug("relay: %s", e)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
            self._sock.close()
            self._sock = None
        self.pool.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
