"""A user namespace with given id maps, held by a file descriptor.

Idmapped mounts are made through such an fd (mount_setattr's userns_fd). Neither the
launch helper (the container enters its own user namespace only after its mounts,
which need host root) nor the engine's archive worker (a stopped container has no
namespace at all) has one to borrow, so a short-lived child unshares one, the caller
writes the maps and keeps an fd to it (which keeps it alive), and the child exits.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import NoReturn

from runtime.linux.syscalls import NAMESPACE_FLAGS, SYSCALLS
from runtime.spec import IdMapping


def user_namespace_fd(uid_maps: Sequence[IdMapping], gid_maps: Sequence[IdMapping]) -> int:
    """An O_CLOEXEC fd of a new user namespace with these maps. Raises OSError.

    It forks: call it only from a single-threaded process.
    """
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(hold_w)  # else our own copy would keep the EOF from coming
        _hold_namespace(ready_w, hold_r)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"u":
            raise OSError(errno.EPERM, "could not create a user namespace")
        write_id_maps(pid, uid_maps, gid_maps)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)  # EOF: the child exits
        os.waitpid(pid, 0)


def write_id_maps(pid: int, uid_maps: Sequence[IdMapping], gid_maps: Sequence[IdMapping]) -> None:
    """Give process *pid*'s new user namespace its uid and gid maps."""
    for name, maps in (("uid_map", uid_maps), ("gid_map", gid_maps)):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write("".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps))


def _hold_namespace(ready_w: int, hold_r: int) -> NoReturn:
    """The child: unshare a user namespace, say so, wait for EOF, exit."""
    code = 0
    try:
        SYSCALLS.unshare(NAMESPACE_FLAGS["user"])
        os.write(ready_w, b"u")
        os.read(hold_r, 1)
    except BaseException:  # a fork must never unwind into the caller's stack
        code = 1
    os._exit(code)
