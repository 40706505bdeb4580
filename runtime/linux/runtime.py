"""LinuxRuntime: the engine's handle on containers (runc + containerd-shim in one).

``start`` forks a monitor per container (runtime.linux.monitor) and waits for
its one-line verdict. Everything else talks to the monitor over
``<state_dir>/<id>/monitor.sock`` or reads the files it leaves
(``state.json``, ``exit.json``, ``execs/<exec_id>.json``), so a freshly
constructed LinuxRuntime adopts containers a previous engine started.

Monitors are forked by the engine's zygote (runtime.linux.zygote), which reaps
them while the engine lives (no zombies even where PID 1 does not reap
orphans). If the engine dies, the zygote exits and the monitors are
re-parented and keep running.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.api.errors import (
    CannotInvoke,
    CommandNotFound,
    Conflict,
    CoveError,
    Internal,
    InvalidArgument,
    NotFound,
)
from runtime.linux.cgroups import (
    CgroupManager,
    CgroupStats,
    CgroupV2,
    cgroup_layout,
    open_cgroup,
    open_cgroup_in,
    remove_parent_if_unused,
)
from runtime.linux.monitor import prepare_signals, run_monitor
from runtime.linux.monitor_config import (
    EXECS_DIR,
    EXIT_NAME,
    SOCKET_NAME,
    STATE_NAME,
    AttachFlags,
    MonitorConfig,
    encode_config,
)
from runtime.linux.process import security_for
from runtime.linux.zygote_client import ZygoteClient, ZygoteError
from runtime.spec import ContainerSpec, ProcessSpec, Resources, to_json

START_TIMEOUT = 60.0
log = logging.getLogger(__name__)
# One per engine process, shared by every LinuxRuntime in it; started on first use.
_ZYGOTE = ZygoteClient()
_OCI_PREFIX = (
    "failed to create task for container: failed to create shim task: OCI runtime create "
    "failed: runc create failed: unable to start container process: error during container init: "
)
_ERRORS: dict[str, type[CoveError]] = {
    "not_found": NotFound,
    "conflict": Conflict,
    "invalid": InvalidArgument,
    "internal": Internal,
}


@dataclass(frozen=True, slots=True)
class ExitStatus:
    code: int
    oom_killed: bool
    finished_at_ns: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    running: bool
    paused: bool
    pid: int
    exit: ExitStatus | None


@dataclass(frozen=True, slots=True)
class ContainerStats:
    cpu_total_ns: int
    cpu_percpu_ns: list[int]
    cpu_user_ns: int
    cpu_system_ns: int
    system_cpu_ns: int  # all CPUs' time since boot, from /proc/stat (Docker's cpu % base)
    online_cpus: int
    memory_usage: int
    memory_limit: int  # the host's memory when unlimited, as Docker reports
    memory_stats: dict[str, int]
    pids_current: int
    pids_limit: int  # 0: unlimited
    blkio_read_bytes: int
    blkio_write_bytes: int


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:9]
    return sum(int(x) for x in fields) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _read_line(sock: socket.socket) -> bytes:
    """One header line, byte by byte, so no stream byte after it is consumed."""
    out = bytearray()
    while True:
        b = sock.recv(1)
        if not b:
            return bytes(out)
        if b == b"\n":
            return bytes(out)
        out += b


def _error(reply: dict[str, Any]) -> CoveError:
    return _ERRORS.get(str(reply.get("kind")), Internal)(str(reply.get("message")))


class LinuxRuntime:
    def __init__(self, state_dir: Path, cgroup_parent: str = "cove") -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.cgroup_parent = cgroup_parent.strip("/")
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[socket.socket, AttachFlags]]] = {}
        self._cgroup_layout: dict[str, str] | None = None

    # -- paths and monitor protocol -------------------------------------------------
    def _dir(self, container_id: str) -> Path:
        if not container_id or "/" in container_id or container_id.startswith("."):
            raise InvalidArgument(f"invalid container id {container_id!r}")
        return self.state_dir / container_id

    def _existing(self, container_id: str) -> Path:
        d = self._dir(container_id)
        if not d.is_dir():
            raise NotFound(f"No such container: {container_id}")
        return d

    def _connect(self, d: Path, timeout: float | None = 10.0) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        dir_fd = os.open(d, os.O_PATH | os.O_CLOEXEC) if d.exists() else -1
        try:
            # Via /proc/self/fd: sun_path is 108 bytes and state dirs can be long.
            sock.connect(f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}")
        except OSError:
            sock.close()
            return None
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
        return sock

    def _open(self, container_id: str, header: dict[str, Any],
              timeout: float | None = 10.0) -> tuple[socket.socket, dict[str, Any]] | None:
        """Send *header*; the socket and the reply line, or None if no monitor answers."""
        sock = self._connect(self._existing(container_id), timeout)
        if sock is None:
            return None
        try:
            sock.sendall(json.dumps(header).encode() + b"\n")
            line = _read_line(sock)
        except OSError:
            sock.close()
            return None
        if not line:
            sock.close()
            return None
        return sock, json.loads(line)

    def _ask(self, container_id: str, header: dict[str, Any]) -> dict[str, Any] | None:
        opened = self._open(container_id, header)
        if opened is None:
            return None
        opened[0].close()
        return opened[1]

    def _ask_running(self, container_id: str, header: dict[str, Any]) -> dict[str, Any]:
        reply = self._ask(container_id, header)
        if reply is None:
            raise Conflict(f"Container {container_id} is not running")
        if "kind" in reply:
            raise _error(reply)
        return reply

    def _state(self, container_id: str) -> dict[str, Any]:
        try:
            with open(self._existing(container_id) / STATE_NAME) as f:
                state: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            raise Conflict(f"Container {container_id} is not running") from None
        return state

    def _cgroup(self, container_id: str) -> CgroupManager:
        return self._open_cgroup(str(self._state(container_id)["cgroup_path"]))

    def _open_cgroup(self, path: str) -> CgroupManager:
        """open_cgroup, with the hierarchies probed (mountinfo read) once per runtime:
        reading mountinfo takes the kernel's mount lock, slow while other mounts happen."""
        if self._cgroup_layout is None:
            self._cgroup_layout = cgroup_layout(open_cgroup(path))
        return open_cgroup_in(self._cgroup_layout, path)

    # -- start ------------------------------------------------------------------------
    def start(self, spec: ContainerSpec) -> int:
        d = self._dir(spec.id)
        if not spec.process.args:
            raise InvalidArgument("no command specified")
        if d.exists():
            if self._ask(spec.id, {"op": "status"}) is not None:
                raise Conflict(f"container {spec.id} is already running")
            shutil.rmtree(d)
        d.mkdir(parents=True)
        try:
            cgroup = self._open_cgroup(spec.cgroup_path or f"{self.cgroup_parent}/{spec.id}")
            security = security_for(spec.process, spec.privileged)
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        with self._lock:
            pending = tuple(self._pending.pop(spec.id, []))
        r, w = os.pipe2(os.O_CLOEXEC)
        cfg = MonitorConfig(
            spec=spec, dir=d, cgroup=cgroup, cgroup_v2=isinstance(cgroup, CgroupV2),
            security=security, result_fd=w, pending=pending,
        )
        try:
            _ZYGOTE.spawn(cfg)
            ours = None
        except ZygoteError as e:
            log.warning("%s; forking the monitor from the engine", e)
            ours = self._fork_monitor(cfg, r)
        os.close(w)
        # The monitor has its copies of the early attaches' far ends now.
        for sock, _ in pending:
            sock.close()
        return self._await_start(spec, d, ours, r)

    @staticmethod
    @staticmethod
    def _fork_monitor(cfg: MonitorConfig, r: int) -> int:
        """The fallback when no zygote runs: fork the monitor from the engine itself."""
        payload, fds = encode_config(cfg)
        pid = os.fork()
        if pid == 0:
            try:
                gc.freeze()
                gc.disable()
                os.close(r)
                prepare_signals()
                run_monitor(payload, fds)
            finally:
                os._exit(1)
        return pid

    def _await_start(self, spec: ContainerSpec, d: Path, pid: int | None, r: int) -> int:
        """The monitor's verdict; *pid* is the monitor if it is our child (else the zygote's)."""
        try:
            line = self._read_result(r)
            if pid is None and b'"pid"' not in line:
                # A failed monitor cleans up (cgroup) before it exits: wait for that.
                self._read_until_eof(r)
        finally:
            os.close(r)
        reply: dict[str, Any] = json.loads(line) if line else {
            "kind": "internal", "message": "container monitor exited during start"}
        if "pid" in reply:
            if pid is not None:
                threading.Thread(target=_reap, args=(pid,), name=f"reap-{spec.id[:12]}",
                                 daemon=True).start()
            return int(reply["pid"])
        if pid is not None:
            os.waitpid(pid, 0)
        shutil.rmtree(d, ignore_errors=True)
        kind, message = reply.get("kind"), str(reply.get("message"))
        if kind == "not_found":
            raise CommandNotFound(_OCI_PREFIX + message + ": unknown")
        if kind == "cannot_invoke":
            raise CannotInvoke(_OCI_PREFIX + message + ": unknown")
        if kind == "invalid":
            raise InvalidArgument(_OCI_PREFIX + message + ": unknown")
        raise Internal(_OCI_PREFIX + message + ": unknown")

    @staticmethod
    def _read_until_eof(r: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0] or not os.read(r, 4096):
                return

    @staticmethod
    def _read_result(r: int) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + START_TIMEOUT
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise Internal("timed out waiting for the container to start")
            chunk = os.read(r, 4096)
            if not chunk:
                break
            buf += chunk
        return bytes(buf).split(b"\n", 1)[0]

    # -- lifecycle --------------------------------------------------------------------
    def status(self, container_id: str) -> RuntimeStatus:
        d = self._existing(container_id)
        reply = self._ask(container_id, {"op": "status"})
        if reply is not None and reply.get("running"):
            paused = self._cgroup(container_id).frozen()
            return RuntimeStatus(True, paused, int(reply["pid"]), None)
        exit_status = self._exit_status(d)
        if exit_status is None and reply is not None:
            # The monitor is finishing up: exit.json is about to appear.
            exit_status = self.wait(container_id, timeout=10)
        return RuntimeStatus(False, False, 0, exit_status)

    def _exit_status(self, d: Path) -> ExitStatus | None:
        try:
            with open(d / EXIT_NAME) as f:
                data = json.load(f)
        except FileNotFoundError:
            if (d / STATE_NAME).exists():
                return ExitStatus(255, False, time.time_ns(), "container monitor died")
            return None
        return ExitStatus(int(data["code"]), bool(data["oom_killed"]),
                          int(data["finished_at_ns"]), str(data.get("error", "")))

    def wait(self, container_id: str, timeout: float | None = None) -> ExitStatus | None:
        d = self._existing(container_id)
        sock = self._connect(d, timeout=10.0)
        if sock is not None:
            try:
                sock.sendall(b'{"op": "wait"}\n')
                sock.settimeout(timeout)
                line = _read_line(sock)
            except TimeoutError:
                return None
            except OSError:
                line = b""
            finally:
                sock.close()
            if line:
                data = json.loads(line)
                if "code" in data:
                    return ExitStatus(int(data["code"]), bool(data["oom_killed"]),
                                      int(data["finished_at_ns"]), str(data.get("error", "")))
        return self._exit_status(d)

    def kill(self, container_id: str, signal: int) -> None:
        self._ask_running(container_id, {"op": "kill", "signal": int(signal)})

    def pause(self, container_id: str) -> None:
        self._require_running(container_id)
        self._cgroup(container_id).freeze()

    def resume(self, container_id: str) -> None:
        self._require_running(container_id)
        self._cgroup(container_id).thaw()

    def _require_running(self, container_id: str) -> None:
        reply = self._ask(container_id, {"op": "status"})
        if reply is None or not reply.get("running"):
            raise Conflict(f"Container {container_id} is not running")

    def delete(self, container_id: str) -> None:
        d = self._dir(container_id)
        with self._lock:
            for sock, _ in self._pending.pop(container_id, []):
                sock.close()
        if not d.exists():
            return
        reply = self._ask(container_id, {"op": "status"})
        if reply is not None:
            cgroup = self._cgroup(container_id)
            cgroup.thaw()
            try:
                self.kill(container_id, signal.SIGKILL)
            except Conflict:
                pass
            self.wait(container_id, timeout=30)
        try:
            state = self._state(container_id)
            self._open_cgroup(str(state["cgroup_path"])).remove()
        except (Conflict, NotFound):
            pass
        shutil.rmtree(d, ignore_errors=True)

    def close(self) -> None:
        """The engine is stopping: drop the parent cgroup if no container needs it."""
        remove_parent_if_unused(self.cgroup_parent)

    def list_ids(self) -> list[str]:
        return sorted(p.name for p in self.state_dir.iterdir() if p.is_dir())

    # -- resources --------------------------------------------------------------------
    def stats(self, container_id: str) -> ContainerStats:
        self._require_running(container_id)
        s: CgroupStats = self._cgroup(container_id).stats()
        host = _host_memory()
        return ContainerStats(
            cpu_total_ns=s.cpu_total_ns,
            cpu_percpu_ns=list(s.cpu_percpu_ns),
            cpu_user_ns=s.cpu_user_ns,
            cpu_system_ns=s.cpu_system_ns,
            system_cpu_ns=_system_cpu_ns(),
            online_cpus=len(os.sched_getaffinity(0)),
            memory_usage=s.memory_usage,
            memory_limit=s.memory_limit if 0 < s.memory_limit < host else host,
            memory_stats=dict(s.memory_stats),
            pids_current=s.pids_current,
            pids_limit=s.pids_limit,
            blkio_read_bytes=s.blkio_read_bytes,
            blkio_write_bytes=s.blkio_write_bytes,
        )

    def top(self, container_id: str) -> list[int]:
        self._require_running(container_id)
        return self._cgroup(container_id).pids()

    def update(self, container_id: str, resources: Resources) -> None:
        self._require_running(container_id)
        self._cgroup(container_id).apply(resources)

    # -- streams ----------------------------------------------------------------------
    def attach(self, container_id: str, *, stdin: bool, stdout: bool,
               stderr: bool) -> socket.socket:
        """Attach to the running container, or (not running) to its next start."""
        flags = AttachFlags(stdin, stdout, stderr)
        header = {"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}
        d = self._dir(container_id)
        opened = self._open(container_id, header) if d.is_dir() else None
        if opened is not None:
            sock, reply = opened
            if "kind" not in reply:
                sock.settimeout(None)
                return sock
            sock.close()
        # Not running: Docker attaches before start, so hold an end for the next start.
        engine_end, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with self._lock:
            self._pending.setdefault(container_id, []).append((ours, flags))
        return engine_end

    def resize(self, container_id: str, rows: int, cols: int) -> None:
        self._ask_running(container_id, {"op": "resize", "rows": rows, "cols": cols})

    def exec_start(self, container_id: str, exec_id: str, process: ProcessSpec, *,
                   stdin: bool) -> socket.socket:
        header = {"op": "exec", "exec_id": exec_id, "process": to_json(process), "stdin": stdin}
        opened = self._open(container_id, header, timeout=60.0)
        if opened is None:
            raise Conflict(f"Container {container_id} is not running")
        sock, reply = opened
        if "kind" in reply:
            sock.close()
            kind, message = reply["kind"], str(reply.get("message"))
            prefix = "OCI runtime exec failed: exec failed: unable to start container process: "
            if kind == "not_found":
                raise CommandNotFound(prefix + message + ": unknown")
            if kind == "cannot_invoke":
                raise CannotInvoke(prefix + message + ": unknown")
            raise _error(reply)
        sock.settimeout(None)
        return sock

    def exec_status(self, container_id: str, exec_id: str) -> tuple[bool, int, int | None]:
        d = self._existing(container_id)
        try:
            with open(d / EXECS_DIR / f"{exec_id}.json") as f:
                data = json.load(f)
            return False, int(data["pid"]), int(data["exit_code"])
        except FileNotFoundError:
            pass
        reply = self._ask(container_id, {"op": "exec_status", "exec_id": exec_id})
        if reply is None or "kind" in reply:
            raise NotFound(f"No such exec instance: {exec_id}")
        return bool(reply["running"]), int(reply["pid"]), None

    def exec_resize(self, container_id: str, exec_id: str, rows: int, cols: int) -> None:
        self._ask_running(
            container_id, {"op": "exec_resize", "exec_id": exec_id, "rows": rows, "cols": cols})


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
