"""``cove exec`` and ``cove run`` in their everyday shapes, without argparse.

Why: both verbs are benchmarked against docker's Go CLI (issue #2), and the full CLI's
imports (argparse → re, gettext, locale, shutil; typing; json; socket → enum; urllib)
cost several times the engine's own work for ``exec C true``. This module imports only
what the interpreter has loaded anyway plus three C extensions (``_socket``, ``_json``,
``_signal``), and speaks just enough HTTP/1.1 for these two verbs.

Exactness: :func:`parse` accepts an argument list only when its meaning under the full
parser is certain (tests/cli/test_fast.py checks both agree over a table of argument
lists); for anything else (-i, -t, an unknown or abbreviated flag, ``--``, a flag value
that starts with ``-``, another endpoint than a Unix socket) it returns None and
:mod:`runtime.cli.main` runs the full parser. A request that fails before the engine
changed anything (inspect, exec create, container create) also hands over to the full
path, which repeats it and words the error; failures after that raise the exceptions the
full path raises, built by its own (lazily imported) modules.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket
    from collections.abc import Callable, Iterator
    from typing import Any

    from runtime.api.errors import CoveError

# Mirrors runtime.api.wire.API_VERSION and transport.DEFAULT_HOST/HOST_ENV (importing
# those modules costs what this one avoids; tests/cli/test_fast.py checks they agree).
API_VERSION = "1.44"
DEFAULT_HOST = "unix:///run/cove/engine.sock"
HOST_ENV = "COVE_HOST"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"
# The signals docker's CLI forwards to a container without a TTY (stdio.proxy_signals).
PROXIED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")

# Flags each fast verb understands: bare switches and options taking one value.
_SWITCHES = {
    "exec": {"-d": "detach", "--detach": "detach", "--privileged": "privileged"},
    "run": {
        "-d": "detach",
        "--detach": "detach",
        "--rm": "rm",
        "--privileged": "privileged",
        "--init": "init",
    },
}
_COMMON_VALUES = {
    "-u": "user",
    "--user": "user",
    "-w": "workdir",
    "--workdir": "workdir",
    "-e": "env",
    "--env": "env",
}
_VALUES = {
    "exec": _COMMON_VALUES,
    "run": {**_COMMON_VALUES, "--name": "name", "--network": "network", "--net": "network"},
}
# Characters a path segment or query value may carry unquoted (urllib's "safe" sets).
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


class Fallback(Exception):
    """The full CLI must handle this invocation (raised before the engine changed state)."""


class Invocation:
    """One parsed fast-path command line (a plain slotted class: dataclasses imports re)."""

    __slots__ = (
        "command",
        "detach",
        "env",
        "host",
        "init",
        "name",
        "network",
        "privileged",
        "rm",
        "target",
        "user",
        "verb",
        "workdir",
    )

    def __init__(self, verb: str, host: str) -> None:
        self.verb, self.host = verb, host
        self.target = ""  # the container (exec) or image (run)
        self.command: list[str] = []
        self.detach = self.privileged = self.rm = self.init = False
        self.user = self.workdir = ""
        self.env: list[str] = []
        self.name: str | None = None
        self.network = "default"


def parse(argv: list[str]) -> Invocation | None:
    """The invocation when argv is ``[-H URL] exec|run ...`` in a shape this module serves."""
    host, i = None, 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("-H", "--host") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            host, i = argv[i + 1], i + 2
        elif tok.startswith("--host="):
            host, i = tok[len("--host=") :], i + 1
        else:
            break
    if i == len(argv) or argv[i] not in _SWITCHES:
        return None
    inv = Invocation(argv[i], host or os.environ.get(HOST_ENV) or DEFAULT_HOST)
    if _socket_path(inv.host) is None or not _parse_verb(inv, argv[i + 1 :]):
        return None
    return inv


def _parse_verb(inv: Invocation, args: list[str]) -> bool:
    switches, values = _SWITCHES[inv.verb], _VALUES[inv.verb]
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("-"):
            inv.target, inv.command = tok, args[i + 1 :]
            # "--" keeps or loses its meaning depending on where argparse meets it.
            return "--" not in inv.command and (inv.verb == "run" or bool(inv.command))
        name, eq, value = tok.partition("=")
        if tok in switches:
            setattr(inv, switches[tok], True)
            i += 1
        elif name in values and (not eq or name.startswith("--")):
            if not eq:
                if i + 1 == len(args) or args[i + 1].startswith("-"):
                    return False  # argparse's "expected one argument" (or a number-like value)
                value, i = args[i + 1], i + 1
            _set_value(inv, values[name], value)
            i += 1
        else:
            return False
    return False  # no container or image: the full parser reports it


def _set_value(inv: Invocation, field: str, value: str) -> None:
    if field == "env":
        inv.env.append(value)
    else:
        setattr(inv, field, value)


def _socket_path(url: str) -> str | None:
    """The Unix socket a host URL names, as transport_for reads it (None: not served here)."""
    if url.startswith("/"):
        return url
    if not url.startswith("unix://") or "?" in url or "#" in url or len(url) == len("unix://"):
        return None
    return url[len("unix://") :]


def parse_env(values: list[str]) -> list[str]:
    """opts.parse_env: ``-e KEY=V`` as given; ``-e KEY`` takes the caller's value or is dropped."""
    out = []
    for v in values:
        if "=" in v:
            out.append(v)
        elif v in os.environ:
            out.append(f"{v}={os.environ[v]}")
    return out


def exec_config(inv: Invocation) -> dict[str, Any]:
    """The exec create body execs.exec_config builds for the same flags (no -i, no -t)."""
    return {
        "User": inv.user,
        "Privileged": inv.privileged,
        "Tty": False,
        "ConsoleSize": [0, 0],
        "AttachStdin": False,
        "AttachStderr": not inv.detach,
        "AttachStdout": not inv.detach,
        "Detach": inv.detach,
        "DetachKeys": "",
        "Env": parse_env(inv.env),
        "WorkingDir": inv.workdir,
        "Cmd": inv.command,
    }


def create_config(inv: Invocation) -> dict[str, Any]:
    """The create body run.build_config builds for the same flags (docker 28's zero values)."""
    return {
        "Hostname": "",
        "Domainname": "",
        "User": inv.user,
        "AttachStdin": False,
        "AttachStdout": not inv.detach,
        "AttachStderr": not inv.detach,
        "ExposedPorts": {},
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": parse_env(inv.env),
        "Cmd": inv.command or None,
        "Image": inv.target,
        "Volumes": {},
        "WorkingDir": inv.workdir,
        "Entrypoint": None,
        "Labels": {},
        "StopSignal": None,
        "HostConfig": _host_config(inv),
        "NetworkingConfig": {"EndpointsConfig": {inv.network: {}}},
    }


def _host_config(inv: Invocation) -> dict[str, Any]:
    return {
        "Binds": [],
        "ContainerIDFile": "",
        "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": inv.network,
        "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": inv.rm,
        "VolumesFrom": None,
        "ConsoleSize": [0, 0],
        "CapAdd": None,
        "CapDrop": None,
        "Dns": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "ExtraHosts": None,
        "GroupAdd": None,
        "IpcMode": "",
        "PidMode": "",
        "Privileged": inv.privileged,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        "SecurityOpt": None,
        "Tmpfs": None,
        "ShmSize": 0,
        "Memory": 0,
        "MemorySwap": 0,
        "MemoryReservation": 0,
        "NanoCpus": 0,
        "CpuShares": 0,
        "CpusetCpus": "",
        "PidsLimit": None,
        "Ulimits": None,
        "Mounts": None,
        "Devices": [],
        "Sysctls": None,
        "MemorySwappiness": -1,
        "Init": True if inv.init else None,
    }


# --- JSON on the C accelerator alone (the json package imports re) ---------------------


def dumps(value: Any) -> str:
    """json.dumps's output for the plain values request bodies hold."""
    from _json import encode_basestring_ascii as quote

    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{quote(k)}: {dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dumps(v) for v in value) + "]"
    raise TypeError(f"not a request value: {type(value).__name__}")


class _DecodeContext:
    """The settings json.JSONDecoder hands its C scanner (defaults, strict)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def loads(raw: bytes) -> Any:
    """json.loads for an engine's answer (ValueError when it is not one JSON value)."""
    from _json import make_scanner

    text = raw.decode("utf-8")
    start = len(text) - len(text.lstrip(" \t\n\r"))
    scan = make_scanner(_DecodeContext())  # type: ignore[arg-type]  # duck-typed context
    try:
        value, end = scan(text, start)
    except StopIteration:
        raise ValueError("invalid JSON from the engine") from None
    if text[end:].strip(" \t\n\r"):
        raise ValueError("extra data after the engine's JSON")
    return value


# --- HTTP/1.1 over one Unix socket --------------------------------------------------------


def _unix_socket() -> _socket.socket:
    if sys.platform != "win32":
        from _socket import AF_UNIX, SOCK_STREAM, socket

        return socket(AF_UNIX, SOCK_STREAM)
    raise OSError("Unix sockets are not available on Windows")  # main() never gets here


class Connection:
    """One request and its response (or, after ``101``, the raw stream) on a fresh socket."""

    def __init__(self, path: str) -> None:
        self.sock = _unix_socket()
        self.buf = b""
        self.status = 0
        self.headers: dict[str, str] = {}
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise

    def request(
        self, method: str, target: str, body: str | None = None, upgrade: bool = False
    ) -> int:
        """Send the request, read the status line and headers; return the status."""
        data = body.encode() if body is not None else b""
        head = f"{method} /v{API_VERSION}{target} HTTP/1.1\r\nHost: localhost\r\n"
        if upgrade:
            head += "Connection: Upgrade\r\nUpgrade: tcp\r\n"
        else:
            head += "User-Agent: cove\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        if body is not None or method == "POST":
            head += f"Content-Length: {len(data)}\r\n"
        self.sock.sendall(head.encode("latin-1") + b"\r\n" + data)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("the engine closed the connection")
            self.buf += chunk
        lines = self.buf[:end].decode("latin-1").split("\r\n")
        self.buf = self.buf[end + 4 :]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionResetError(f"malformed response from engine: {lines[0][:80]!r}")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.status = int(parts[1])
        return self.status

    def read_some(self) -> bytes:
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(max(n - len(self.buf), 65536))
            except OSError:
                chunk = b""
            if not chunk:
                break
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def body(self) -> bytes:
        """The whole body: Content-Length, chunked, or up to the close."""
        if self.status in (204, 304):
            return b""
        if "content-length" in self.headers:
            return self.read_exact(int(self.headers["content-length"]))
        out = b""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int(self._line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return out
                out += self.read_exact(size)
                self.read_exact(2)
        while data := self.read_some():
            out += data
        return out

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b""
            self.buf += chunk
        line, self.buf = self.buf[:end], self.buf[end + 2 :]
        return line

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(stream, bytes) until the engine closes: streams.frames, or raw chunks as stdout."""
        if self.headers.get("content-type", "") != MULTIPLEXED:
            while chunk := self.read_some():
                yield 1, chunk
            return
        while len(header := self.read_exact(8)) == 8:
            size = int.from_bytes(header[4:], "big")
            payload = self.read_exact(size) if size else b""
            if payload or size == 0:
                yield header[0], payload
            if len(payload) < size:
                return

    def close(self) -> None:
        self.sock.close()


def _path(segment: str) -> str:
    """A name from the command line in a URL path; odd characters go the full path (quote)."""
    if not segment or not set(segment) <= _PLAIN | {"/", ":", "@"}:
        raise Fallback
    return segment


def _engine_id(value: object) -> str:
    """An ID the engine returned (hex), checked before it goes into a URL."""
    ident = str(value)
    if not ident or not set(ident) <= _PLAIN:
        raise _local_error(f"unexpected ID from the engine: {ident[:80]!r}")
    return ident


class Engine:
    """The requests the two verbs make, with the full client's error semantics."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def connect(self) -> Connection:
        try:
            return Connection(self.socket_path)
        except OSError as e:
            from runtime.api.transport import EngineUnreachable

            raise EngineUnreachable("unix://" + self.socket_path, e.strerror or str(e)) from e

    def open(
        self, method: str, target: str, body: Any = None, *, upgrade: bool = False
    ) -> Connection:
        """Send a request; a 2xx/101 response's connection, else the daemon's error."""
        conn = self.connect()
        try:
            status = conn.request(method, target, None if body is None else dumps(body), upgrade)
            if status >= 400:
                raise daemon_error(status, conn.body())
        except BaseException:
            conn.close()
            raise
        return conn

    def call(self, method: str, target: str, body: Any = None, *, probe: bool = False) -> Any:
        """A request whose answer is JSON (or empty), like BaseClient.call.

        ``probe``: the request changes nothing when it fails, so if the engine is
        unreachable or answers with an error, the full path takes over (and words it).
        """
        try:
            conn = self.connect()
        except OSError:
            if probe:
                raise Fallback from None
            raise
        try:
            try:
                status = conn.request(method, target, None if body is None else dumps(body))
                payload = conn.body()
            except OSError as e:
                path = target.partition("?")[0]
                raise _local_error(f"error during {method} {path}: {e or type(e).__name__}") from e
            if status >= 400:
                if probe:
                    raise Fallback
                raise daemon_error(status, payload)
        finally:
            conn.close()
        return loads(payload) if payload.strip() else None


def daemon_error(status: int, payload: bytes) -> CoveError:
    from runtime.api.wire import daemon_error as build

    return build(status, payload)


def _local_error(message: str) -> CoveError:
    from runtime.api.errors import CoveError

    return CoveError(message)


def write_streams(frames: Iterator[tuple[int, bytes]]) -> None:
    """stdio.Session's copy loop: stream 2 to stderr, the rest to stdout, flushed each time."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream, data in frames:
        target = err if stream == 2 else out
        target.write(data)
        target.flush()


# --- the verbs ------------------------------------------------------------------------


def run_exec(inv: Invocation, engine: Engine) -> int:
    """execs.cmd_exec: inspect, exec create, start (hijacked unless -d), exit code."""
    info = engine.call("GET", f"/containers/{_path(inv.target)}/json", probe=True)
    if not (info.get("State") or {}).get("Running"):
        raise Fallback  # the full path words "container ... is not running"
    cid = _engine_id(info["Id"])
    created = engine.call("POST", f"/containers/{cid}/exec", exec_config(inv), probe=True)
    exec_id = _engine_id(created["Id"])
    start = {"Detach": inv.detach, "Tty": False, "ConsoleSize": [0, 0]}
    if inv.detach:
        engine.call("POST", f"/exec/{exec_id}/start", start)
        return 0
    conn = engine.open("POST", f"/exec/{exec_id}/start", start, upgrade=True)
    try:
        write_streams(conn.frames())
    finally:
        conn.close()
    return int(engine.call("GET", f"/exec/{exec_id}/json").get("ExitCode") or 0)


def run_container(inv: Invocation, engine: Engine) -> int:
    """run.cmd_run without -i/-t: create, attach, wait, start, copy output, exit status."""
    query = ""
    if inv.name:
        if not set(inv.name) <= _PLAIN:
            raise Fallback  # urlencode's escaping lives in the full path
        query = f"?name={inv.name}"
    created = engine.call("POST", f"/containers/create{query}", create_config(inv), probe=True)
    for warning in created.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    cid = _engine_id(created["Id"])
    try:
        return _attach_and_start(inv, engine, cid)
    except Exception as e:
        mapped = _run_failure(e)
        if mapped is e:
            raise
        raise mapped from e


def _attach_and_start(inv: Invocation, engine: Engine, cid: str) -> int:
    if inv.detach:
        _start(engine, cid)
        print(cid)
        return 0
    conn = engine.open("POST", f"/containers/{cid}/attach?stream=1&stdout=1&stderr=1", upgrade=True)
    try:
        condition = "removed" if inv.rm else "next-exit"
        waiter = engine.open("POST", f"/containers/{cid}/wait?condition={condition}")
    except BaseException:
        conn.close()
        raise
    try:
        _start(engine, cid)
    except BaseException:
        conn.close()
        waiter.close()
        raise
    try:
        with SignalProxy(lambda sig: engine.call("POST", f"/containers/{cid}/kill?signal={sig}")):
            write_streams(conn.frames())
    finally:
        conn.close()
    return _exit_status(waiter)


def _start(engine: Engine, cid: str) -> None:
    try:
        engine.call("POST", f"/containers/{cid}/start")
    except Exception as e:
        from runtime.api.errors import CoveError
        from runtime.cli.run import start_failure

        if not isinstance(e, CoveError):
            raise
        raise start_failure(e) from e


def _exit_status(waiter: Connection) -> int:
    """Waiter.result + run.exit_status: the wait body's Error, else its StatusCode."""
    try:
        body = loads(waiter.body() or b"{}")
    except (OSError, ValueError) as e:
        raise _local_error(f"error waiting for container: {e}") from e
    finally:
        waiter.close()
    err = body.get("Error") or {}
    if isinstance(err, dict) and err.get("Message"):
        from runtime.cli.base import CliError

        raise CliError(f"cove: {err['Message']}", 125)
    return int(body.get("StatusCode", 0))


def _run_failure(e: Exception) -> Exception:
    """cmd_run's wording of a failure: engine errors as run exit codes, all with "cove: "."""
    from runtime.cli.run import run_failure

    return run_failure(e)


class SignalProxy:
    """stdio.proxy_signals on ``_signal`` (the signal module imports enum)."""

    def __init__(self, kill: Callable[[str], object]) -> None:
        import _signal  # type: ignore[import-not-found]  # C module without stubs

        self._signal: Any = _signal
        self.kill = kill
        self.names = {getattr(_signal, n): n for n in PROXIED_SIGNALS if hasattr(_signal, n)}
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> SignalProxy:
        for num in self.names:
            self.previous[num] = self._signal.signal(num, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for num, handler in self.previous.items():
            self._signal.signal(num, handler)

    def _forward(self, signum: int, _frame: object) -> None:
        try:
            self.kill(self.names[signum])
        except Exception:  # the container may be gone already; nothing to forward to
            pass


def main(argv: list[str]) -> int | None:
    """Run argv on the fast path: its exit code, or None when the full CLI must run it."""
    inv = parse(argv)
    if inv is None or sys.platform == "win32":  # Unix sockets only; Windows has none
        return None
    try:  # CPython's C accelerators; an interpreter without them takes the full path
        import _json  # noqa: F401
        import _socket  # noqa: F401
    except ImportError:
        return None
    path = _socket_path(inv.host)
    assert path is not None  # parse() accepted only Unix socket endpoints
    verb = run_exec if inv.verb == "exec" else run_container
    try:
        return verb(inv, Engine(path))
    except Fallback:
        return None
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from runtime.cli.main import failure_code

        return failure_code(e, debug=False)
