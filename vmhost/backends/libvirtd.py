"""Start libvirtd and virtlogd when no service manager runs them (containers, CI, no systemd).

Only for ``qemu:///system``: ``qemu:///session`` autostarts its own per-user daemon. The
daemons are started with ``--daemon`` and outlive us, as systemd-started ones would.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from runtime.api.errors import Unavailable

log = logging.getLogger(__name__)

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(path))
        return True
    except OSError:
        return False


def _spawn(daemon: str) -> None:
    exe = shutil.which(daemon) or f"/usr/sbin/{daemon}"
    if not os.path.exists(exe):
        raise Unavailable(f"libvirt: {daemon} not installed (apt: libvirt-daemon-system)")
    log.info("starting %s", exe)
    subprocess.run(
        [exe, "--daemon"],
        check=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ensure_system_daemons(timeout: float = 60.0) -> None:
    """Make sure virtlogd and libvirtd answer on their sockets; idempotent."""
    if not _answers(VIRTLOGD_SOCKET):
        _spawn("virtlogd")
    if not _answers(SYSTEM_SOCKET):
        _spawn("libvirtd")
    deadline = time.monotonic() + timeout
    while not (_answers(SYSTEM_SOCKET) and _answers(VIRTLOGD_SOCKET)):
        if time.monotonic() > deadline:
            raise Unavailable(f"libvirt: libvirtd did not answer on {SYSTEM_SOCKET} in {timeout}s")
        time.sleep(0.2)
