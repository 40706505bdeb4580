"""The engine's HTTP/1.1 server on a Unix socket, with Docker's wire conventions.

One thread per connection (threads wait in ``accept()``), keep-alive, chunked
request bodies (the Go CLI streams builds and uploads that way), chunked
streaming responses flushed per message, and the hijacked ``101 UPGRADED``
stream that attach and exec use. Routing lives in :mod:`runtime.engine.router`.
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import io
import json
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from runtime.api.errors import CoveError, InvalidArgument

log = logging.getLogger(__name__)

API_VERSION = "1.44"
MIN_API_VERSION = "1.24"
SERVER_NAME = "Cove/0.1.0 (linux)"
_FALSE_WORDS = {"", "0", "no", "false", "none"}


class ChunkedReader(io.RawIOBase):
    """A request body sent with ``Transfer-Encoding: chunked``, de-chunked on the fly."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        self._raw = raw
        self._left = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._done:
            return 0
        if self._left == 0:
            line = self._raw.readline(1024)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._raw.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return 0
            self._left = size
        view = memoryview(buffer)[: self._left]
        n = self._raw.readinto(view)
        if not n:
            raise InvalidArgument("request body ended inside a chunk")
        self._left -= n
        if self._left == 0:
            self._raw.readline(8)  # CRLF after the chunk
        return int(n)


class LimitedReader(io.RawIOBase):
    """A request body of known ``Content-Length``."""

    def __init__(self, raw: io.BufferedIOBase, length: int) -> None:
        self._raw = raw
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        n = self._raw.readinto(view)
        if not n:
            return 0
        self._left -= n
        return int(n)


@dataclass
class Response:
    """A reply: ``body`` is bytes, or an iterator of chunks streamed with chunked encoding."""

    status: int = 200
    body: bytes | Iterable[bytes] = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


# json.dumps's output (same separators, ASCII escapes) without its check for reference
# cycles, ~10 % of the encoding (an inspect reply: ~37 -> ~34 us). Reply bodies are trees
# built per request; a cycle would still end in RecursionError, a 500.
_encode_json = json.JSONEncoder(check_circular=False).encode


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status=status, body=_encode_json(obj).encode() + b"\n")


def no_content(status: int = 204) -> Response:
    return Response(status=status, body=b"", content_type="")


def json_lines(messages: Iterable[Any], content_type: str = "application/json") -> Response:
    """A streamed JSON-lines body: one message per chunk, flushed as it comes."""

    def chunks() -> Iterator[bytes]:
        for msg in messages:
            yield _encode_json(msg).encode() + b"\r\n"

    return Response(status=200, body=chunks(), content_type=content_type)


class Request:
    """One API request as the route handlers see it."""

    def __init__(self, handler: _Connection, method: str, path: str, query: str) -> None:
        self._handler = handler
        self.method = method
        self.path = path
        # Most requests (the CLI's ping and inspect among them) carry no query at all.
        self.query: dict[str, list[str]] = (
            parse_qs(query, keep_blank_values=True) if query else {})
        self.params: dict[str, str] = {}
        self.api_version = API_VERSION
        self.headers = handler.headers
        self._body: BinaryIO | None = None
        self.hijacked = False

    # -- query helpers (moby's conventions) --
    def has(self, name: str) -> bool:
        return name in self.query

    def str_arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        # The first value wins, as with Go's Request.FormValue (docker-py can repeat a key).
        return values[0] if values else default

    def bool_arg(self, name: str, default: bool = False) -> bool:
        values = self.query.get(name)
        if not values:
            return default
        return values[-1].strip().lower() not in _FALSE_WORDS

    def int_arg(self, name: str, default: int | None = None) -> int | None:
        value = self.str_arg(name)
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {value!r}") from None

    def filters(self) -> dict[str, list[str]]:
        """``filters`` in either form: Go's map ``{"k":{"v":true}}`` or docker-py's list."""
        raw = self.str_arg("filters")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise InvalidArgument(f"invalid filter: {raw}") from None
        if not isinstance(data, dict):
            raise InvalidArgument(f"invalid filter: {raw}")
        out: dict[str, list[str]] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                out[key] = [k for k, v in value.items() if v]
            elif isinstance(value, list):
                out[key] = [str(v) for v in value]
            elif isinstance(value, str):
                out[key] = [value]
            else:
                raise InvalidArgument(f"invalid filter: {raw}")
        return out

    # -- body --
    def body(self) -> BinaryIO:
        """The request body as a stream (de-chunked); empty when there is none."""
        if self._body is None:
            rfile = self._handler.rfile
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raw: io.RawIOBase = ChunkedReader(rfile)
            else:
                raw = LimitedReader(rfile, int(self.headers.get("Content-Length") or 0))
            self._body = io.BufferedReader(raw, 1 << 16)
        return self._body

    def _has_body(self) -> bool:
        headers = self.headers
        return "transfer-encoding" in headers or (headers.get("Content-Length") or "0") != "0"

    def json(self, default: Any = None) -> Any:
        data = self.body().read()
        if not data.strip():
            return default
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"invalid JSON body: {e}") from None

    def drain(self) -> None:
        """Read what the handler left of the body so the connection can be reused."""
        if self._body is None and not self._has_body():
            return  # most requests: nothing to read, no reader to allocate
        body = self.body()
        while body.read(1 << 16):
            pass

    # -- hijack --
    def wants_upgrade(self) -> bool:
        return "upgrade" in self.headers.get("Connection", "").lower()

    def hijack(self, content_type: str) -> socket.socket:
        """Answer ``101 UPGRADED`` (or 200 without an Upgrade header) and hand over the socket.

        The caller owns the socket from here on; the server closes it after the
        handler returns. Stream bytes must not ride in the same write as these
        headers: docker-py loses them (compat-notes §a.0).
        """
        h = self._handler
        if self.wants_upgrade():
            head = (
                "HTTP/1.1 101 UPGRADED\r\n"
                f"Content-Type: {content_type}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
            )
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in _common_headers().items()) + "\r\n"
        h.connection.sendall(head.encode())
        self.hijacked = True
        h.close_connection = True
        conn: socket.socket = h.connection
        return conn

    def client_gone(self) -> bool:
        """True once the client has closed its end (for long-lived streams to notice).

        A client of a streaming endpoint sends nothing after its request, so a
        readable socket that peeks as empty means EOF.
        """
        sock: socket.socket = self._handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    @property
    def connection(self) -> socket.socket:
        conn: socket.socket = self._handler.connection
        return conn


def _common_headers() -> dict[str, str]:
    return {
        "Api-Version": API_VERSION,
        "Docker-Experimental": "false",
        "Ostype": "linux",
        "Server": SERVER_NAME,
    }


Dispatch = Callable[[Request], Response]


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookup (keys stored lower-case)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


_MAX_HEADERS = 100


class _Connection:
    """One client connection: reads requests one after another and answers each.

    A lean stand-in for the stdlib's ``BaseHTTPRequestHandler``: a request costs a
    buffered readline per header line, and a reply with a bytes body leaves in one
    ``sendmsg`` (head and body together), so a docker CLI run (``HEAD /_ping`` then
    the real request) costs the engine two sends.
    """

    def __init__(self, sock: socket.socket, dispatch: Dispatch) -> None:
        self.connection = sock
        self.rfile = sock.makefile("rb")
        self.dispatch = dispatch
        self.headers = Headers()
        self.command = ""
        self.path = ""
        self.close_connection = True
        self.peer_closed = False  # the client closed its end between requests

    def handle(self) -> None:
        try:
            while self._handle_one():
                pass
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self.rfile.close()

    def _handle_one(self) -> bool:
        """Serve one request; False when the connection is done."""
        line = self.rfile.readline(_MAX_LINE + 1)
        if not line:
            self.peer_closed = True
            return False
        if len(line) > _MAX_LINE:
            self._send_error(414, "Request-URI Too Long")
            return False
        if not self._parse(line):
            return False
        if self.command not in _METHODS:
            self._send_error(501, f"Unsupported method ({self.command!r})")
            return False
        self._serve()
        return not self.close_connection

    def _parse(self, raw_line: bytes) -> bool:
        """Request line and headers (Docker clients send plain ``Name: value`` lines)."""
        words = str(raw_line, "iso-8859-1").split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self._send_error(400, f"Bad request syntax ({raw_line.rstrip()!r})")
            return False
        self.command, self.path, version = words
        headers = Headers()
        readline = self.rfile.readline
        for _ in range(_MAX_HEADERS + 1):
            raw = readline(_MAX_LINE + 1)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = str(raw, "iso-8859-1").partition(":")
            if not sep:
                self._send_error(400, "Bad header line")
                return False
            headers[name.strip().lower()] = value.strip()
        else:
            self._send_error(431, "Too many headers")
            return False
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            version == "HTTP/1.0" and connection != "keep-alive"
        )
        if headers.get("expect", "").lower() == "100-continue":
            self.connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _send_error(self, status: int, message: str) -> None:
        """A plain-text error, then the connection closes (as Go's server does)."""
        self.close_connection = True
        body = message.encode("utf-8", "replace") + b"\n"
        head = (f"{_status_line(status)}Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(OSError):
            self.connection.sendall(head.encode("latin-1") + body)

    def _serve(self) -> None:
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.monotonic() if debug else 0.0
        path, query = _split_target(self.path)
        req = Request(self, self.command, path, query)
        resp = self.dispatch(req)
        if req.hijacked:
            return
        try:
            req.drain()
        except (CoveError, ValueError, OSError):
            self.close_connection = True
        self._send(resp, head_only=self.command == "HEAD")
        if debug:
            log.debug("%s %s -> %d in %.1f ms", self.command, self.path, resp.status,
                      (time.monotonic() - started) * 1000)

    def _send(self, resp: Response, head_only: bool) -> None:
        body = resp.body
        streaming = not isinstance(body, bytes)
        head_bytes = _head(resp, streaming)
        if head_only or resp.status in (204, 304) or streaming:
            self.connection.sendall(head_bytes)
            if streaming:
                if head_only or resp.status in (204, 304):
                    _close_iterator(body)
                else:
                    self._stream(body)  # type: ignore[arg-type]
            return
        send_all(self.connection, [head_bytes, body])  # type: ignore[list-item]

    def _stream(self, chunks: Iterable[bytes]) -> None:
        iterator = iter(chunks)
        sock = self.connection
        try:
            for chunk in iterator:
                if chunk:
                    send_all(sock, [b"%x\r\n" % len(chunk), chunk, b"\r\n"])
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except CoveError as e:
            # Too late for a status code: end the stream in band, as moby does.
            msg = json.dumps({"errorDetail": {"message": e.message}, "error": e.message})
            data = msg.encode() + b"\r\n"
            sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
            self.close_connection = True
        finally:
            _close_iterator(iterator)


def _split_target(target: str) -> tuple[str, str]:
    """The request target's decoded path and its raw query string.

    A plain ``/a/b`` path (no query, fragment, escapes, or ``//`` that urlsplit would
    read as a host) is its own decoded path: no urlsplit and unquote for it.
    """
    if (target.startswith("/") and not target.startswith("//")
            and "?" not in target and "%" not in target and "#" not in target):
        return target, ""
    url = urlsplit(target)
    return unquote(url.path), url.query


_MAX_LINE = 65536
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD"})
_STATUS_LINES: dict[int, str] = {}


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n"
    return line


_COMMON_BLOCK = "".join(f"{k}: {v}\r\n" for k, v in _common_headers().items())


def _head(resp: Response, streaming: bool) -> bytes:
    """Status line and headers: the common ones, the response's own, then the framing."""
    if resp.headers:
        return _head_with_extra_headers(resp, streaming)
    head = [_status_line(resp.status), _COMMON_BLOCK]
    if resp.content_type:
        head.append(f"Content-Type: {resp.content_type}\r\n")
    if streaming:
        head.append("Transfer-Encoding: chunked\r\n")
    elif resp.status not in (204, 304):
        head.append(f"Content-Length: {len(resp.body)}\r\n")  # type: ignore[arg-type]
    head.append(_date_header())
    head.append("\r\n")
    return "".join(head).encode("latin-1")


def _head_with_extra_headers(resp: Response, streaming: bool) -> bytes:
    """The general case (ping's few extra headers): a response's own header wins over a
    common one, the framing headers win over the response's, and its Date is kept."""
    headers = {**_common_headers(), **resp.headers}
    if resp.content_type:
        headers["Content-Type"] = resp.content_type
    if streaming:
        headers["Transfer-Encoding"] = "chunked"
    elif resp.status not in (204, 304):
        headers["Content-Length"] = str(len(resp.body))  # type: ignore[arg-type]
    text = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if "Date" not in headers:
        text += _date_header()
    return f"{_status_line(resp.status)}{text}\r\n".encode("latin-1")


_date_cache: tuple[int, str] = (0, "")


def _date_header() -> str:
    """``Date:``, formatted once per second rather than once per response."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = f"Date: {email.utils.formatdate(now, usegmt=True)}\r\n"
        _date_cache = (now, text)
    return text


def _close_iterator(iterator: object) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def send_all(sock: socket.socket, parts: list[bytes]) -> None:
    """Send *parts* back to back with as few syscalls as the kernel allows (one, usually):
    gathered by ``sendmsg`` instead of joined into a copy, the rest resent on a short send."""
    total = sum(len(p) for p in parts)
    sent = sock.sendmsg(parts)
    if sent == total:
        return
    rest = b"".join(parts)[sent:]
    sock.sendall(rest)


class _Server:
    """Accepts connections on a Unix socket and serves each on its own thread.

    Threads wait in ``accept()`` themselves (leader/follower) instead of a selector
    thread handing each connection to a thread started for it: the thread that
    accepts serves at once, and spare threads stay parked in ``accept()`` for the
    next client. Only when every spare is busy (long streams, parallel clients) is a
    new thread started; a finished thread goes back to waiting unless enough already
    do.
    """

    SPARE = 2  # threads kept waiting in accept()
    MAX_IDLE = 8  # more than this many idle threads exit

    def __init__(self, path: str, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.socket.bind(path)
            self.socket.listen(128)
        except OSError:
            self.socket.close()
            raise
        self._lock = threading.Lock()
        self._waiting = 0  # threads in (or about to enter) accept()
        self._stopping = False
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        for _ in range(self.SPARE):
            self._spawn()
        self._stopped.wait()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._waiting += 1
        threading.Thread(target=self._worker, name="http", daemon=True).start()

    def _worker(self) -> None:
        while True:
            try:
                sock, _ = self.socket.accept()
            except OSError:
                if self._stopping:
                    return
                time.sleep(0.01)  # EMFILE and the like: back off, then wait again
                continue
            with self._lock:
                self._waiting -= 1
                short = self._waiting < 1
            if short:
                self._spawn()
            self._serve(sock)
            with self._lock:
                if self._stopping or self._waiting >= self.MAX_IDLE:
                    return
                self._waiting += 1

    def _serve(self, sock: socket.socket) -> None:
        conn: _Connection | None = None
        try:
            conn = _Connection(sock, self.dispatch)
            conn.handle()
        except Exception:
            log.exception("http connection failed")
        finally:
            # A client that hung up first needs no FIN before the close (the CLI's usual
            # end): one syscall less per connection.
            if conn is None or not conn.peer_closed:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
            sock.close()

    def shutdown(self) -> None:
        """Stop accepting (wakes every thread parked in accept()); open connections
        are not waited for, as before."""
        with self._lock:
            self._stopping = True
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self._stopped.set()

    def server_close(self) -> None:
        self.socket.close()


class UnixHTTPServer:
    """Serves *dispatch* on a Unix socket at *path* (mode 0660, group ``cove`` if present)."""

    def __init__(self, path: str, dispatch: Dispatch, group: str | None = None) -> None:
        if os.path.exists(path):
            _remove_stale_socket(path)
        old_umask = os.umask(0o117)
        try:
            self._server = _Server(path, dispatch)
        finally:
            os.umask(old_umask)
        self.path = path
        if group:
            _chgrp(path, group)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _remove_stale_socket(path: str) -> None:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise CoveError(f"another engine is already listening on {path}")


def _chgrp(path: str, group: str) -> None:
    import grp

    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    os.chown(path, -1, gid)
