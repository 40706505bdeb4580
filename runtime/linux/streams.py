"""Non-blocking plumbing of the monitor's single selectors loop.

:class:`Loop` keeps one registration per fd; :class:`Pipe` moves bytes between
a process's stdio fd and a :class:`Session`; :class:`Client` is one connection
on monitor.sock (a JSON header line, then a raw or multiplexed stream).
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
from typing import Any, Protocol

READ = select.EPOLLIN
WRITE = select.EPOLLOUT
CLIENT_BUFFER_LIMIT = 1 << 20  # above this, stop reading the process: it blocks, nothing drops
STREAM_IDS = {"stdin": 0, "stdout": 1, "stderr": 2}
# What epoll reports besides the requested events: a hangup or error must wake the reader
# (a read then sees EOF or the error), and a writer, whose write then fails.
_HANGUP = select.EPOLLHUP | select.EPOLLERR


def frame(stream: str, data: bytes) -> bytes:
    """Docker's stdcopy framing: [stream, 0, 0, 0, uint32 BE size] + payload."""
    return struct.pack(">BxxxI", STREAM_IDS[stream], len(data)) + data


class Handler(Protocol):
    def on_event(self, mask: int) -> None: ...


class Loop:
    """One epoll registration per fd, each with its handler.

    epoll directly, not the selectors module: the monitor lives as long as its
    container and every Python object it touches costs it a private page (see
    runtime.linux.zygote), so its loop stays this small.
    """

    def __init__(self) -> None:
        self.epoll = select.epoll()
        self.handlers: dict[int, tuple[Handler, int]] = {}

    def set(self, fd: int, handler: Handler, events: int) -> None:
        current = self.handlers.get(fd)
        if not events:
            if current is not None:
                del self.handlers[fd]
                self.epoll.unregister(fd)
        elif current is None:
            self.epoll.register(fd, events)
            self.handlers[fd] = (handler, events)
        elif current != (handler, events):
            if current[1] != events:
                self.epoll.modify(fd, events)
            self.handlers[fd] = (handler, events)

    def run_once(self, timeout: float | None) -> None:
        ready = self.epoll.poll(-1 if timeout is None else timeout)
        batch = [(fd, mask, self.handlers.get(fd)) for fd, mask in ready]
        for fd, mask, registered in batch:
            current = self.handlers.get(fd)
            # An earlier handler in this batch may have closed (and reused) the fd.
            if registered is None or current is None or current[0] is not registered[0]:
                continue
            if mask & _HANGUP:
                mask |= current[1]
            current[0].on_event(mask & (READ | WRITE))


class SessionLike(Protocol):
    def on_output(self, stream: str, data: bytes) -> None: ...
    def on_output_eof(self, pipe: Pipe) -> None: ...
    def throttled(self) -> bool: ...


class Pipe:
    """One process stdio fd: output to read (``stream`` set) and/or input to write."""

    def __init__(self, loop: Loop, session: SessionLike, fd: int, stream: str | None,
                 writable: bool) -> None:
        os.set_blocking(fd, False)
        self.loop, self.session, self.fd = loop, session, fd
        self.stream = stream
        self.reading = stream is not None
        self.writing = writable
        self.wbuf = bytearray()
        self.close_input_when_drained = False
        self.update()

    def update(self) -> None:
        if self.fd < 0:
            return
        events = READ if self.reading and not self.session.throttled() else 0
        if self.writing and self.wbuf:
            events |= WRITE
        self.loop.set(self.fd, self, events)

    def on_event(self, mask: int) -> None:
        if mask & READ:
            self._read()
        if mask & WRITE and self.fd >= 0:
            self._write()
        self.update()

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: a pty whose slave side is all closed
        if data:
            assert self.stream is not None
            self.session.on_output(self.stream, data)
            return
        self.reading = False
        self.session.on_output_eof(self)
        self._maybe_close()

    def drain(self) -> None:
        """Read whatever is buffered right now (the process has exited)."""
        while self.reading and self.fd >= 0:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.reading = False
                self.session.on_output_eof(self)
                self._maybe_close()
                return
            assert self.stream is not None
            self.session.on_output(self.stream, data)

    def _write(self) -> None:
        try:
            n = os.write(self.fd, self.wbuf)
        except BlockingIOError:
            return
        except OSError:
            # The process closed its stdin: drop what it will never read.
            self.wbuf.clear()
            self.writing = False
            self._maybe_close()
            return
        del self.wbuf[:n]
        if not self.wbuf and self.close_input_when_drained:
            self.writing = False
            self._maybe_close()

    def write(self, data: bytes) -> None:
        if self.writing and not self.close_input_when_drained:
            self.wbuf += data
            self.update()

    def close_input(self) -> None:
        if not self.writing:
            return
        self.close_input_when_drained = True
        if not self.wbuf:
            self.writing = False
            self._maybe_close()

    def _maybe_close(self) -> None:
        if self.fd >= 0 and not self.reading and not self.writing:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.set(self.fd, self, 0)
            os.close(self.fd)
            self.fd = -1
        self.reading = self.writing = False


class ClientOwner(Protocol):
    def on_request(self, client: Client, header: dict[str, Any]) -> None: ...
    def on_client_input(self, client: Client, data: bytes) -> None: ...
    def on_client_eof(self, client: Client) -> None: ...
    def on_client_closed(self, client: Client) -> None: ...
    def on_client_drained(self, client: Client) -> None: ...


class Client:
    """A monitor.sock connection: header line, reply line, then the stream."""

    def __init__(self, loop: Loop, owner: ClientOwner, sock: socket.socket,
                 header_done: bool = False) -> None:
        sock.setblocking(False)
        self.loop, self.owner, self.sock = loop, owner, sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.header_done = header_done
        self.reading = True
        self.finishing = False
        self.closed = False
        self.streams: set[str] = set()  # output streams this client receives
        self.stdin = False  # its input goes to the process's stdin
        self.tag: object = None  # what the owner attached it to
        self.update()

    def update(self) -> None:
        if self.closed:
            return
        events = READ if self.reading else 0
        if self.outbuf:
            events |= WRITE
        self.loop.set(self.fd, self, events)

    def on_event(self, mask: int) -> None:
        if mask & READ:
            self._read()
        if mask & WRITE and not self.closed:
            self._flush()
        self.update()

    def _read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not data:
            self.reading = False
            if self.header_done:
                self.owner.on_client_eof(self)
            else:
                self.close()
            return
        if self.header_done:
            self.owner.on_client_input(self, data)
            return
        self.inbuf += data
        line, sep, rest = bytes(self.inbuf).partition(b"\n")
        if not sep:
            if len(self.inbuf) > 1 << 20:
                self.close()
            return
        self.header_done = True
        self.inbuf.clear()
        try:
            header = json.loads(line)
        except ValueError:
            self.reply({"error": "invalid", "message": "malformed request header"})
            self.finish()
            return
        self.owner.on_request(self, header)
        if rest and not self.closed:
            self.owner.on_client_input(self, rest)

    def _flush(self) -> None:
        try:
            n = self.sock.send(self.outbuf)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        before = len(self.outbuf)
        del self.outbuf[:n]
        if before > CLIENT_BUFFER_LIMIT >= len(self.outbuf):
            self.owner.on_client_drained(self)
        if not self.outbuf and self.finishing:
            self.close()

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.outbuf += data
            self.update()

    def reply(self, obj: dict[str, Any]) -> None:
        self.send(json.dumps(obj).encode() + b"\n")

    def over_limit(self) -> bool:
        return len(self.outbuf) > CLIENT_BUFFER_LIMIT

    def finish(self) -> None:
        """Close once everything queued is sent."""
        self.finishing = True
        self.reading = False
        if not self.outbuf:
            self.close()
        else:
            self.update()

    def flush_blocking(self, timeout: float) -> None:
        """Send what is queued, waiting at most *timeout*, then close (monitor exiting)."""
        if self.closed:
            return
        try:
            self.sock.settimeout(max(timeout, 0.01))
            self.sock.sendall(self.outbuf)
        except OSError:
            pass
        self.outbuf.clear()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.loop.set(self.fd, self, 0)
        self.closed = True
        self.sock.close()
        self.owner.on_client_closed(self)
