"""The per-container monitor (conmon / containerd-shim): forked by ``LinuxRuntime.start``.

It owns the container for its whole life: has it created (by the launch helper,
which also tells the engine the result), then runs one single-threaded epoll loop
that writes the json log, serves monitor.sock (attach, exec, resize, wait, kill,
status), reaps children and, when PID 1 exits, records exit.json, removes the cgroup
and exits. It keeps running when the engine dies; a restarted engine finds it
through monitor.sock.

One monitor runs per container, so what it costs is paid per container. It is forked
from the zygote and shares the zygote's memory until it writes to it, and in Python
every object touched is written (its refcount). So the monitor does as little as it
can itself: it reads only its own short part of the request (MonitorView), has the
container created by a helper that exits afterwards and lets each exec's child
decode what it needs (runtime.linux.launch); it uses plain strings and os calls.

Everything it uses is imported before the fork: no imports, no logging here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, NoReturn

from runtime.fsutil import write_atomic
from runtime.linux import launch, procutil
from runtime.linux.cgroups import CgroupManager
from runtime.linux.jsonlog import JsonLog
from runtime.linux.monitor_config import (
    EXECS_DIR,
    EXIT_NAME,
    SOCKET_NAME,
    AttachFlags,
    MonitorView,
    decode_view,
)
from runtime.linux.session import Session, Stdio, close_child_ends, make_stdio, receive_console
from runtime.linux.streams import READ, Client, Loop
from runtime.linux.syscalls import PR_SET_CHILD_SUBREAPER, SYSCALLS

CONTAINER_DRAIN_SECONDS = 2.0
EXEC_DRAIN_SECONDS = 1.0
# Signals the monitor ignores: it outlives the engine and the terminal that started it.
IGNORED_SIGNALS = (signal.SIGHUP, signal.SIGPIPE, signal.SIGINT, signal.SIGTERM,
                   signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)

# Files here live in the exec root (/run/cove, tmpfs: gone at reboot), so their renames need
# no directory fsync: write_atomic(..., sync_dir=False) keeps them whole, which is enough.


def _json_line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def prepare_signals() -> None:
    """The signal state a monitor needs, set once in the process monitors are forked
    from (they inherit it): the ignored signals, a SIGCHLD handler (so that the wakeup
    fd hears of it) and an empty mask. Done in each monitor, the signal module's enum
    conversions would cost each one memory.
    """
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def run_monitor(payload: bytes, fds: list[int]) -> NoReturn:
    """The monitor process's whole life; called right after fork, never returns.

    *payload* and *fds* are the request (runtime.linux.monitor_config.encode_config);
    the signal state is the one :func:`prepare_signals` sets. The launch helper is
    forked first and creates the container (it answers the engine itself only when that
    fails). We answer the engine once we serve and have logged what the container
    printed so far, so a client's ``start`` then ``logs`` sees its output, as before the
    helper existed.
    """
    code = 0
    result_fd: int | None = fds[0]  # None once the engine has its answer
    pid = 0
    try:
        # The wakeup fd inherited is the forker's: its number may be reused here any time.
        signal.set_wakeup_fd(-1)
        # Before the helper exists: its child, the container, must be re-parented to us.
        SYSCALLS.prctl(PR_SET_CHILD_SUBREAPER, 1)
        pid, stdio, listener = _launch(payload, fds)
        view = decode_view(payload, fds)  # the helper decoded it already: it is valid
        wakeup_r = _detach_from_engine(
            [fds[0], *fds[1:], listener, *(fd for fd, _, _ in stdio.parent_fds)])
        # Built after the fd sweep above, which would close its epoll fd.
        monitor = Monitor(view, payload, fds, wakeup_r)
        monitor.start(pid, stdio, listener)
        procutil.write_all(fds[0], b'{"pid": %d}\n' % pid)
        os.close(fds[0])
        result_fd = None
        monitor.serve()
    except BaseException as e:  # a fork must never unwind into the engine's stack
        if result_fd is not None:
            if pid:
                _kill_quietly(pid)  # the engine will hear "failed": leave nothing running
            try:
                procutil.write_all(result_fd, _json_line(
                    {"kind": "internal", "message": f"container monitor: {e}"}))
            except OSError:
                pass
        code = 1
    os._exit(code)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _launch(payload: bytes, fds: list[int]) -> tuple[int, Stdio, int]:
    """Have the launch helper create the container: its pid, our stdio ends, the listening
    socket. Exits if it failed (the helper told the engine and cleaned up)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    if os.fork() == 0:
        ours.close()
        launch.launch_main(payload, fds, theirs)
    theirs.close()
    try:
        msg, received, _, _ = socket.recv_fds(ours, 64, launch.MAX_STARTED_FDS)
    finally:
        ours.close()
    if not msg:
        os._exit(1)
    # The helper is not waited for here (its exit takes a while): reap() collects it, and
    # once it is gone its child, the container, is ours (even if already a zombie: that is
    # reported to us with SIGCHLD like any child's exit).
    return launch.decode_started(msg, received)


def _detach_from_engine(keep: list[int]) -> int:
    """New session, engine fds closed, SIGCHLD as a byte on the returned pipe."""
    os.setsid()
    os.chdir("/")
    # Let go of the engine's stdio: a pipe held here would never see EOF.
    null = os.open("/dev/null", os.O_RDWR)
    for target in range(3):
        os.dup2(null, target)
    if null > 2:
        os.close(null)
    procutil.close_fds_except(set(keep))
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(w)
    return r


class Monitor:
    def __init__(self, view: MonitorView, payload: bytes, fds: list[int],
                 wakeup_r: int) -> None:
        self.view = view
        self.payload = payload  # the whole request, for the helpers to decode
        self.pending = tuple(zip(fds[1:], view.pending, strict=True))
        self.loop = Loop()
        self.main: Session | None = None
        self.execs: dict[str, Session] = {}
        self.exec_by_pid: dict[int, str] = {}
        self.waiters: list[Client] = []
        self.listener: socket.socket | None = None
        self.wakeup_r = wakeup_r
        self.in_pid_namespace = True  # execs' children land in the container's PID namespace

    def cgroup(self) -> CgroupManager:
        # Made when needed (at exit), not kept: no part of the steady state.
        return self.view.cgroup()

    # -- startup ----------------------------------------------------------------
    def start(self, pid: int, stdio: Stdio, listener: int) -> None:
        """Serve the container's stdio, attaches and monitor.sock; log what it already wrote."""
        view = self.view
        self._join_pid_namespace(pid)
        log = None
        if view.log_path:
            log = JsonLog(view.log_path, view.log_max_size, view.log_max_file)
        self.main = Session(self.loop, stdio, tty=view.terminal, log=log)
        self.main.pid = pid
        self.listener = socket.socket(fileno=listener)
        self.listener.setblocking(False)
        self.loop.set(listener, _Acceptor(self), READ)
        self.loop.set(self.wakeup_r, _Reaper(self), READ)
        for fd, flags in self.pending:
            self._attach(Client(self.loop, self, socket.socket(fileno=fd), header_done=True),
                         flags)
        # A SIGCHLD that came before the wakeup fd was set left no byte: look once now
        # (after the attaches: reaping PID 1 drains its output to them).
        self.reap()
        self.loop.run_once(0)  # output already in the pipes goes to the log now

    def serve(self) -> None:
        """Until the container is gone and recorded."""
        self._serve()

    def _join_pid_namespace(self, pid: int) -> None:
        """Execs' children must be in the container's PID namespace, as its PID 1 is."""
        ns = self.view.pid_namespace
        if ns is None:
            return
        try:
            launch.join_pid_namespace(ns or f"/proc/{pid}/ns/pid")
        except OSError:
            self.in_pid_namespace = False  # PID 1 is already gone: no more execs

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
                    self.cgroup().kill_all()
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
        d = Path(self.view.dir, EXECS_DIR)
        d.mkdir(exist_ok=True)
        write_atomic(d / f"{exec_id}.json", json.dumps({"pid": pid, "exit_code": code}).encode(),
                     sync_dir=False)

    def _finish_container(self) -> NoReturn:
        assert self.main is not None and self.main.status is not None
        self.main.close_pipes()
        cgroup = self.cgroup()
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
        write_atomic(Path(self.view.dir, EXIT_NAME), json.dumps(exit_info).encode(), sync_dir=False)
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
            os.unlink(os.path.join(self.view.dir, SOCKET_NAME))
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
        if not self.in_pid_namespace:
            client.reply({"kind": "conflict", "message": "container is not running"})
            client.finish()
            return
        exec_id = str(header["exec_id"])
        process: dict[str, Any] = header["process"]
        stdin = bool(header.get("stdin"))
        tty = bool(process.get("terminal"))
        stdio = make_stdio(tty=tty, stdin=stdin)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            launch.exec_child(self.payload, self.main.pid, self.view, process,
                              stdio.child_fds, err_w)
        os.close(err_w)
        close_child_ends(stdio)
        size = process.get("console_size")
        stdio = receive_console(stdio, (int(size[0]), int(size[1])) if size else None)
        failure = procutil.read_all(err_r)
        os.close(err_r)
        session = Session(self.loop, stdio, tty=tty, log=None)
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
              and (session is not self.main or self.view.stdin_once)):
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
