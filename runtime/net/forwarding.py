"""net.ipv4.ip_forward, shared by every Cove engine on the host.

An engine turns forwarding on for its NAT'ed bridges and puts the host back as
it found it when it cleans up. With several engines (the system one, test and
benchmark engines) a per-engine memory is wrong: the first engine to stop would
switch forwarding off under the others. So the original value and the holders
live in one host-wide directory on /run, under a file lock; a holder is an
engine's exec root with its pid, and holders whose process died (a crash) no
longer count. The last live holder to leave restores the original value.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from runtime.net.plumbing import SYSCTL, read_sysctl, write_sysctl

IP_FORWARD = f"{SYSCTL}/ip_forward"
STATE_DIR = Path("/run/cove-ip-forward")


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[Path]:
    (state / "holders").mkdir(parents=True, exist_ok=True)
    fd = os.open(state / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield state
    finally:
        os.close(fd)


def _holder(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def _alive(pid_text: str) -> bool:
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def hold(owner: str, *, state: Path = STATE_DIR, sysctl: str = IP_FORWARD) -> None:
    """*owner* (an engine's exec root) needs forwarding: on, remembering the original."""
    with _locked(state):
        original = state / "original"
        if read_sysctl(sysctl) != "1":
            if not original.exists():
                original.write_text(read_sysctl(sysctl) or "0")
            write_sysctl(sysctl, "1")
        (state / "holders" / _holder(owner)).write_text(str(os.getpid()))


def release(owner: str, *, state: Path = STATE_DIR, sysctl: str = IP_FORWARD) -> None:
    """*owner* is done; the last live holder puts the original value back."""
    if not state.is_dir():
        return
    with _locked(state):
        (state / "holders" / _holder(owner)).unlink(missing_ok=True)
        for h in (state / "holders").iterdir():
            try:
                pid = h.read_text()
            except OSError:
                continue
            if _alive(pid):
                return
            h.unlink(missing_ok=True)
        original = state / "original"
        if original.exists():
            write_sysctl(sysctl, original.read_text().strip() or "0")
            original.unlink()
