"""Wiring the terminal to a hijacked attach/exec stream.

termios/tty are imported inside functions only: the CLI must import on Windows
and macOS, where raw mode is either different or unavailable.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, cast

from runtime.api.client import Hijacked

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_detach_keys(spec: str) -> bytes:
    """docker's --detach-keys: "ctrl-p,ctrl-q", "a", "ctrl-@" ... → bytes to watch for."""
    out = bytearray()
    for key in (k.strip() for k in spec.split(",")):
        if key.startswith("ctrl-") and len(key) == 6:
            c = key[5]
            code = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(c)
            if code is None:
                if not c.isalpha():
                    raise ValueError(f"invalid detach keys: {spec}")
                code = ord(c.lower()) - ord("a") + 1
            out.append(code)
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(f"invalid detach keys: {spec}")
    return bytes(out)


def is_tty(stream: IO[str] | IO[bytes]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def terminal_size(fd: int = 1) -> tuple[int, int]:
    """(rows, cols) of the terminal, or (0, 0) when there is none."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 0, 0
    return size.lines, size.columns


@contextmanager
def raw_terminal(fd: int, enabled: bool = True) -> Iterator[None]:
    """Put a TTY in raw mode (keystrokes pass through, ctrl-c goes to the container)."""
    if not enabled or sys.platform == "win32" or not os.isatty(fd):
        yield
        return
    import termios
    import tty

    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


@contextmanager
def on_resize(resize: Callable[[int, int], None], enabled: bool = True) -> Iterator[None]:
    """Call resize(rows, cols) now and on every SIGWINCH (docker resizes on start, too)."""
    sigwinch = getattr(signal, "SIGWINCH", None)
    if not enabled or sigwinch is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_sig: int, _frame: object) -> None:
        rows, cols = terminal_size()
        if rows and cols:
            try:
                resize(rows, cols)
            except Exception:  # a failed resize must never kill the session
                pass

    previous = signal.signal(sigwinch, handler)
    try:
        handler(sigwinch, None)
        yield
    finally:
        signal.signal(sigwinch, previous)


@contextmanager
def proxy_signals(kill: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """--sig-proxy: forward the signals we receive to the container (docker does this
    when there is no TTY; with a TTY ctrl-c travels as a byte instead)."""
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    sigs = [getattr(signal, n) for n in names if hasattr(signal, n)]
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        try:
            kill(signal.Signals(signum).name)
        except Exception:  # the container may be gone already; nothing to forward to
            pass

    previous = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Session:
    """Copy stdin → socket on a thread and socket → stdout/stderr on the caller's thread."""

    def __init__(
        self,
        conn: Hijacked,
        *,
        stdin: IO[bytes] | None,
        stdout: IO[bytes],
        stderr: IO[bytes],
        detach_keys: bytes = b"",
    ) -> None:
        self.conn = conn
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.detach_keys = detach_keys
        self.detached = False

    def run(self) -> bool:
        """Pump until the engine closes the stream; True if the user detached."""
        if self.stdin is not None:
            threading.Thread(target=self._send_stdin, daemon=True, name="cove-stdin").start()
        try:
            for stream, data in self.conn.output():
                target = self.stderr if stream == 2 else self.stdout
                target.write(data)
                target.flush()
        finally:
            self.conn.close()
        return self.detached

    def _send_stdin(self) -> None:
        assert self.stdin is not None
        fd = _fileno(self.stdin)
        matched = 0
        while True:
            try:
                data = os.read(fd, 32768) if fd is not None else self.stdin.read1(32768)  # type: ignore[attr-defined]
            except OSError:
                data = b""
            if not data:
                self.conn.close_write()  # EOF: the engine closes the process's stdin
                return
            if self.detach_keys:
                matched, hit = _scan(data, self.detach_keys, matched)
                if hit:
                    self.detached = True
                    try:  # shutdown (not close) wakes the reader; the container keeps running
                        self.conn.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
            try:
                self.conn.send(data)
            except OSError:
                return


def _scan(data: bytes, keys: bytes, matched: int) -> tuple[int, bool]:
    for b in data:
        if b == keys[matched]:
            matched += 1
            if matched == len(keys):
                return 0, True
        else:
            matched = 1 if b == keys[0] else 0
    return matched, False


def _fileno(stream: IO[bytes]) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def binary(stream: IO[str]) -> IO[bytes]:
    return cast(IO[bytes], getattr(stream, "buffer", stream))
