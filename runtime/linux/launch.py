"""The monitor's short-lived helpers: one creates the container, one per exec starts it.

The monitor lives as long as its container and shares its memory with the zygote
until it writes it (see runtime.linux.zygote). Creating a container touches much
Python (the whole spec, cgroups, namespaces, the fork): done in the monitor, every
page touched would stay a private copy for the container's lifetime. So the monitor
forks a helper that does that work and exits: its copies go with it.

The launch helper creates the cgroup, the stdio, the container's first process
(PID 1 of a new PID namespace when it has one), the id maps, monitor.sock's
listening socket and state.json, then sends the monitor the container's pid and its
descriptors and exits; the monitor answers the engine once it serves. The container is
re-parented to the monitor, a child subreaper. A failure is written to the engine's
result pipe here.

An exec's child decodes the container's config and its process spec itself, for the
same reason, before it becomes the exec'd process (container.exec_main).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from typing import Any, NoReturn

from runtime.fsutil import write_atomic
from runtime.linux import procutil
from runtime.linux.container import ChildConfig, container_main, exec_main
from runtime.linux.monitor_config import (
    SOCKET_NAME,
    STATE_NAME,
    MonitorConfig,
    MonitorView,
    decode_config,
    decode_spec,
)
from runtime.linux.process import report_failure, security_for
from runtime.linux.session import Stdio, close_child_ends, make_stdio, receive_console
from runtime.linux.syscalls import NAMESPACE_FLAGS, SYSCALLS
from runtime.linux.userns_fd import user_namespace_fd, write_id_maps
from runtime.spec import ContainerSpec, process_from_json

# One letter per descriptor the launch helper sends: which stream, and whether it is input.
_STREAM_CODES = {("stdout", False): "o", ("stderr", False): "e", (None, True): "i",
                 ("stdout", True): "O"}  # a pty master: output and input
_CODE_STREAMS = {code: key for key, code in _STREAM_CODES.items()}
MAX_STARTED_FDS = 8  # the listener and at most three stdio ends


def _json_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


# -- the launch helper -----------------------------------------------------------------
def launch_main(payload: bytes, fds: list[int], report: socket.socket) -> NoReturn:
    """The launch helper's whole life (forked by the monitor); never returns.

    It reports to the monitor over *report*; only a failure is written to the engine here.
    """
    cfg: MonitorConfig | None = None
    code = 1
    pid = 0
    try:
        cfg = decode_config(payload, fds)
        pid, stdio, listener = _Launcher(cfg).launch()
        msg, sent = _encode_started(pid, stdio, listener)
        # The monitor answers the engine once it serves (runtime.linux.monitor).
        socket.send_fds(report, [msg], sent)
        code = 0
    except BaseException as e:  # a fork must never unwind into the monitor's stack
        if pid:
            os.kill(pid, signal.SIGKILL)  # the monitor is gone: no one would own it
        try:
            procutil.write_all(fds[0], _json_line(
                {"kind": "internal", "message": f"container monitor: {e}"}))
        except OSError:
            pass
        if cfg is not None:
            _remove_cgroup(cfg)
    os._exit(code)


def _remove_cgroup(cfg: MonitorConfig) -> None:
    try:
        cfg.cgroup.remove()
    except Exception:
        pass


def _encode_started(pid: int, stdio: Stdio, listener: int) -> tuple[bytes, list[int]]:
    layout = "".join(_STREAM_CODES[(stream, is_input)] for _, stream, is_input in stdio.parent_fds)
    return f"{pid}:{layout}".encode(), [listener, *(fd for fd, _, _ in stdio.parent_fds)]


def decode_started(msg: bytes, fds: list[int]) -> tuple[int, Stdio, int]:
    """The launch helper's report: the container's pid, our stdio ends, the listener."""
    pid, _, layout = msg.decode().partition(":")
    parent = tuple((fd, *_CODE_STREAMS[code]) for fd, code in zip(fds[1:], layout, strict=True))
    return int(pid), Stdio(parent, ()), fds[0]


class _Launcher:
    def __init__(self, cfg: MonitorConfig) -> None:
        self.cfg = cfg
        self.spec = cfg.spec

    def _fail(self, kind: str, message: str) -> NoReturn:
        procutil.write_all(self.cfg.result_fd, _json_line({"kind": kind, "message": message}))
        _remove_cgroup(self.cfg)
        os._exit(1)

    def launch(self) -> tuple[int, Stdio, int]:
        spec, cgroup = self.spec, self.cfg.cgroup
        try:
            cgroup.create()
            cgroup.apply(spec.resources, restrict_devices=not spec.privileged)
        except Exception as e:
            self._fail("invalid", f"failed to apply cgroup configuration: {e}")
        stdio = make_stdio(tty=spec.process.terminal, stdin=spec.stdin)
        pid, stdio = self._fork_container(stdio)
        listener = self._listen()
        if spec.log.path:
            # It exists when the engine hears of the start; the monitor appends to it.
            os.close(os.open(spec.log.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640))
        self._write_state(pid)
        return pid, stdio, listener

    def _fork_container(self, stdio: Stdio) -> tuple[int, Stdio]:
        spec = self.spec
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sync = _userns_pipes() if spec.uid_mappings else None
        # Before the PID namespace: the helper must not become the container's PID 1.
        idmap_fd = self._idmap_userns() if spec.uid_mappings and _wants_idmap(spec) else None
        _enter_pid_namespace(spec)
        child = ChildConfig(
            spec=spec, cgroup=self.cfg.cgroup, cgroup_v2=self.cfg.cgroup_v2,
            stdio=stdio.child_fds, error_fd=err_w,
            userns_sync=(sync[0], sync[3]) if sync else None, security=self.cfg.security,
            idmap_userns_fd=idmap_fd,
        )
        pid = os.fork()
        if pid == 0:
            container_main(child)
        os.close(err_w)
        if idmap_fd is not None:
            os.close(idmap_fd)
        close_child_ends(stdio)
        # The child sends its console, then (with a user namespace) waits for its id maps.
        stdio = receive_console(stdio, spec.process.console_size)
        if sync is not None:
            os.close(sync[0])
            os.close(sync[3])
            self._write_id_maps(pid, go=sync[1], unshared=sync[2])
        failure = procutil.read_all(err_r)
        os.close(err_r)
        if failure:
            os.waitpid(pid, 0)
            err = json.loads(failure)
            self._fail(err["kind"], err["message"])
        return pid, stdio

    def _write_id_maps(self, pid: int, *, go: int, unshared: int) -> None:
        if os.read(unshared, 1) == b"u":
            write_id_maps(pid, self.spec.uid_mappings, self.spec.gid_mappings)
            os.write(go, b"g")
        os.close(go)
        os.close(unshared)

    def _idmap_userns(self) -> int:
        """An fd of a new user namespace with the container's maps, for idmapped mounts."""
        try:
            return user_namespace_fd(self.spec.uid_mappings, self.spec.gid_mappings)
        except OSError as e:
            self._fail("internal", f"idmapped mounts: {e}")

    def _listen(self) -> int:
        path = self.cfg.dir / SOCKET_NAME
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        os.chdir(self.cfg.dir)  # bind by relative name: sun_path is only 108 bytes
        try:
            os.unlink(SOCKET_NAME)
        except FileNotFoundError:
            pass
        sock.bind(SOCKET_NAME)
        os.chmod(path, 0o600)
        os.chdir("/")
        sock.listen(64)
        return sock.detach()

    def _write_state(self, pid: int) -> None:
        state = {
            "pid": pid,
            "monitor_pid": os.getppid(),
            "cgroup_path": self.cfg.cgroup.path,
            "terminal": self.spec.process.terminal,
            "started_at_ns": time.time_ns(),
        }
        # The exec root is a tmpfs: no directory fsync needed (see runtime.linux.monitor).
        write_atomic(self.cfg.dir / STATE_NAME, json.dumps(state).encode(), sync_dir=False)


def _userns_pipes() -> tuple[int, int, int, int]:
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    return go_r, go_w, done_r, done_w


def _enter_pid_namespace(spec: ContainerSpec) -> None:
    for ns in spec.namespaces:
        if ns.type != "pid":
            continue
        if ns.path:
            join_pid_namespace(ns.path)
        else:
            # Our next child becomes PID 1 of a new namespace.
            SYSCALLS.unshare(NAMESPACE_FLAGS["pid"])


def join_pid_namespace(path: str) -> None:
    """Make *path* the PID namespace of our children to come."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        SYSCALLS.setns(fd, NAMESPACE_FLAGS["pid"])
    finally:
        os.close(fd)


def _wants_idmap(spec: ContainerSpec) -> bool:
    return any(o in ("idmap", "ridmap") for m in (*spec.rootfs_mounts, *spec.mounts)
               for o in m.options)


# -- an exec's child --------------------------------------------------------------------
def exec_child(payload: bytes, container_pid: int, view: MonitorView, process: dict[str, Any],
               stdio: tuple[int, ...], error_fd: int) -> NoReturn:
    """An exec's process (forked by the monitor, in the container's PID namespace)."""
    try:
        spec, security = decode_spec(payload)
        proc = process_from_json(process)
        own = security_for(proc, spec.privileged, security, spec.process.seccomp_profile)
        cgroup = view.cgroup()
    except BaseException as e:  # a fork must never unwind into the monitor's stack
        report_failure(error_fd, e)
        os._exit(126)
    exec_main(container_pid, cgroup, proc, own, stdio, error_fd)
