"""Every raw Linux syscall the runtime makes that the stdlib lacks, behind one seam.

CPython 3.11 has no ``os.unshare``/``os.setns`` and none of mount, pivot_root,
capset or prctl, so they go through ctypes here and nowhere else. Each call
raises ``OSError(errno, "<call> <args>: <strerror>")`` so a failure in the
container's setup reads like the syscall that failed.

libc is loaded at import time: the monitor and container processes are forked
from a multi-threaded engine and must not dlopen anything afterwards.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Protocol

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# OCI namespace type -> clone flag, and the /proc/<pid>/ns/ file of each.
NAMESPACE_FLAGS: dict[str, int] = {
    "user": CLONE_NEWUSER,
    "mount": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "network": CLONE_NEWNET,
    "cgroup": CLONE_NEWCGROUP,
    "pid": CLONE_NEWPID,
}
NAMESPACE_FILES: dict[str, str] = {
    "user": "user",
    "mount": "mnt",
    "uts": "uts",
    "ipc": "ipc",
    "network": "net",
    "cgroup": "cgroup",
    "pid": "pid",
}

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# pivot_root has no glibc wrapper; its number differs per architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "arm64": 41}
# The new mount API (no glibc wrappers in bookworm). Numbers from 424 on are shared by
# every architecture, x86_64 and aarch64 included.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class _MountAttr(ctypes.Structure):
    """struct mount_attr, MOUNT_ATTR_SIZE_VER0 (32 bytes)."""

    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def set_process_name(name: str) -> None:
    """PR_SET_NAME: what ps shows as the process's command (15 bytes at most)."""
    _libc.prctl(ctypes.c_int(15), ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


class Syscalls(Protocol):
    """The kernel calls the runtime makes; each raises OSError with errno on failure."""

    def unshare(self, flags: int) -> None: ...
    def setns(self, fd: int, nstype: int) -> None: ...
    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None: ...
    def umount2(self, target: str, flags: int) -> None: ...
    def pivot_root(self, new_root: str, put_old: str) -> None: ...
    def sethostname(self, name: str) -> None: ...
    def setdomainname(self, name: str) -> None: ...
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> int: ...
    def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...
    def capget(self) -> tuple[int, int, int]: ...
    def load_seccomp(self, bpf: bytes) -> None: ...
    def open_tree(self, path: str, flags: int) -> int: ...
    def move_mount_fd(self, fd: int, target: str) -> None: ...
    def idmap_mount_fd(self, fd: int, userns_fd: int, recursive: bool) -> None: ...


class LinuxSyscalls:
    """The real thing: glibc through ctypes."""

    def unshare(self, flags: int) -> None:
        _check(_libc.unshare(ctypes.c_int(flags)), f"unshare {flags:#x}")

    def setns(self, fd: int, nstype: int) -> None:
        _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns {nstype:#x}")

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        result = _libc.mount(
            _b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)
        )
        _check(result, f"mount {source or fstype} on {target} (flags {flags:#x}, {data or ''})")

    def umount2(self, target: str, flags: int) -> None:
        _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        nr = _SYS_PIVOT_ROOT[platform.machine()]
        result = _libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old))
        _check(result, f"pivot_root {new_root}")

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), f"sethostname {name}")

    def setdomainname(self, name: str) -> None:
        raw = name.encode()
        _check(_libc.setdomainname(raw, ctypes.c_size_t(len(raw))), f"setdomainname {name}")

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0) -> int:
        result = _libc.prctl(
            ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
            ctypes.c_ulong(0), ctypes.c_ulong(0),
        )
        return _check(result, f"prctl {option} {arg2}")

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        for i in range(2):
            shift = 32 * i
            data[i].effective = (effective >> shift) & 0xFFFFFFFF
            data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
        _check(_libc.capset(ctypes.byref(header), data), "capset")

    def capget(self) -> tuple[int, int, int]:
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        _check(_libc.capget(ctypes.byref(header), data), "capget")
        eff = data[0].effective | (data[1].effective << 32)
        prm = data[0].permitted | (data[1].permitted << 32)
        inh = data[0].inheritable | (data[1].inheritable << 32)
        return eff, prm, inh

    def load_seccomp(self, bpf: bytes) -> None:
        """Install a classic-BPF filter (8 bytes per instruction) on this thread."""
        buf = ctypes.create_string_buffer(bpf, len(bpf))
        prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
        result = _libc.prctl(
            ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
            ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0),
        )
        _check(result, "seccomp filter")

    def open_tree(self, path: str, flags: int) -> int:
        """A detached mount fd of *path* (a clone with OPEN_TREE_CLONE)."""
        result = _libc.syscall(ctypes.c_long(_SYS_OPEN_TREE), ctypes.c_int(AT_FDCWD),
                               _b(path), ctypes.c_uint(flags))
        return _check(result, f"open_tree {path} (flags {flags:#x})")

    def move_mount_fd(self, fd: int, target: str) -> None:
        """Attach the detached mount *fd* on *target*."""
        result = _libc.syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_int(fd), b"",
                               ctypes.c_int(AT_FDCWD), _b(target),
                               ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
        _check(result, f"move_mount to {target}")

    def idmap_mount_fd(self, fd: int, userns_fd: int, recursive: bool) -> None:
        """mount_setattr(MOUNT_ATTR_IDMAP): ids on the detached mount *fd* are mapped through
        the user namespace *userns_fd* (only allowed before the mount is first attached)."""
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
        result = _libc.syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(fd), b"",
                               ctypes.c_uint(flags), ctypes.byref(attr),
                               ctypes.c_size_t(ctypes.sizeof(attr)))
        _check(result, "mount_setattr MOUNT_ATTR_IDMAP")


SYSCALLS: Syscalls = LinuxSyscalls()
