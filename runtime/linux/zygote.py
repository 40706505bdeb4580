"""The monitor zygote: a small pre-started Python process that forks container monitors.

Forking each monitor from the engine copies a large, multi-threaded address
space: the fork is slower, every page the monitor touches (Python's refcounts
touch most) becomes a private copy, and forking from threads risks inheriting
a lock another thread held. The zygote is started once per engine process
(runtime.linux.zygote_client) with only the monitor's modules imported
(``python -S -m runtime.linux.zygote``): not threading or subprocess, whose
at-fork hooks alone would dirty ~400 KiB in every monitor. It freezes its heap out
of the GC's reach and forks a monitor per request.

What a monitor costs is what it writes: every page written after the fork, by the
monitor or by the zygote (then the monitor's old copy is its own), stays private
to it for the container's whole life. So the zygote passes the request on as
bytes without decoding it, the monitor decodes only its own short part and leaves
the heavy work to short-lived helpers (runtime.linux.monitor, runtime.linux.launch),
and the zygote warms up, before freezing, the lazily built state the monitor would
otherwise build in each copy.

Protocol on a socketpair (the zygote's end's number is its argument): the engine
sends a 4-byte big-endian length with the monitor's file descriptors attached
(result pipe, then the early attaches' sockets), then that many bytes of request
(runtime.linux.monitor_config.encode_config); the zygote answers with the
monitor's pid as a signed 4-byte integer (negative: fork failed, -errno).

The zygote reaps its monitors. When the engine's end closes (the engine exited
or was killed) the zygote exits at once and its monitors are re-parented,
exactly as monitors forked by the engine itself would be: containers keep
running and a restarted engine adopts them through monitor.sock.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import NoReturn

from runtime.linux.cgroups import CgroupV2, open_cgroup
from runtime.linux.launch import join_pid_namespace
from runtime.linux.monitor import prepare_signals, run_monitor
from runtime.linux.monitor_config import MonitorConfig, decode_config, encode_config
from runtime.linux.process import Security
from runtime.linux.streams import READ, Loop
from runtime.linux.syscalls import PR_SET_CHILD_SUBREAPER, SYSCALLS
from runtime.spec import (
    ContainerSpec,
    IdMapping,
    LogConfig,
    Mount,
    Namespace,
    ProcessSpec,
    Rlimit,
)

_WARM_UP_ROUNDS = 10  # more than the calls before CPython 3.11 quickens a function
LEN = struct.Struct("!I")
PID = struct.Struct("!i")
MAX_FDS = 256  # the result pipe plus early attaches


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("monitor zygote closed its socket")
        buf += chunk
    return bytes(buf)


def _serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    prepare_signals()  # the monitors inherit it
    signal.set_wakeup_fd(wake_w)
    _warm_up()
    # Everything imported is immortal from here on, and the GC stays off (monitors too):
    # a collection writes to every object it walks, unsharing the pages the monitors
    # share with us. Nothing here makes garbage cycles.
    gc.collect()
    gc.freeze()
    gc.disable()
    sock.sendall(b"r")
    while True:
        ready = select.select([sock.fileno(), wake_r], [], [])[0]
        if wake_r in ready:
            _drain(wake_r)
            _reap()
        if sock.fileno() in ready and not _one_request(sock, (wake_r, wake_w)):
            return


def _warm_up() -> None:
    """Run the calls whose first use builds state lazily, so it is built here, once, and
    shared: ctypes resolves a libc function on its first call; json, sockets and epoll
    set up caches; Python 3.11 rewrites a function's bytecode in place during its first
    calls (quickening). The monitor's calls, and the launch helper's decoding of the
    request: it would otherwise run cold, and slower, in every helper. Nothing here has
    an effect: we are no subreaper, and our children's PID namespace is our own already.
    """
    payload, fds = encode_config(_sample_config())
    for _ in range(_WARM_UP_ROUNDS):
        decode_config(payload, fds)
        SYSCALLS.prctl(PR_SET_CHILD_SUBREAPER, 0)
        join_pid_namespace("/proc/self/ns/pid")
        json.loads(json.dumps({"op": "wait", "n": [1, 2.5, None, True, "x"]}))
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        with a, b:
            socket.send_fds(a, [b"1:oe"], [a.fileno()])
            _, received, _, _ = socket.recv_fds(b, 64, 8)
            for fd in received:
                os.close(fd)
            loop = Loop()
            loop.set(b.fileno(), _Nothing(), READ)
            loop.run_once(0)
            loop.set(b.fileno(), _Nothing(), 0)
            loop.epoll.close()


def _sample_config() -> MonitorConfig:
    """A request with one of each part, for :func:`_warm_up` (never started)."""
    mount = Mount(destination="/", type="bind", source="/", options=("rbind",))
    process = ProcessSpec(args=("true",), env=("A=b",), capabilities=("CAP_CHOWN",),
                          rlimits=(Rlimit(type="RLIMIT_NOFILE", soft=1, hard=1),))
    spec = ContainerSpec(
        id="0" * 64, hostname="warm-up", rootfs="/", rootfs_mounts=(mount,), mounts=(mount,),
        process=process, namespaces=(Namespace(type="pid"), Namespace(type="mount")),
        uid_mappings=(IdMapping(container_id=0, host_id=1, size=1),),
        gid_mappings=(IdMapping(container_id=0, host_id=1, size=1),),
        log=LogConfig(path="/dev/null"), sysctls=(("a", "b"),),
    )
    cgroup = open_cgroup("cove-warm-up")  # only the object: nothing is created
    return MonitorConfig(spec=spec, dir=Path("/"), cgroup=cgroup,
                         cgroup_v2=isinstance(cgroup, CgroupV2),
                         security=Security(0, bytes(8), False), result_fd=-1, pending=())


class _Nothing:
    def on_event(self, mask: int) -> None:
        pass


def _one_request(sock: socket.socket, own_fds: tuple[int, int]) -> bool:
    """Fork one monitor; False when the engine is gone."""
    try:
        head, fds, _, _ = socket.recv_fds(sock, LEN.size, MAX_FDS)
        if not head:
            return False
        head += recv_exact(sock, LEN.size - len(head))
        payload = recv_exact(sock, LEN.unpack(head)[0])
    except OSError:
        return False
    # Forked at once, the request undecoded: what the zygote touches after a fork
    # becomes the monitor's own copy (see the module docstring).
    try:
        pid = os.fork()
    except OSError as e:
        pid = -(e.errno or 1)
    if pid == 0:
        _monitor_child(sock, own_fds, payload, fds)
    for fd in fds:
        os.close(fd)
    sock.sendall(PID.pack(pid))
    return True


def _monitor_child(sock: socket.socket, own_fds: tuple[int, int], payload: bytes,
                   fds: list[int]) -> NoReturn:
    try:
        sock.close()
        for fd in own_fds:
            os.close(fd)
        run_monitor(payload, fds)
    finally:
        os._exit(1)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> None:
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)
    sock = socket.socket(fileno=fd)
    try:
        _serve(sock)
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
