"""How the client reaches the engine: one small seam (httpx's ``BaseTransport`` idea).

A :class:`Transport` hands out connected stream sockets that speak HTTP/1.1 to
the engine. The client never cares whether the far end is a Unix socket, a TCP
port or (later, from vmhost) an SSH channel wrapped in a socket.

Endpoints are URLs: ``unix:///run/cove/engine.sock`` or ``tcp://host:port``.
Which one is used: the ``-H/--host`` flag, else ``$COVE_HOST``, else
:data:`DEFAULT_HOST`. A ``tcp://`` endpoint that anyone on the machine can reach (the VM
relay on Windows) wants a token: ``$COVE_HOST_TOKEN`` goes in each connection's first
request as ``X-Cove-Token``. ``DOCKER_HOST`` is deliberately ignored: a user pointing
docker at Cove must not accidentally point cove at a real dockerd.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from runtime.api.errors import InvalidArgument

# Mirrors runtime.layout.DEFAULT_SOCKET (runtime.api may not import runtime.layout;
# tests/cli/test_transport.py checks the two agree).
DEFAULT_SOCKET_PATH = "/run/cove/engine.sock"
DEFAULT_HOST = "unix://" + DEFAULT_SOCKET_PATH
HOST_ENV = "COVE_HOST"
TOKEN_ENV = "COVE_HOST_TOKEN"
TOKEN_HEADER = "X-Cove-Token"


class EngineUnreachable(ConnectionError):
    """The transport could not connect at all (socket missing, refused, ...)."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason


class Transport(Protocol):
    """Hands out fresh connections to the engine.

    ``connect`` blocks until connected (at most ``timeout`` seconds), is safe to
    call from any thread and raises :class:`EngineUnreachable` when nothing
    listens. Each call returns a new socket the caller owns and must close.
    """

    @property
    def endpoint(self) -> str:
        """The URL this transport connects to, for messages."""
        ...

    def connect(self) -> socket.socket: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Headers every request on this transport carries (e.g. a relay's token)."""
        ...


class UnixSocketTransport:
    __slots__ = ("path", "timeout")

    def __init__(self, path: str, timeout: float | None = None) -> None:
        self.path, self.timeout = path, timeout

    def __repr__(self) -> str:
        return f"UnixSocketTransport({self.path!r})"

    @property
    def endpoint(self) -> str:
        return "unix://" + self.path

    @property
    def headers(self) -> Mapping[str, str]:
        return {}

    def connect(self) -> socket.socket:
        try:
            sock = unix_stream_socket()
        except OSError as e:
            raise EngineUnreachable(self.endpoint, str(e)) from e
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as e:
            sock.close()
            raise EngineUnreachable(self.endpoint, e.strerror or str(e)) from e
        return sock


def unix_stream_socket() -> socket.socket:
    """A new AF_UNIX stream socket; OSError on Windows, whose CPython has no AF_UNIX."""
    if sys.platform != "win32":
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raise OSError(errno.EAFNOSUPPORT, "Unix sockets are not available on Windows")


class TcpTransport:
    __slots__ = ("host", "port", "timeout", "token")

    def __init__(
        self, host: str, port: int, timeout: float | None = None, token: str | None = None
    ) -> None:
        self.host, self.port, self.timeout, self.token = host, port, timeout, token

    def __repr__(self) -> str:
        return f"TcpTransport({self.host!r}, {self.port})"  # never the token

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def headers(self) -> Mapping[str, str]:
        return {TOKEN_HEADER: self.token} if self.token else {}

    def connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise EngineUnreachable(self.endpoint, e.strerror or str(e)) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        return sock


def resolve_host(flag: str | None = None) -> str:
    """The endpoint URL to use: the flag, else $COVE_HOST, else the default socket."""
    return flag or os.environ.get(HOST_ENV) or DEFAULT_HOST


def transport_for(url: str, timeout: float | None = None) -> Transport:
    """Parse an endpoint URL into a transport (raises InvalidArgument on a bad URL)."""
    if url.startswith("/"):  # a bare socket path, as a convenience
        return UnixSocketTransport(url, timeout)
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.netloc + parts.path  # unix://relative/x.sock keeps its netloc part
        if not path:
            raise InvalidArgument(f"invalid host {url!r}: empty socket path")
        return UnixSocketTransport(path, timeout)
    if parts.scheme in ("tcp", "http"):
        if not parts.hostname:
            raise InvalidArgument(f"invalid host {url!r}: missing host name")
        token = os.environ.get(TOKEN_ENV) or None
        return TcpTransport(parts.hostname, parts.port or 2375, timeout, token)
    raise InvalidArgument(f"invalid host {url!r}: use unix:///path or tcp://host:port")
