"""Small process helpers shared by the monitor and the container process (fork-safe)."""

from __future__ import annotations

import os
import signal

_MAX_FD = 0x7FFFFFFF  # close_range's "to the end"; os.closerange stops before it
# Signals a forwarding init passes on to its child (everything catchable but SIGCHLD).
FORWARDED_SIGNALS = tuple(
    s for s in signal.Signals
    if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)
)


def close_fds_except(keep: set[int]) -> None:
    """Close every descriptor >= 3 not in *keep* (what the fork inherited from the engine).

    os.closerange is the close_range syscall: no listing of /proc/self/fd, so no
    Python objects made (the long-lived monitor calls this).
    """
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, _MAX_FD)


def reset_signals() -> None:
    """Default dispositions and an empty mask: exec keeps ignored signals ignored."""
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass
    for sig in FORWARDED_SIGNALS:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the code, or 128+signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
