"""A running process as the monitor sees it: its stdio pipes, attached clients, exit.

The container's main process and every exec are a :class:`Session`. Output goes
to the json log (main process only) and to every client that asked for that
stream, framed with Docker's stdcopy header unless the process has a TTY.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import time
from dataclasses import dataclass

from runtime.linux.jsonlog import JsonLog
from runtime.linux.streams import Client, Loop, Pipe, frame


@dataclass(frozen=True, slots=True)
class Stdio:
    """The parent's ends of a process's stdio, and the child's ends to dup onto 0/1/2.

    With a TTY the child opens the pty itself, in the container's devpts (so
    ``tty`` says /dev/pts/0), and sends the master back over ``console_socket``.
    """

    parent_fds: tuple[tuple[int, str | None, bool], ...]  # (fd, output stream, is stdin)
    child_fds: tuple[int, ...]  # 0/1/2 to be, or the console socket's child end
    console_socket: int = -1  # parent end, TTY only


def make_stdio(*, tty: bool, stdin: bool) -> Stdio:
    if tty:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return Stdio((), (child.detach(),), parent.detach())
    fds: list[tuple[int, str | None, bool]] = []
    if stdin:
        r_in, w_in = os.pipe2(os.O_CLOEXEC)
        fds.append((w_in, None, True))
    else:
        r_in = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    r_out, w_out = os.pipe2(os.O_CLOEXEC)
    r_err, w_err = os.pipe2(os.O_CLOEXEC)
    fds += [(r_out, "stdout", False), (r_err, "stderr", False)]
    return Stdio(tuple(fds), (r_in, w_out, w_err))


def receive_console(stdio: Stdio, size: tuple[int, int] | None) -> Stdio:
    """After the fork: take the pty master the child sent (stdio unchanged if it sent none)."""
    if stdio.console_socket < 0:
        return stdio
    sock = socket.socket(fileno=stdio.console_socket)
    try:
        _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    finally:
        sock.close()
    if not fds:
        return Stdio((), ())
    if size is not None:
        set_winsize(fds[0], *size)
    return Stdio(((fds[0], "stdout", True),), ())


def close_child_ends(stdio: Stdio) -> None:
    for fd in set(stdio.child_fds):
        os.close(fd)


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Session:
    def __init__(self, loop: Loop, stdio: Stdio, *, tty: bool, log: JsonLog | None) -> None:
        self.loop = loop
        self.tty = tty
        self.log = log
        self.clients: list[Client] = []
        self.pid = 0
        self.status: int | None = None
        self.deadline: float | None = None
        self.pipes: list[Pipe] = []
        self.stdin: Pipe | None = None
        self.master: int | None = None
        self._adopt(stdio)

    def _adopt(self, stdio: Stdio) -> None:
        for fd, stream, is_input in stdio.parent_fds:
            pipe = Pipe(self.loop, self, fd, stream, is_input)
            self.pipes.append(pipe)
            if is_input:
                self.stdin = pipe
            if self.tty:
                self.master = fd

    # -- output -----------------------------------------------------------------
    def on_output(self, stream: str, data: bytes) -> None:
        if self.log is not None:
            self.log.write(stream, data)
        payload = data if self.tty else frame(stream, data)
        for client in self.clients:
            if stream in client.streams:
                client.send(payload)
        if any(c.over_limit() for c in self.clients):
            self.update_pipes()

    def on_output_eof(self, pipe: Pipe) -> None:
        if self.log is not None and pipe.stream is not None:
            self.log.flush(pipe.stream)

    def throttled(self) -> bool:
        return any(c.over_limit() for c in self.clients)

    def update_pipes(self) -> None:
        for pipe in self.pipes:
            pipe.update()

    def outputs_open(self) -> bool:
        return any(p.reading for p in self.pipes)

    # -- input ------------------------------------------------------------------
    def write_stdin(self, data: bytes) -> None:
        if self.stdin is not None:
            self.stdin.write(data)

    def close_stdin(self) -> None:
        # A pty cannot be half-closed: its input side stays open until exit.
        if self.stdin is not None and not self.tty:
            self.stdin.close_input()

    def resize(self, rows: int, cols: int) -> None:
        if self.master is not None and self.stdin is not None and self.stdin.fd >= 0:
            set_winsize(self.master, rows, cols)

    # -- exit -------------------------------------------------------------------
    def exited(self, status: int, drain_seconds: float) -> None:
        self.status = status
        self.deadline = time.monotonic() + drain_seconds
        for pipe in self.pipes:
            pipe.drain()

    def done(self) -> bool:
        """Exited, and its output is all read (or the drain deadline passed)."""
        if self.status is None or self.deadline is None:
            return False
        return not self.outputs_open() or time.monotonic() >= self.deadline

    def close_pipes(self) -> None:
        for pipe in self.pipes:
            if pipe.reading:
                pipe.drain()
            pipe.close()
        if self.log is not None:
            self.log.close()
            self.log = None
