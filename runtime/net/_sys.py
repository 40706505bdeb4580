"""The few raw syscalls networking needs (CPython 3.11 has no os.unshare/os.setns).

Kept local to runtime.net so it does not wait on runtime.linux.syscalls; the
functions are thin ctypes wrappers that raise OSError with errno set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
           f"mount {source} on {target}")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def is_mountpoint(path: str) -> bool:
    """True when *path* is a mount point (or a bind-mounted file) per /proc/self/mountinfo."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" ")
            if len(fields) > 4 and _unescape(fields[4]) == real:
                return True
    return False


def _unescape(raw: bytes) -> str:
    return os.fsdecode(raw).replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


@contextmanager
def in_netns(fd: int) -> Iterator[None]:
    """Run the block with this thread in the network namespace *fd*.

    Network namespaces are per thread, so other engine threads are unaffected;
    sockets created inside stay bound to that namespace after we switch back.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, CLONE_NEWNET)
        try:
            yield
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


def new_netns(path: str) -> int:
    """Create a network namespace, pin it with a bind mount at *path*; returns an fd to it."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        os.close(fd)
        try:
            unshare(CLONE_NEWNET)
            try:
                mount("/proc/thread-self/ns/net", path, None, MS_BIND)
                return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            finally:
                setns(own, CLONE_NEWNET)
        except BaseException:
            try:
                os.unlink(path)
            except OSError:
                pass
            raise
    finally:
        os.close(own)


def remove_netns(path: str) -> None:
    """Unpin and delete a namespace file; missing or unmounted files are fine."""
    try:
        umount(path, MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def make_shared_dir(path: str) -> None:
    """Make *path* a shared mount (bind onto itself first), as ``ip netns`` does.

    Namespace pins under it then propagate their unmounts into mount namespaces
    cloned later (a container's, before it pivots), so no copy keeps a netns alive.
    """
    if not is_mountpoint(path):
        mount(path, path, None, MS_BIND)
    mount(None, path, None, MS_SHARED)
