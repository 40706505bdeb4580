"""The container's first process: namespaces, root filesystem, hostname, then exec.

Forked by the monitor after it unshared the PID namespace, so this process is
PID 1 of the container. It never returns: it execs the user's command, or
reports why not on the sync pipe and exits.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
from dataclasses import dataclass
from typing import NoReturn

from runtime.linux import rootfs
from runtime.linux.cgroups import CgroupManager
from runtime.linux.process import ExecError, Security, exec_process, report_failure, run_init
from runtime.linux.procutil import close_fds_except, reset_signals
from runtime.linux.syscalls import (
    NAMESPACE_FILES,
    NAMESPACE_FLAGS,
    SYSCALLS,
    Syscalls,
    set_process_name,
)
from runtime.spec import ContainerSpec, Namespace, ProcessSpec

# Generic ioctl numbers (same on x86_64 and aarch64).
_TIOCGPTN = 0x80045430
_TIOCSPTLCK = 0x40045431


@dataclass(frozen=True, slots=True)
class ChildConfig:
    spec: ContainerSpec
    cgroup: CgroupManager
    cgroup_v2: bool
    stdio: tuple[int, ...]  # become 0, 1, 2; with a TTY: the console socket
    error_fd: int  # sync pipe, close-on-exec: EOF = exec succeeded
    userns_sync: tuple[int, int] | None  # (read "go", write "unshared") for id maps
    security: Security
    # A user namespace with the container's maps, for its idmapped mounts (the monitor's).
    idmap_userns_fd: int | None = None


def container_main(cfg: ChildConfig, sc: Syscalls = SYSCALLS) -> NoReturn:
    code = 1
    try:
        _setup(cfg, sc)
    except BaseException as e:  # everything must end in os._exit: this is a fork
        report_failure(cfg.error_fd, e)
        code = 127 if isinstance(e, ExecError) and e.kind == "not_found" else 126
    os._exit(code)


def _setup_stdio(stdio: tuple[int, ...], tty: bool, keep: set[int]) -> None:
    os.setsid()
    if not tty:
        for target, fd in enumerate(stdio):
            os.dup2(fd, target, inheritable=True)
        close_fds_except(keep)
        return
    close_fds_except(keep | set(stdio))


def open_console(sock_fd: int) -> str:
    """Allocate a pty in this mount namespace's devpts, make it our controlling terminal
    and stdio, and send the master to the monitor. Returns the slave's path."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, _TIOCGPTN, bytes(4)))[0]
    path = f"/dev/pts/{number}"
    slave = os.open(path, os.O_RDWR | os.O_NOCTTY)
    sock = socket.socket(fileno=sock_fd)
    socket.send_fds(sock, [b"c"], [master])
    sock.close()
    os.close(master)
    for target in range(3):
        os.dup2(slave, target, inheritable=True)
    if slave > 2:
        os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    return path


def _join_and_unshare(cfg: ChildConfig, sc: Syscalls) -> set[str]:
    """Join namespaces given by path, then create the rest; returns the created types."""
    spec = cfg.spec
    joins = [ns for ns in spec.namespaces if ns.path and ns.type != "pid"]
    # The user namespace is joined first: it decides what the other joins may do.
    for ns in sorted(joins, key=lambda n: n.type != "user"):
        _setns(sc, ns)
    new = {ns.type for ns in spec.namespaces if not ns.path and ns.type != "pid"}
    flags = 0
    for t in new - {"user"}:
        if t not in NAMESPACE_FLAGS:
            raise ExecError("invalid", f"unknown namespace type {t!r}")
        flags |= NAMESPACE_FLAGS[t]
    if flags:
        sc.unshare(flags)
    return new


def _setns(sc: Syscalls, ns: Namespace) -> None:
    if ns.type not in NAMESPACE_FLAGS:
        raise ExecError("invalid", f"unknown namespace type {ns.type!r}")
    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(fd, NAMESPACE_FLAGS[ns.type])
    finally:
        os.close(fd)


def _enter_new_userns(cfg: ChildConfig, sc: Syscalls) -> None:
    """Last step before exec: the other namespaces stay owned by the host's user namespace
    (the monitor made the PID namespace, and /proc must be mounted by its owner), so
    container root cannot remount or reconfigure them."""
    assert cfg.userns_sync is not None
    sc.unshare(NAMESPACE_FLAGS["user"])
    go, done = cfg.userns_sync
    os.write(done, b"u")
    if os.read(go, 1) != b"g":
        raise ExecError("internal", "monitor did not write the user namespace id maps")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _idmap(cfg: ChildConfig) -> rootfs.Idmap | None:
    if cfg.idmap_userns_fd is None:
        return None
    return rootfs.Idmap(cfg.idmap_userns_fd, cfg.spec.uid_mappings, cfg.spec.gid_mappings)


def _setup(cfg: ChildConfig, sc: Syscalls) -> None:
    spec = cfg.spec
    reset_signals()
    tty = spec.process.terminal
    idmap_fd = () if cfg.idmap_userns_fd is None else (cfg.idmap_userns_fd,)
    _setup_stdio(cfg.stdio, tty, {cfg.error_fd, *(cfg.userns_sync or ()), *idmap_fd})
    # Join the cgroup before a cgroup namespace is made, so it becomes its root.
    cfg.cgroup.join(0)
    new = _join_and_unshare(cfg, sc)
    if "mount" not in new:
        raise ExecError("invalid", "the container needs its own mount namespace")
    rootfs.prepare_rootfs(
        sc, spec,
        own_netns="network" in new, cgroup_v2=cfg.cgroup_v2, own_cgroupns="cgroup" in new,
        idmap=_idmap(cfg),
    )
    if cfg.idmap_userns_fd is not None:
        os.close(cfg.idmap_userns_fd)  # the mounts hold the namespace now
    rootfs.pivot(sc, spec.rootfs)
    if "uts" in new:
        sc.sethostname(spec.hostname)
        if spec.domainname:
            sc.setdomainname(spec.domainname)
    rootfs.finish_rootfs(sc, spec)
    if tty:
        rootfs.bind_console(sc, open_console(cfg.stdio[0]))
    if "user" in new:
        _enter_new_userns(cfg, sc)
    if spec.init:
        pid = os.fork()
        if pid:
            os.close(cfg.error_fd)  # EOF must come from the user process's exec
            set_process_name("cove-init")  # docker shows docker-init here
            os._exit(run_init(pid))
    exec_process(sc, spec.process, cfg.security)


# setns order: the container's user namespace owns none of the others (see
# _enter_new_userns), so it is entered last, after everything needing host root.
_EXEC_NS_ORDER = ("ipc", "uts", "network", "cgroup", "mount", "user")


def exec_main(container_pid: int, cgroup: CgroupManager, proc: ProcessSpec, security: Security,
              stdio: tuple[int, ...], error_fd: int,
              sc: Syscalls = SYSCALLS) -> NoReturn:
    """An exec's process, forked by the monitor (already in the container's PID namespace)."""
    code = 1
    try:
        reset_signals()
        _setup_stdio(stdio, proc.terminal, {error_fd})
        cgroup.join(0)
        _enter_namespaces_of(container_pid, sc)
        if proc.terminal:
            open_console(stdio[0])
        exec_process(sc, proc, security)
    except BaseException as e:  # everything must end in os._exit: this is a fork
        report_failure(error_fd, e)
        code = 127 if isinstance(e, ExecError) and e.kind == "not_found" else 126
    os._exit(code)


def _enter_namespaces_of(pid: int, sc: Syscalls) -> None:
    fds: list[tuple[int, str]] = []
    # Open them all first: after the mount namespace changes, /proc is the container's.
    for t in _EXEC_NS_ORDER:
        name = NAMESPACE_FILES[t]
        theirs = os.stat(f"/proc/{pid}/ns/{name}")
        ours = os.stat(f"/proc/self/ns/{name}")
        if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
            fds.append((os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), t))
    for fd, t in fds:
        sc.setns(fd, NAMESPACE_FLAGS[t])
        os.close(fd)
