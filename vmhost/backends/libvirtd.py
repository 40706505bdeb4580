"""Start libvirtd and virtlogd when no service manager runs them (containers, CI, no systemd).

Only for ``qemu:///system``: ``qemu:///session`` autostarts its own per-user daemon. The
daemons are started with ``--daemon`` and outlive us, as systemd-started ones would.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from runtime.api.errors import Unavailable
from runtime.api.transport import unix_stream_socket

log = logging.getLogger(__name__)

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")


def _answers(path: Path) -> bool:
    try:
        with unix_stream_socket() as s:
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


def _kvm_device_like_udev(path: Path = Path("/dev/kvm")) -> None:
    """Give /dev/kvm the group and mode udev gives it (root:kvm 0660) where no udev ran.

    libvirt checks that its qemu user can open /dev/kvm before trusting its cached
    QEMU capabilities; with the bare root-only node it re-probes QEMU on every domain
    define (50-80 s here). Only the no-service-manager path gets here.
    """
    if sys.platform == "win32":
        return
    import grp
    import stat

    try:
        st = path.stat()
        kvm_gid = grp.getgrnam("kvm").gr_gid
    except (OSError, KeyError):
        return
    if st.st_gid == 0 and stat.S_IMODE(st.st_mode) == 0o600:
        log.info("setting %s to root:kvm 0660, as udev would", path)
        os.chown(path, -1, kvm_gid)
        os.chmod(path, 0o660)


def ensure_system_daemons(timeout: float = 60.0) -> None:
    """Make sure virtlogd and libvirtd answer on their sockets; idempotent."""
    if not _answers(SYSTEM_SOCKET):
        _kvm_device_like_udev()
    if not _answers(VIRTLOGD_SOCKET):
        _spawn("virtlogd")
    if not _answers(SYSTEM_SOCKET):
        _spawn("libvirtd")
    deadline = time.monotonic() + timeout
    while not (_answers(SYSTEM_SOCKET) and _answers(VIRTLOGD_SOCKET)):
        if time.monotonic() > deadline:
            raise Unavailable(f"libvirt: libvirtd did not answer on {SYSTEM_SOCKET} in {timeout}s")
        time.sleep(0.2)
