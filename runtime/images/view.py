"""Mount a container's overlay privately, for reading or writing its files while it is stopped.

The mount is made in a fresh mount namespace owned by the *calling thread*
only (``unshare(CLONE_NEWNS)`` affects one thread), with ``/`` made private
so nothing propagates to the host. Leaving the context ``setns``-es the thread
back; the private namespace then has no members and the kernel drops it with
its mounts, so even a crash in between cannot leak a mount on the host. The
path is only meaningful in the calling thread while the context is open.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runtime.api.errors import CoveError
from runtime.images.snapshots import mount_cwd
from runtime.spec import Mount

_CLONE_NEWNS = 0x00020000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise CoveError(f"{what}: {os.strerror(err)}")


@contextlib.contextmanager
def mounted_view(mount: Mount) -> Iterator[Path]:
    """Mount *mount* (an overlay) at a temporary directory visible to this thread only."""
    target = Path(tempfile.mkdtemp(prefix="cove-view-"))
    home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(_CLONE_NEWNS), "unshare mount namespace")
        try:
            _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None),
                   "make mounts private")
            cwd = mount_cwd(mount)
            if cwd is not None:
                os.chdir(cwd)  # relative lower dirs; unshare(CLONE_NEWNS) gave us our own cwd
            _check(_libc.mount(mount.source.encode(), str(target).encode(),
                               mount.type.encode(), 0, ",".join(mount.options).encode()),
                   f"mount {mount.type}")
            yield target
        finally:
            _libc.umount2(str(target).encode(), _MNT_DETACH)
            _check(_libc.setns(home, _CLONE_NEWNS), "return to the engine's mount namespace")
    finally:
        os.close(home)
        with contextlib.suppress(OSError):
            os.rmdir(target)  # never recursive: it could still be the mounted tree
