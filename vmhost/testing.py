"""Fakes at the vmhost seams: FakeHypervisor (scripted states), LocalGuest (no VM) and
FakeEngine (an engine socket that closes keep-alive connections on cue).

LocalGuest runs ``guestagent`` verbs as host subprocesses and connects "guest" TCP ports on
the host's loopback, so the relay, port forwards and supervisor loops are tested for real
without QEMU. Its ``kill_connection`` makes every open channel fail, like a dead SSH link.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shlex
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.api.errors import Conflict, NotFound, Unavailable
from runtime.api.transport import unix_stream_socket
from vmhost.hypervisor import Resources, VMSpec, VMState, VMStatus
from vmhost.streams import SocketStream, Stream


@dataclass
class FakeHypervisor:
    """In-memory Hypervisor; ``fail`` maps a method name to the error it raises next."""

    name: str = "fake"
    specs: dict[str, VMSpec] = field(default_factory=dict)
    states: dict[str, VMState] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail: dict[str, Exception] = field(default_factory=dict)

    def sharing(self) -> str | None:
        return None

    def _check(self, method: str, name: str) -> None:
        self.calls.append((method, name))
        if method in self.fail:
            raise self.fail.pop(method)

    def available(self) -> str | None:
        return None

    def create(self, spec: VMSpec) -> None:
        self._check("create", spec.name)
        if self.states.get(spec.name) is VMState.RUNNING:
            raise Conflict(f"vm {spec.name} is running")
        self.specs[spec.name] = spec
        self.states[spec.name] = VMState.STOPPED

    def start(self, name: str) -> None:
        self._check("start", name)
        if name not in self.specs:
            raise NotFound(f"no such vm: {name}")
        self.states[name] = VMState.RUNNING

    def stop(self, name: str, *, timeout: float = 20.0) -> None:
        self._check("stop", name)
        if name in self.states:
            self.states[name] = VMState.STOPPED

    def delete(self, name: str) -> None:
        self._check("delete", name)
        self.specs.pop(name, None)
        self.states.pop(name, None)

    def status(self, name: str) -> VMStatus:
        return VMStatus(state=self.states.get(name, VMState.ABSENT), accel="fake")

    def resources(self, name: str) -> Resources:
        spec = self.specs.get(name)
        if spec is None:
            raise NotFound(f"no such vm: {name}")
        return Resources(cpus=spec.cpus, memory_mib=spec.memory_mib)


class ProcessStream:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._in = proc.stdin
        self._out = proc.stdout

    def recv(self, n: int) -> bytes:
        out = self._out
        assert isinstance(out, io.BufferedReader)
        try:
            return out.read1(n)
        except ValueError as e:  # closed under a reader (kill_connection): as a socket says
            raise OSError(f"stream closed: {e}") from e

    def sendall(self, data: bytes) -> None:
        try:
            self._in.write(data)
            self._in.flush()
        except ValueError as e:
            raise OSError(f"stream closed: {e}") from e

    def shutdown_write(self) -> None:
        try:
            self._in.close()
        except OSError:
            pass

    def close(self) -> None:
        self.shutdown_write()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._out.close()


class LocalGuest:
    """GuestConnection that runs guestagent on this host against *engine_socket*."""

    def __init__(self, engine_socket: str, *, proc_files: tuple[str, ...] = ()) -> None:
        self.engine_socket = engine_socket
        self.proc_files = proc_files
        self.dead = threading.Event()
        self.streams: list[Stream] = []
        self.execs: list[str] = []
        self.unix_opens: list[str] = []

    def _argv(self, command: str) -> list[str]:
        words = shlex.split(command)
        if words[0] != "guestagent":
            return words
        argv = [sys.executable, "-m", "guestagent", *words[1:]]
        if len(words) > 1 and words[1] in ("dial-stdio", "events", "info"):
            argv += ["--socket", self.engine_socket]
        if len(words) > 1 and words[1] == "events":
            argv += ["--interval", "0.1"] + [f"--proc-file={f}" for f in self.proc_files]
        return argv

    def _check(self) -> None:
        if self.dead.is_set():
            raise Unavailable("local guest: connection refused")

    def open_exec(self, command: str) -> Stream:
        self._check()
        self.execs.append(command)
        proc = subprocess.Popen(self._argv(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        stream = ProcessStream(proc)
        self.streams.append(stream)
        return stream

    def open_tcp(self, port: int) -> Stream:
        self._check()
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError as e:
            raise Unavailable(f"guest port {port}: {e}") from e
        sock.settimeout(None)
        stream = SocketStream(sock)
        self.streams.append(stream)
        return stream

    def open_unix(self, path: str) -> Stream:
        """*path* is a host path here (the test's engine socket stands in for the guest's)."""
        self._check()
        self.unix_opens.append(path)
        sock = unix_stream_socket()
        try:
            sock.connect(path)
        except OSError as e:
            sock.close()
            raise Unavailable(f"guest socket {path}: {e}") from e
        stream = SocketStream(sock)
        self.streams.append(stream)
        return stream

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, bytes]:
        self._check()
        out = subprocess.run(self._argv(command), capture_output=True, timeout=timeout)
        return out.returncode, out.stdout

    def kill_connection(self) -> None:
        """Break every open channel, as a dropped SSH connection would; then accept again."""
        for s in self.streams:
            s.close()
        self.streams.clear()

    def close(self) -> None:
        self.kill_connection()


class FakeEngine:
    """A Unix-socket HTTP/1.1 engine stand-in that closes keep-alive connections the way
    the relay must survive: idle ones on :meth:`close_idle` (an idle timeout firing, an
    engine restart) and, with *drop_next*, a reused connection exactly as the next request
    arrives, before reading it (the idle-close race, made deterministic).

    It answers ``HEAD/GET /_ping``, ``GET /version`` and, for any POST, the number of body
    bytes it read (Content-Length or chunked). ``requests`` lists each request it read, so a
    test sees a request the relay sent twice. ``fail_after_read`` names request targets it
    closes the connection on after reading them, without answering (an engine that died
    mid-request): those must not be sent again.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[str] = []
        self.drop_next = 0
        self.dropped = 0
        self.fail_after_read: set[str] = set()
        self._idle: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._sock = unix_stream_socket()
        self._sock.bind(path)
        self._sock.listen(128)
        threading.Thread(target=self._accept, name="fake-engine", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def close_idle(self) -> int:
        """Close every connection that waits for its next request; how many."""
        with self._lock:
            idle, self._idle = self._idle, set()
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return len(idle)

    def _serve(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        served = 0
        try:
            while True:
                with self._lock:
                    self._idle.add(conn)
                if not rfile.peek(1):
                    return
                with self._lock:
                    if conn not in self._idle:
                        return  # close_idle() won the race
                    self._idle.discard(conn)
                    drop = served > 0 and self.drop_next > 0
                    if drop:
                        self.drop_next -= 1
                        self.dropped += 1
                if drop:
                    return
                if not self._one(conn, rfile):
                    return
                served += 1
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._idle.discard(conn)
            rfile.close()
            conn.close()

    def _one(self, conn: socket.socket, rfile: io.BufferedReader) -> bool:
        """Read and answer one request; False when the connection must close."""
        method, target, _ = rfile.readline(65537).decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (line := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        n = _read_body(rfile, headers)
        self.requests.append(f"{method} {target}")
        if target in self.fail_after_read:
            return False
        if target == "/_ping":
            body = b"OK"
        elif method == "POST":
            body = b'{"read":%d}' % n
        else:
            body = b'{"Version":"fake"}'
        head = b"HTTP/1.1 200 OK\r\nApi-Version: 1.44\r\nContent-Length: %d\r\n\r\n" % len(body)
        conn.sendall(head if method == "HEAD" else head + body)
        return headers.get("connection", "").lower() != "close"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self.close_idle()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _read_body(rfile: io.BufferedReader, headers: dict[str, str]) -> int:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        n = 0
        while size := int(rfile.readline(1024).split(b";")[0], 16):
            n += len(rfile.read(size))
            rfile.readline(8)
        rfile.readline(8)
        return n
    return len(rfile.read(int(headers.get("content-length", "0"))))


class FakeSSHServer:
    """An SSH server on 127.0.0.1 (paramiko's server side) for SSHGuest: public-key auth
    with *client_key*, the host key *host_key*; every channel it accepts echoes what it
    gets until EOF. Channel kinds in ``refuse`` are refused, as a guest sshd refuses one
    (MaxSessions, a forwarding it does not allow). ``connections`` counts SSH logins."""

    def __init__(self, host_key: Path, client_key_pub: str) -> None:
        import paramiko

        self._paramiko = paramiko
        self.host_key = paramiko.Ed25519Key.from_private_key_file(str(host_key))
        kind, blob = client_key_pub.split()[:2]
        self.client_key = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
        self.refuse: set[str] = set()
        self.connections = 0
        self._transports: list[Any] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, name="fake-sshd", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            t = self._paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            self._transports.append(t)
            try:
                t.start_server(server=_ssh_interface(self))
            except (self._paramiko.SSHException, EOFError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._channels, args=(t,), daemon=True).start()

    def _channels(self, t: Any) -> None:
        while t.is_active():
            ch = t.accept(0.2)
            if ch is not None:
                threading.Thread(target=_echo, args=(ch,), daemon=True).start()

    def close(self) -> None:
        self._sock.close()
        for t in self._transports:
            t.close()


def _ssh_interface(server: FakeSSHServer) -> Any:
    """A paramiko.ServerInterface for *server* (paramiko imported only when one runs)."""
    import paramiko
    from paramiko.common import (
        AUTH_FAILED,
        AUTH_SUCCESSFUL,
        OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
        OPEN_SUCCEEDED,
    )

    class Interface(paramiko.ServerInterface):
        def get_allowed_auths(self, username: str) -> str:
            return "publickey"

        def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
            ok = key.asbytes() == server.client_key.asbytes()
            return AUTH_SUCCESSFUL if ok else AUTH_FAILED

        def check_channel_request(self, kind: str, chanid: int) -> int:
            if kind in server.refuse:
                return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
            return OPEN_SUCCEEDED

        def check_channel_direct_tcpip_request(self, chanid: int, origin: Any, dest: Any) -> int:
            return self.check_channel_request("direct-tcpip", chanid)

        def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
            return True

    return Interface()


def _echo(ch: Any) -> None:
    # The client may be gone already (its transport closed): then close() has no one to
    # tell either.
    with contextlib.suppress(OSError, EOFError):
        while data := ch.recv(65536):
            ch.sendall(data)
    with contextlib.suppress(OSError, EOFError):
        ch.close()
