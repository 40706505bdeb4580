"""HTTP plumbing under :class:`runtime.api.client.Client`: URLs, errors, response shapes.

Non-2xx answers raise the :mod:`runtime.api.errors` class their status stands
for (``from_status``), chained from a :class:`DaemonResponse` so a CLI can say
"Error response from daemon: ...". Every call opens its own connection (cheap
on a Unix socket), which keeps the client thread-safe and lets long-lived
streams (events, wait, logs -f) run beside ordinary requests.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any
from urllib.parse import urlencode

from runtime.api import streams
from runtime.api.errors import CoveError, from_status
from runtime.api.http11 import Response, send_request
from runtime.api.transport import Transport, resolve_host, transport_for

API_VERSION = "1.44"
JSON = dict[str, Any]
Body = bytes | IO[bytes] | Iterable[bytes]
QueryValue = str | int | float | bool | None | list[str] | Mapping[str, list[str]]


class DaemonResponse(Exception):
    """The ``__cause__`` of errors the engine answered with (as opposed to local ones)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def encode_query(query: Mapping[str, QueryValue]) -> str:
    """Docker's query conventions: booleans as 1/0, filters as a JSON map, lists repeated."""
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        if value is None:
            continue
        if isinstance(value, bool):
            pairs.append((key, "1" if value else "0"))
        elif isinstance(value, list):
            pairs.extend((key, v) for v in value)
        elif isinstance(value, Mapping):
            # Go clients send the map form {"label": {"a=b": true}}.
            if value:
                form = {k: dict.fromkeys(vs, True) for k, vs in value.items()}
                pairs.append((key, json.dumps(form, separators=(",", ":"))))
        else:
            pairs.append((key, str(value)))
    return urlencode(pairs)


def encode_auth(auth: Mapping[str, Any] | None) -> str:
    """The X-Registry-Auth header value: base64url JSON ("e30=" is ``{}``)."""
    raw = json.dumps(dict(auth or {}), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


class Hijacked:
    """An attach/exec connection after ``101 UPGRADED``: the raw socket, both ways."""

    __slots__ = ("multiplexed", "sock")

    def __init__(self, sock: socket.socket, multiplexed: bool) -> None:
        self.sock = sock
        self.multiplexed = multiplexed

    def output(self) -> Iterator[tuple[int, bytes]]:
        """(stream, bytes) pairs until the engine closes; stream is 1/2 (or 1 for a TTY)."""
        reader = streams.SocketReader(self.sock)
        if self.multiplexed:
            return streams.frames(reader.read_exact)
        return streams.raw_chunks(reader.read_some)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        """Half-close: tells the engine stdin hit EOF; output keeps flowing."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


class Waiter:
    """A ``POST /containers/{id}/wait`` whose headers arrived; ``result`` blocks for the body."""

    def __init__(self, resp: Response) -> None:
        self._resp = resp

    def result(self) -> JSON:
        try:
            data: JSON = json.loads(self._resp.read() or b"{}")
        except (OSError, ValueError) as e:
            raise CoveError(f"error waiting for container: {e}") from e
        finally:
            self.close()
        return data

    def close(self) -> None:
        self._resp.close()


class BaseClient:
    """Request plumbing: URL building, error mapping, the three response shapes."""

    def __init__(
        self, transport: Transport | str | None = None, *, api_version: str = API_VERSION
    ) -> None:
        if transport is None or isinstance(transport, str):
            transport = transport_for(resolve_host(transport))
        self.transport = transport
        self.api_version = api_version

    @property
    def endpoint(self) -> str:
        return self.transport.endpoint

    def url(self, path: str, query: Mapping[str, QueryValue] | None = None) -> str:
        prefix = f"/v{self.api_version}" if self.api_version and path != "/_ping" else ""
        qs = encode_query(query) if query else ""
        return prefix + path + ("?" + qs if qs else "")

    def open(
        self,
        method: str,
        path: str,
        query: Mapping[str, QueryValue] | None = None,
        *,
        json_body: Any = None,
        data: Body | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one request on a fresh connection; return a 2xx/3xx response (or raise).

        The caller owns the response; closing it closes the connection.
        """
        hdrs = {**self.transport.headers, **(headers or {})}
        body: Body | None = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        sock = self.transport.connect()
        try:
            send_request(sock, method, self.url(path, query), hdrs, body)
            resp = Response(sock, method)
        except CoveError:
            sock.close()
            raise
        except OSError as e:
            sock.close()
            raise CoveError(f"error during {method} {path}: {e or type(e).__name__}") from e
        if resp.status >= 400:
            try:
                payload = resp.read()
            except OSError:
                payload = b""
            resp.close()
            raise daemon_error(resp.status, payload)
        return resp

    def call(
        self, method: str, path: str, query: Mapping[str, QueryValue] | None = None, **kw: Any
    ) -> Any:
        """A request whose answer is JSON (or empty): the decoded body, or None."""
        resp = self.open(method, path, query, **kw)
        try:
            payload = resp.read()
        finally:
            resp.close()
        return json.loads(payload) if payload.strip() else None

    def stream_json(
        self, method: str, path: str, query: Mapping[str, QueryValue] | None = None, **kw: Any
    ) -> Iterator[JSON]:
        """A JSON-lines response; raises StreamError on an in-band error."""
        resp = self.open(method, path, query, **kw)
        try:
            yield from streams.json_messages(resp.readline)
        finally:
            resp.close()

    def stream_bytes(
        self, method: str, path: str, query: Mapping[str, QueryValue] | None = None, **kw: Any
    ) -> Iterator[bytes]:
        resp = self.open(method, path, query, **kw)
        try:
            while chunk := resp.read1(65536):
                yield chunk
        finally:
            resp.close()

    def hijack(
        self, path: str, query: Mapping[str, QueryValue] | None = None, json_body: Any = None
    ) -> Hijacked:
        """POST with ``Upgrade: tcp``; after ``101 UPGRADED`` hand back the raw socket."""
        body = json.dumps(json_body).encode() if json_body is not None else b""
        ctype = "application/json" if json_body is not None else "text/plain"
        head = (
            f"POST {self.url(path, query)} HTTP/1.1\r\nHost: localhost\r\n"
            f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in self.transport.headers.items())
            + "\r\n"
        )
        sock = self.transport.connect()
        try:
            sock.sendall(head.encode() + body)
            status, headers = streams.parse_http_head(streams.read_http_head(sock))
            if status >= 400:
                raise daemon_error(status, _read_body(sock, headers))
        except BaseException:
            sock.close()
            raise
        # 200 without upgrade is what an engine ignoring Upgrade sends; same stream follows.
        multiplexed = headers.get("content-type", "") == streams.MULTIPLEXED
        return Hijacked(sock, multiplexed)

    def stream_output(
        self, path: str, query: Mapping[str, QueryValue], tty: bool | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """A logs-style response: demultiplexed frames, or raw chunks for a TTY."""
        resp = self.open("GET", path, query)
        raw = tty if tty is not None else resp.getheader("Content-Type") == streams.RAW
        try:
            if raw:
                yield from streams.raw_chunks(lambda: resp.read1(65536))
            else:
                yield from streams.frames(resp.read)
        finally:
            resp.close()


def daemon_error(status: int, payload: bytes) -> CoveError:
    """The error a non-2xx answer stands for, chained from a DaemonResponse (so a CLI says
    "Error response from daemon: ...")."""
    err = from_status(status, _error_message(payload, status))
    err.__cause__ = DaemonResponse(status)
    err.__suppress_context__ = True
    return err


def _error_message(payload: bytes, status: int) -> str:
    text = payload.decode("utf-8", "replace").strip()
    try:
        msg = json.loads(text).get("message")
    except (ValueError, AttributeError):
        msg = None
    return str(msg) if msg else text or f"HTTP {status}"


def _read_body(sock: socket.socket, headers: Mapping[str, str]) -> bytes:
    """Body of an error answer on a hijack attempt (Content-Length or chunked)."""
    reader = streams.SocketReader(sock)
    if "content-length" in headers:
        return reader.read_exact(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return b""
    out = bytearray()
    while True:
        size_line = bytearray()
        while not size_line.endswith(b"\r\n"):
            b = reader.read_exact(1)
            if not b:
                return bytes(out)
            size_line += b
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return bytes(out)
        out += reader.read_exact(size)
        reader.read_exact(2)
