"""Streaming container endpoints: attach, logs, stats, top, resize, and exec."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.api.errors import Conflict, InvalidArgument, NotFound
from runtime.engine import logs
from runtime.engine.http import Request, Response, json_response
from runtime.engine.records import Container
from runtime.engine.router import Router, api_at_least
from runtime.engine.splice import DEFAULT_DETACH_KEYS, parse_detach_keys, splice
from runtime.engine.state import Op, check
from runtime.engine.views import rfc3339
from runtime.spec import ProcessSpec

if TYPE_CHECKING:
    from runtime.engine.engine import Engine

RAW = "application/vnd.docker.raw-stream"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"


def _stream_type(req: Request, tty: bool) -> str:
    return MULTIPLEXED if not tty and api_at_least(req, "1.42") else RAW


@dataclass
class ExecRecord:
    id: str
    container_id: str
    process: ProcessSpec
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    started: bool = False
    running: bool = False
    pid: int = 0
    exit_code: int | None = None
    detach_keys: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def register(router: Router, engine: Engine) -> None:
    _register_container_streams(router, engine)
    _register_execs(router, engine)


def _register_container_streams(router: Router, engine: Engine) -> None:
    """attach, resize, logs, top and stats of a container."""
    svc = engine.containers

    @router.route("POST", "/containers/{id}/attach")
    def attach(req: Request) -> Response:
        c = svc.get(req.params["id"])
        check(Op.ATTACH, c.status, req.params["id"])
        stdin = req.bool_arg("stdin")
        stdout = req.bool_arg("stdout")
        stderr = req.bool_arg("stderr")
        tty = bool(c.config.get("Tty"))
        keys = parse_detach_keys(req.str_arg("detachKeys") or DEFAULT_DETACH_KEYS)
        live = req.bool_arg("stream")
        if not (stdin or stdout or stderr):
            raise InvalidArgument("you must choose at least one stream")
        replay = _log_replay(c, stdout, stderr, tty) if req.bool_arg("logs") else b""
        process_sock = (engine.attach(c, stdin=stdin, stdout=stdout, stderr=stderr)
                        if live else None)
        client = req.hijack(_stream_type(req, tty))
        _let_client_read_headers(client)
        if replay:
            client.sendall(replay)
        if process_sock is None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            return Response()
        if splice(client, process_sock, forward_stdin=stdin, detach_keys=keys):
            engine.events.publish("container", "detach", c.id, name=c.name, image=c.image_ref)
        return Response()

    @router.route("POST", "/containers/{id}/resize")
    def resize(req: Request) -> Response:
        c = svc.get(req.params["id"])
        rows, cols = req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        engine.runtime.resize(c.id, rows, cols)
        return Response(200, b"", content_type="text/plain")

    @router.route("GET", "/containers/{id}/logs")
    def logs_(req: Request) -> Response:
        c = svc.get(req.params["id"])
        want_out, want_err = req.bool_arg("stdout"), req.bool_arg("stderr")
        if not (want_out or want_err):
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        tail_arg = req.str_arg("tail", "all")
        tail = None if tail_arg in ("all", "") or tail_arg.startswith("-") else int(tail_arg)
        batches = logs.read_batches(
            c.log_path, tail=tail,
            since_ns=logs.parse_client_time(req.str_arg("since")) or None,
            until_ns=logs.parse_client_time(req.str_arg("until")),
            follow=req.bool_arg("follow"),
            is_running=lambda: c.running and not req.client_gone(),
        )
        tty = bool(c.config.get("Tty"))
        streams = frozenset(s for s, on in ((logs.STDOUT, want_out), (logs.STDERR, want_err))
                            if on)

        def body() -> Iterator[bytes]:
            yield b""
            yield from logs.chunks(batches, streams=streams, tty=tty,
                                   timestamps=req.bool_arg("timestamps"))

        return Response(200, body(), content_type=_stream_type(req, tty))

    @router.route("GET", "/containers/{id}/top")
    def top(req: Request) -> Response:
        c = svc.get(req.params["id"])
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        pids = engine.runtime.top(c.id)
        return json_response(_ps(pids, req.str_arg("ps_args", "-ef")))

    @router.route("GET", "/containers/{id}/stats")
    def stats(req: Request) -> Response:
        c = svc.get(req.params["id"])
        stream = req.bool_arg("stream", True) and not req.bool_arg("one-shot")

        def body() -> Iterator[bytes]:
            previous: dict[str, Any] = _empty_cpu()
            pre_read = ""
            if not stream and not req.bool_arg("one-shot"):
                previous, pre_read = _sample(engine, c)
                time.sleep(1.0)  # docker's --no-stream compares two samples a second apart
            while True:
                current, read_at = _sample(engine, c)
                yield (json.dumps(_stats_json(c, current, previous, read_at, pre_read))
                       + "\n").encode()
                if not stream or not c.running:
                    return
                previous, pre_read = current, read_at
                time.sleep(1.0)

        return Response(200, body())


def _register_execs(router: Router, engine: Engine) -> None:
    """exec instances: create in a running container, start, resize, inspect."""
    svc = engine.containers
    execs: dict[str, ExecRecord] = engine.execs

    @router.route("POST", "/containers/{id}/exec")
    def exec_create(req: Request) -> Response:
        c = svc.get(req.params["id"])
        body = req.json(default={}) or {}
        check(Op.EXEC, c.status, c.id)
        cmd = body.get("Cmd") or []
        if not cmd:
            raise InvalidArgument("No exec command specified")
        image_cfg = engine.images.get(c.image_id).config.get("config") or {}
        from runtime.engine.specconv import capabilities, daemon_env, merge_env, security

        hc = dict(c.host_config)
        if body.get("Privileged"):
            hc["Privileged"] = True
        profile, nnp = security(hc)
        base_env = [*daemon_env(c.config.get("Hostname") or c.id[:12], bool(body.get("Tty"))),
                    *(image_cfg.get("Env") or []), *(c.config.get("Env") or [])]
        console = body.get("ConsoleSize")
        process = ProcessSpec(
            args=tuple(str(a) for a in cmd),
            env=merge_env(base_env, body.get("Env") or []),
            cwd=body.get("WorkingDir") or c.config.get("WorkingDir")
            or image_cfg.get("WorkingDir") or "/",
            user=body.get("User") or c.config.get("User") or image_cfg.get("User") or "",
            additional_groups=tuple(hc.get("GroupAdd") or ()),  # moby's exec: same getUser
            terminal=bool(body.get("Tty")),
            console_size=(int(console[0]), int(console[1])) if console and console[0] else None,
            capabilities=capabilities(hc),
            no_new_privileges=nnp,
            seccomp_profile=profile,
        )
        eid = secrets.token_hex(32)
        execs[eid] = ExecRecord(
            eid, c.id, process, bool(body.get("AttachStdin")),
            bool(body.get("AttachStdout", True)), bool(body.get("AttachStderr", True)),
            # Go decodes JSON keys case-insensitively; docker-py sends "detachKeys".
            detach_keys=body.get("DetachKeys") or body.get("detachKeys") or "",
        )
        c.exec_ids.add(eid)
        engine.events.publish("container", "exec_create: " + " ".join(process.args), c.id,
                              name=c.name, image=c.image_ref, execID=eid)
        return json_response({"Id": eid}, 201)

    def get_exec(eid: str) -> ExecRecord:
        rec = execs.get(eid)
        if rec is None:
            raise NotFound(f"No such exec instance: {eid}")
        return rec

    @router.route("POST", "/exec/{id}/start")
    def exec_start(req: Request) -> Response:
        rec = get_exec(req.params["id"])
        body = req.json(default={}) or {}
        c = svc.get(rec.container_id)
        with rec.lock:
            if rec.started:
                raise Conflict(f"Error: Exec command {rec.id} has already run")
            check(Op.EXEC, c.status, c.id)
            rec.started = rec.running = True
        detach = bool(body.get("Detach"))
        # moby frames by the *start* request's Tty: a TTY exec started with Tty=false
        # still gets its (merged) output in stdout frames.
        tty = bool(body.get("Tty"))
        wrap = _stdout_frames if rec.process.terminal and not tty else None
        client = None if detach else req.hijack(_stream_type(req, tty))
        if client is not None:
            _let_client_read_headers(client)
        try:
            sock = engine.runtime.exec_start(c.id, rec.id, rec.process,
                                             stdin=rec.attach_stdin and not detach)
        except Exception:
            rec.running = False
            rec.exit_code = 126
            raise
        engine.events.publish("container", "exec_start: " + " ".join(rec.process.args),
                              c.id, name=c.name, image=c.image_ref, execID=rec.id)
        if client is None:
            threading.Thread(target=_drain_detached, args=(engine, rec, sock),
                             daemon=True).start()
            return Response(200, b"", content_type="text/plain")
        keys = parse_detach_keys(rec.detach_keys or DEFAULT_DETACH_KEYS)
        if splice(client, sock, forward_stdin=rec.attach_stdin, detach_keys=keys, wrap=wrap):
            return Response()  # detached: the process keeps running
        _finish_exec(engine, rec)
        return Response()

    @router.route("POST", "/exec/{id}/resize")
    def exec_resize(req: Request) -> Response:
        rec = get_exec(req.params["id"])
        if rec.running:
            engine.runtime.exec_resize(rec.container_id, rec.id, req.int_arg("h", 0) or 0,
                                       req.int_arg("w", 0) or 0)
        return Response(200, b"", content_type="text/plain")

    @router.route("GET", "/exec/{id}/json")
    def exec_inspect(req: Request) -> Response:
        rec = get_exec(req.params["id"])
        if rec.running:
            _refresh_exec(engine, rec)
        p = rec.process
        return json_response({
            "ID": rec.id, "Running": rec.running, "ExitCode": rec.exit_code,
            "ProcessConfig": {"tty": p.terminal, "entrypoint": p.args[0],
                              "arguments": list(p.args[1:]), "privileged": False,
                              "user": p.user},
            "OpenStdin": rec.attach_stdin, "OpenStdout": rec.attach_stdout,
            "OpenStderr": rec.attach_stderr, "CanRemove": False,
            "ContainerID": rec.container_id, "DetachKeys": rec.detach_keys, "Pid": rec.pid,
        })


def _stdout_frames(data: bytes) -> bytes:
    return logs.frame(logs.STDOUT, data)


def _let_client_read_headers(client: socket.socket, limit: float = 1.0) -> None:
    """Hold stream bytes until the client has read the 101 headers.

    docker-py (http.client) reads the headers through a buffer and then reads
    frames from the raw socket: whatever arrived with the headers is lost
    (compat-notes §a.0). On a Unix socket, TIOCOUTQ counts the bytes the peer
    has not read yet, so 0 means the headers were consumed on their own.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            pending = struct.unpack("i", fcntl.ioctl(client.fileno(), termios.TIOCOUTQ,
                                                     b"\0\0\0\0"))[0]
        except OSError:
            return
        if pending == 0:
            return
        time.sleep(0.001)


def _log_replay(c: Container, stdout: bool, stderr: bool, tty: bool) -> bytes:
    """What ``attach?logs=1`` sends first: the log so far, framed like the live stream."""
    out = bytearray()
    for e in logs.read(c.log_path, tail=None, since_ns=None, until_ns=None, follow=False,
                       is_running=lambda: False):
        if (e.stream == logs.STDOUT and stdout) or (e.stream == logs.STDERR and stderr):
            out += e.data if tty else logs.frame(e.stream, e.data)
    return bytes(out)


def _refresh_exec(engine: Engine, rec: ExecRecord) -> None:
    try:
        running, pid, code = engine.runtime.exec_status(rec.container_id, rec.id)
    except (NotFound, Conflict):
        running, pid, code = False, rec.pid, rec.exit_code
    rec.pid = pid or rec.pid
    if not running:
        rec.running = False
        rec.exit_code = code if code is not None else rec.exit_code


def _finish_exec(engine: Engine, rec: ExecRecord) -> None:
    deadline = time.monotonic() + 5
    _refresh_exec(engine, rec)
    while rec.running and time.monotonic() < deadline:
        time.sleep(0.01)
        _refresh_exec(engine, rec)
    if rec.exit_code is not None:
        engine.events.publish("container", "exec_die", rec.container_id, execID=rec.id,
                              exitCode=str(rec.exit_code))


def _drain_detached(engine: Engine, rec: ExecRecord, sock: Any) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(1 << 16):
            pass
    with contextlib.suppress(OSError):
        sock.close()
    _finish_exec(engine, rec)


def _ps(pids: list[int], ps_args: str) -> dict[str, Any]:
    """``ps`` on the host, filtered to the container's pids (as moby does)."""
    args = ps_args.split() if ps_args else ["-ef"]
    out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise InvalidArgument(f"Error running ps: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise InvalidArgument("Couldn't find PID field in ps output")
    pid_col = titles.index("PID")
    wanted = {str(p) for p in pids}
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) > pid_col and fields[pid_col] in wanted:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}


def _empty_cpu() -> dict[str, Any]:
    return {"cpu_total": 0, "percpu": [], "kernel": 0, "user": 0, "system": 0, "online": 0}


def _sample(engine: Engine, c: Container) -> tuple[dict[str, Any], str]:
    read_at = rfc3339(time.time_ns())
    if not c.running:
        return {**_empty_cpu(), "running": False}, read_at
    try:
        s = engine.runtime.stats(c.id)
    except (NotFound, Conflict):
        return {**_empty_cpu(), "running": False}, read_at
    return {
        "running": True,
        "cpu_total": getattr(s, "cpu_total_ns", 0),
        "percpu": list(getattr(s, "cpu_percpu_ns", []) or []),
        "kernel": getattr(s, "cpu_system_ns", 0),
        "user": getattr(s, "cpu_user_ns", 0),
        "system": getattr(s, "system_cpu_ns", 0),
        "online": getattr(s, "online_cpus", os.cpu_count() or 1),
        "mem_usage": getattr(s, "memory_usage", 0),
        "mem_limit": getattr(s, "memory_limit", 0),
        "mem_stats": dict(getattr(s, "memory_stats", {}) or {}),
        "pids": getattr(s, "pids_current", 0),
        "pids_limit": getattr(s, "pids_limit", 0),
        "blk_read": getattr(s, "blkio_read_bytes", 0),
        "blk_write": getattr(s, "blkio_write_bytes", 0),
        "networks": _net_dev(c.pid),
    }, read_at


def _cpu_json(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "cpu_usage": {"total_usage": s["cpu_total"], "percpu_usage": s["percpu"] or None,
                      "usage_in_kernelmode": s["kernel"], "usage_in_usermode": s["user"]},
        "system_cpu_usage": s["system"],
        "online_cpus": s["online"],
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    }


def _stats_json(c: Container, cur: dict[str, Any], prev: dict[str, Any], read_at: str,
                pre_read: str) -> dict[str, Any]:
    zero = "0001-01-01T00:00:00Z"
    out: dict[str, Any] = {
        "read": read_at if cur.get("running") else zero,
        "preread": pre_read or zero,
        "name": "/" + c.name,
        "id": c.id,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu_json(cur),
        "precpu_stats": _cpu_json(prev),
        "pids_stats": {},
        "blkio_stats": {"io_service_bytes_recursive": None},
        "memory_stats": {},
    }
    if not cur.get("running"):
        return out
    out["pids_stats"] = {"current": cur["pids"], **(
        {"limit": cur["pids_limit"]} if cur["pids_limit"] else {})}
    out["memory_stats"] = {"usage": cur["mem_usage"], "limit": cur["mem_limit"],
                           "stats": cur["mem_stats"]}
    out["blkio_stats"] = {"io_service_bytes_recursive": [
        {"major": 0, "minor": 0, "op": "read", "value": cur["blk_read"]},
        {"major": 0, "minor": 0, "op": "write", "value": cur["blk_write"]},
    ]}
    if cur["networks"]:
        out["networks"] = cur["networks"]
    return out


def _net_dev(pid: int) -> dict[str, Any]:
    """Interface counters of the container's network namespace, via its /proc/<pid>/net/dev."""
    nets: dict[str, Any] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return nets
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        nets[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2],
                      "rx_dropped": v[3], "tx_bytes": v[8], "tx_packets": v[9],
                      "tx_errors": v[10], "tx_dropped": v[11]}
    return nets
