"""The per-container monitor (conmon / containerd-shim): forked by ``LinuxRuntime.start``.

It owns the container for its whole life: creates the cgroup, forks PID 1 of
the container, reports the exec result to the engine, then runs one
single-threaded selectors loop that writes the json log, serves monitor.sock
(attach, exec, resize, wait, kill, status), reaps children and, when PID 1
exits, records exit.json, removes the cgroup and exits. It keeps running when
the engine dies; a restarted engine finds it through monitor.sock.

Everything it uses is imported before the fork: no imports, no logging here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from runtime.fsutil import write_atomic
from runtime.linux import procutil
from runtime.linux.cgroups import CgroupManager
from runtime.linux.container import ChildConfig, container_main, exec_main
from runtime.linux.jsonlog import JsonLog
from runtime.linux.process import Security, security_for
from runtime.linux.session import Session, Stdio, close_child_ends, make_stdio, receive_console
from runtime.linux.streams import READ, Client, Loop
from runtime.linux.syscalls import NAMESPACE_FLAGS, PR_SET_CHILD_SUBREAPER, SYSCALLS
from runtime.spec import ContainerSpec, process_from_json

CONTAINER_DRAIN_SECONDS = 2.0
EXEC_DRAIN_SECONDS = 1.0
SOCKET_NAME = "monitor.sock"
STATE_NAME = "state.json"
EXIT_NAME = "exit.json"
EXECS_DIR = "execs"


@dataclass(frozen=True, slots=True)
class AttachFlags:
    stdin: bool
    stdout: bool
    stderr: bool


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    spec: ContainerSpec
    dir: Path  # state_dir/<id>
    cgroup: CgroupManager
    cgroup_v2: bool
    security: Security
    result_fd: int  # the engine reads one JSON line: {"pid": n} or {"kind", "message"}
    pending: tuple[tuple[socket.socket, AttachFlags], ...]  # attaches made before start


# Files here live in the exec root (/run/cove, tmpfs: gone at reboot), so their renames need
# no directory fsync: write_atomic(..., sync_dir=False) keeps them whole, which is enough.


def _json_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def run_monitor(cfg: MonitorConfig) -> NoReturn:
    """The monitor process's whole life; called right after fork, never returns."""
    code = 0
    try:
        wakeup_r = _detach_from_engine(cfg)
        # Built after the fd sweep above, which would close its epoll fd.
        Monitor(cfg, wakeup_r).run()
    except BaseException as e:  # a fork must never unwind into the engine's stack
        try:
            procutil.write_all(cfg.result_fd, _json_line(
                {"kind": "internal", "message": f"container monitor: {e}"}))
        except OSError:
            pass
        code = 1
    os._exit(code)


def _detach_from_engine(cfg: MonitorConfig) -> int:
    """New session, engine fds closed, SIGCHLD as a byte on the returned pipe."""
    os.setsid()
    # Let go of the engine's stdio: a pipe held here would never see EOF.
    null = os.open("/dev/null", os.O_RDWR)
    for target in range(3):
        os.dup2(null, target)
    if null > 2:
        os.close(null)
    for sig in (signal.SIGHUP, signal.SIGPIPE, signal.SIGINT, signal.SIGTERM,
                signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    keep = {cfg.result_fd, *(s.fileno() for s, _ in cfg.pending)}
    procutil.close_fds_except(keep)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # Orphans of container processes (host PID namespace) come to us to be reaped.
    SYSCALLS.prctl(PR_SET_CHILD_SUBREAPER, 1)
    return r


class Monitor:
    def __init__(self, cfg: MonitorConfig, wakeup_r: int) -> None:
        self.cfg = cfg
        self.spec = cfg.spec
        self.loop = Loop()
        self.main: Session | None = None
        self.execs: dict[str, Session] = {}
        self.exec_by_pid: dict[int, str] = {}
        self.waiters: list[Client] = []
        self.listener: socket.socket | None = None
        self.wakeup_r = wakeup_r

    # -- startup ----------------------------------------------------------------
    def _fail(self, kind: str, message: str) -> NoReturn:
        procutil.write_all(self.cfg.result_fd, _json_line({"kind": kind, "message": message}))
        try:
            self.cfg.cgroup.remove()
        except Exception:
            pass
        os._exit(1)

    def run(self) -> None:
        spec, cgroup = self.spec, self.cfg.cgroup
        try:
            cgroup.create()
            cgroup.apply(spec.resources, restrict_devices=not spec.privileged)
        except Exception as e:
            self._fail("invalid", f"failed to apply cgroup configuration: {e}")
        stdio = make_stdio(tty=spec.process.terminal, stdin=spec.stdin)
        pid, stdio = self._fork_container(stdio)
        log = None
        if spec.log.path:
            log = JsonLog(spec.log.path, spec.log.max_size, spec.log.max_file)
        self.main = Session(self.loop, stdio, tty=spec.process.terminal, log=log)
        self.main.pid = pid
        self._listen()
        self._write_state(pid)
        procutil.write_all(self.cfg.result_fd, _json_line({"pid": pid}))
        os.close(self.cfg.result_fd)
        for sock, flags in self.cfg.pending:
            self._attach(Client(self.loop, self, sock, header_done=True), flags)
        self._serve()

    def _fork_container(self, stdio: Stdio) -> tuple[int, Stdio]:
        spec = self.spec
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        sync = self._userns_pipes() if spec.uid_mappings else None
        # Before the PID namespace: the helper must not become the container's PID 1.
        idmap_fd = self._idmap_userns() if spec.uid_mappings and _wants_idmap(spec) else None
        self._enter_pid_namespace()
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

    def _enter_pid_namespace(self) -> None:
        for ns in self.spec.namespaces:
            if ns.type != "pid":
                continue
            if ns.path:
                fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    SYSCALLS.setns(fd, NAMESPACE_FLAGS["pid"])
                finally:
                    os.close(fd)
            else:
                # Our next child becomes PID 1 of a new namespace; so do later execs' children.
                SYSCALLS.unshare(NAMESPACE_FLAGS["pid"])

    @staticmethod
    def _userns_pipes() -> tuple[int, int, int, int]:
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        done_r, done_w = os.pipe2(os.O_CLOEXEC)
        return go_r, go_w, done_r, done_w

    def _write_id_maps(self, pid: int, *, go: int, unshared: int) -> None:
        if os.read(unshared, 1) == b"u":
            self._write_maps(pid)
            os.write(go, b"g")
        os.close(go)
        os.close(unshared)

    def _write_maps(self, pid: int) -> None:
        for name, maps in (("uid_map", self.spec.uid_mappings),
                           ("gid_map", self.spec.gid_mappings)):
            text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(text)

    def _idmap_userns(self) -> int:
        """An fd of a new user namespace with the container's maps, for idmapped mounts.

        The container process enters its own user namespace only after its mounts
        (they need host root, see container._enter_new_userns), so it cannot idmap
        through that one: a short-lived helper child unshares a user namespace, we write
        the same maps, keep an fd to it (which keeps it alive) and let the helper exit.
        """
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            os.close(hold_w)  # else our own copy would keep the EOF from coming
            _userns_helper(ready_w, hold_r)
        os.close(ready_w)
        os.close(hold_r)
        try:
            if os.read(ready_r, 1) != b"u":
                self._fail("internal", "idmapped mounts: could not create a user namespace")
            self._write_maps(pid)
            return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self._fail("internal", f"idmapped mounts: {e}")
        finally:
            os.close(ready_r)
            os.close(hold_w)  # EOF: the helper exits
            os.waitpid(pid, 0)

    def _listen(self) -> None:
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
        sock.setblocking(False)
        self.listener = sock
        self.loop.set(sock.fileno(), _Acceptor(self), READ)
        self.loop.set(self.wakeup_r, _Reaper(self), READ)

    def _write_state(self, pid: int) -> None:
        state = {
            "pid": pid,
            "monitor_pid": os.getpid(),
            "cgroup_path": self.cfg.cgroup.path,
            "terminal": self.spec.process.terminal,
            "started_at_ns": time.time_ns(),
        }
        write_atomic(self.cfg.dir / STATE_NAME, json.dumps(state).encode(), sync_dir=False)

    # -- loop -------------------------------------------------------------------
    def _serve(self) -> None:
        assert self.main is not None
        while True:
            deadlines = [s.deadline for s in self._sessions() if s.deadline is not None]
            timeout = max(min(deadlines) - time.monotonic(), 0.0) if deadlines else None
            self.loop.run_once(timeout)
            for exec_id, session in list(self.execs.items()):
                if session.done():
                    self._finish_exec(exec_id, session)
            if self.main.done():
                self._finish_container()

    def _sessions(self) -> list[Session]:
        return [s for s in (self.main, *self.execs.values()) if s is not None]

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.main is not None and pid == self.main.pid and self.main.status is None:
                self.main.exited(status, CONTAINER_DRAIN_SECONDS)
                # Nothing else may hold the output pipes open past PID 1 (host PID ns).
                try:
                    self.cfg.cgroup.kill_all()
                except Exception:
                    pass
            elif pid in self.exec_by_pid:
                self.execs[self.exec_by_pid.pop(pid)].exited(status, EXEC_DRAIN_SECONDS)

    def _finish_exec(self, exec_id: str, session: Session) -> None:
        session.close_pipes()
        code = procutil.exit_code(session.status or 0)
        self._record_exec(exec_id, session.pid, code)
        for client in session.clients:
            client.finish()
        del self.execs[exec_id]

    def _record_exec(self, exec_id: str, pid: int, code: int) -> None:
        d = self.cfg.dir / EXECS_DIR
        d.mkdir(exist_ok=True)
        write_atomic(d / f"{exec_id}.json", json.dumps({"pid": pid, "exit_code": code}).encode(),
                     sync_dir=False)

    def _finish_container(self) -> NoReturn:
        assert self.main is not None and self.main.status is not None
        self.main.close_pipes()
        cgroup = self.cfg.cgroup
        try:
            oom = cgroup.oom_kills() > 0
        except Exception:
            oom = False
        error = ""
        try:
            cgroup.remove()
        except Exception as e:
            error = f"removing cgroup: {e}"
        exit_info = {"code": procutil.exit_code(self.main.status), "oom_killed": oom,
                     "finished_at_ns": time.time_ns(), "error": error}
        write_atomic(self.cfg.dir / EXIT_NAME, json.dumps(exit_info).encode(), sync_dir=False)
        clients = [*self.waiters, *self.main.clients,
                   *(c for s in self.execs.values() for c in s.clients)]
        for exec_id, session in list(self.execs.items()):
            # Killed with the PID namespace; if not reaped yet, report SIGKILL.
            session.status = session.status if session.status is not None else 9
            self._finish_exec(exec_id, session)
        for waiter in self.waiters:
            waiter.reply(exit_info)
        deadline = time.monotonic() + 2.0
        for client in clients:
            client.flush_blocking(deadline - time.monotonic())
        if self.listener is not None:
            self.listener.close()
        try:
            os.unlink(self.cfg.dir / SOCKET_NAME)
        except OSError:
            pass
        os._exit(0)

    # -- requests (ClientOwner) ---------------------------------------------------
    def accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            Client(self.loop, self, sock)

    def on_request(self, client: Client, header: dict[str, Any]) -> None:
        assert self.main is not None
        op = header.get("op")
        running = self.main.status is None
        try:
            if op == "wait":
                self.waiters.append(client)
                client.tag = "wait"
            elif op == "status":
                client.reply({"running": running, "pid": self.main.pid})
                client.finish()
            elif op == "exec_status":
                self._exec_status(client, str(header.get("exec_id")))
            elif not running:
                client.reply({"kind": "conflict", "message": "container is not running"})
                client.finish()
            elif op == "attach":
                flags = AttachFlags(bool(header.get("stdin")), bool(header.get("stdout")),
                                    bool(header.get("stderr")))
                client.reply({"ok": True})
                self._attach(client, flags)
            elif op == "kill":
                os.kill(self.main.pid, int(header["signal"]))
                client.reply({"ok": True})
                client.finish()
            elif op in ("resize", "exec_resize"):
                self._resize(client, header)
            elif op == "exec":
                self._start_exec(client, header)
            else:
                client.reply({"kind": "invalid", "message": f"unknown operation {op!r}"})
                client.finish()
        except Exception as e:
            client.reply({"kind": "internal", "message": str(e)})
            client.finish()

    def _attach(self, client: Client, flags: AttachFlags) -> None:
        assert self.main is not None
        client.tag = self.main
        client.streams = {n for n, on in (("stdout", flags.stdout), ("stderr", flags.stderr)) if on}
        client.stdin = flags.stdin
        self.main.clients.append(client)

    def _resize(self, client: Client, header: dict[str, Any]) -> None:
        target = self.main
        if header["op"] == "exec_resize":
            target = self.execs.get(str(header.get("exec_id")))
        if target is None:
            client.reply({"kind": "not_found", "message": "no such exec"})
        else:
            target.resize(int(header["rows"]), int(header["cols"]))
            client.reply({"ok": True})
        client.finish()

    def _exec_status(self, client: Client, exec_id: str) -> None:
        session = self.execs.get(exec_id)
        if session is not None:
            client.reply({"running": session.status is None, "pid": session.pid,
                          "exit_code": None})
        else:
            client.reply({"kind": "not_found", "message": f"No such exec instance: {exec_id}"})
        client.finish()

    def _start_exec(self, client: Client, header: dict[str, Any]) -> None:
        assert self.main is not None
        exec_id = str(header["exec_id"])
        proc = process_from_json(header["process"])
        stdin = bool(header.get("stdin"))
        security = security_for(proc, self.spec.privileged, self.cfg.security,
                                self.spec.process.seccomp_profile)
        stdio = make_stdio(tty=proc.terminal, stdin=stdin)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            exec_main(self.main.pid, self.cfg.cgroup, proc, security, stdio.child_fds, err_w)
        os.close(err_w)
        close_child_ends(stdio)
        stdio = receive_console(stdio, proc.console_size)
        failure = procutil.read_all(err_r)
        os.close(err_r)
        session = Session(self.loop, stdio, tty=proc.terminal, log=None)
        if failure:
            os.waitpid(pid, 0)
            session.close_pipes()
            err = json.loads(failure)
            self._record_exec(exec_id, pid, 127 if err["kind"] == "not_found" else 126)
            client.reply(err)
            client.finish()
            return
        session.pid = pid
        self.execs[exec_id] = session
        self.exec_by_pid[pid] = exec_id
        client.tag = session
        client.streams = {"stdout", "stderr"}
        client.stdin = stdin
        session.clients.append(client)
        client.reply({"ok": True, "pid": pid})

    def on_client_input(self, client: Client, data: bytes) -> None:
        if client.stdin and isinstance(client.tag, Session):
            client.tag.write_stdin(data)

    def on_client_eof(self, client: Client) -> None:
        session = client.tag
        if client.tag == "wait":
            client.close()
        elif (isinstance(session, Session) and client.stdin
              and (session is not self.main or self.spec.stdin_once)):
            # Exec: the caller's half-close is the process's EOF; attach: only with StdinOnce.
            session.close_stdin()

    def on_client_closed(self, client: Client) -> None:
        if client in self.waiters:
            self.waiters.remove(client)
        session = client.tag
        if isinstance(session, Session) and client in session.clients:
            session.clients.remove(client)
            session.update_pipes()

    def on_client_drained(self, client: Client) -> None:
        if isinstance(client.tag, Session):
            client.tag.update_pipes()


def _wants_idmap(spec: ContainerSpec) -> bool:
    return any(o in ("idmap", "ridmap") for m in (*spec.rootfs_mounts, *spec.mounts)
               for o in m.options)


def _userns_helper(ready_w: int, hold_r: int) -> NoReturn:
    """The idmap helper child: unshare a user namespace, say so, wait for EOF, exit."""
    code = 0
    try:
        SYSCALLS.unshare(NAMESPACE_FLAGS["user"])
        os.write(ready_w, b"u")
        os.read(hold_r, 1)
    except BaseException:  # a fork must never unwind into the monitor's stack
        code = 1
    os._exit(code)


class _Acceptor:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def on_event(self, mask: int) -> None:
        self.monitor.accept()


class _Reaper:
    """SIGCHLD arrives as a byte on the wakeup pipe."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def on_event(self, mask: int) -> None:
        try:
            while os.read(self.monitor.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        self.monitor.reap()
