"""Fakes at the vmhost seams: FakeHypervisor (scripted states) and LocalGuest (no VM).

LocalGuest runs ``guestagent`` verbs as host subprocesses and connects "guest" TCP ports on
the host's loopback, so the relay, port forwards and supervisor loops are tested for real
without QEMU. Its ``kill_connection`` makes every open channel fail, like a dead SSH link.
"""

from __future__ import annotations

import io
import shlex
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field

from runtime.api.errors import Conflict, NotFound, Unavailable
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
        return out.read1(n)

    def sendall(self, data: bytes) -> None:
        self._in.write(data)
        self._in.flush()

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
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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
