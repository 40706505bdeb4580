"""A real Cove engine for tests: its own data root, exec root, socket, cgroup parent and bridge.

Tests talk to it with real clients (docker-py, the docker CLI, ``cove``).
Stopping it kills what it left running and checks nothing leaked.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pty
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


# Third octets of 10.213.x.0/24 that tests use as fixed subnets (test_e2e.py's --bip,
# test_engine_e2e.py's and test_engine_restart.py's user networks): never a test engine's bridge.
FIXED_TEST_SUBNETS = frozenset({7, 240, 241})


def _free_bip(start: int) -> str:
    """The default-bridge address of a new test engine: a 10.213.x.1/24 that no live bridge
    routes (another test engine of this run, a fixed test subnet), so two never overlap."""
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True,
                            check=False).stdout
    used = {int(r.split(".")[2]) for r in routes.split() if r.startswith("10.213.")}
    for i in range(256):
        x = (start + i) % 256
        if x not in used and x not in FIXED_TEST_SUBNETS:
            return f"10.213.{x}.1/24"
    raise RuntimeError("no free 10.213.x.0/24 for a test engine")


class EngineProcess:
    def __init__(self, base: Path, extra_args: tuple[str, ...] = ()) -> None:
        tag = secrets.token_hex(3)
        self.extra_args = extra_args  # more daemon flags, e.g. --userns-remap
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.data_root = base / "data"
        self.exec_root = base / "run"
        self.socket = str(base / "engine.sock")
        self.cgroup_parent = f"cove-test-{tag}"
        self.bridge = f"cvt{tag}"
        self.bip = _free_bip(int(tag[:2], 16))
        self.log_path = base / "engine.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return "unix://" + self.socket

    def argv(self) -> list[str]:
        return [
            sys.executable, "-m", "runtime.engine", "--host", self.url,
            "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
            "--cgroup-parent", self.cgroup_parent, "--bridge", self.bridge,
            "--bip", self.bip, "--debug", *self.extra_args,
        ]

    def start(self, timeout: float = 30) -> None:
        with open(self.log_path, "ab") as log:
            # The embedded DNS forwards to a dead loopback port: no test query leaves the host.
            env = {"COVE_DNS_UPSTREAMS": "127.0.0.1:9", **os.environ}
            self.proc = subprocess.Popen(self.argv(), cwd=ROOT, stdout=log, stderr=log,
                                         start_new_session=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.request("GET", "/_ping")[0] == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"engine did not answer within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.proc = None

    def request(self, method: str, path: str, body: Any = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        conn = _UnixHTTPConnection(self.socket)
        try:
            payload = raw if raw is not None else (
                json.dumps(body).encode() if body is not None else None)
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            try:
                return resp.status, json.loads(data) if data.strip() else None
            except json.JSONDecodeError:
                return resp.status, data
        finally:
            conn.close()

    def import_image(self, tar: Path, repo: str, tag: str = "latest",
                     changes: tuple[str, ...] = ('CMD ["sh"]',)) -> None:
        query = f"fromSrc=-&repo={repo}&tag={tag}" + "".join(
            f"&changes={_q(c)}" for c in changes)
        status, body = self.request("POST", "/images/create?" + query, raw=tar.read_bytes())
        if status != 200 or (isinstance(body, bytes) and b"error" in body):
            raise RuntimeError(f"import failed: {status} {body!r}")

    def cleanup(self) -> None:
        """Remove every container (the engine must clean up), stop, then remove the dirs."""
        if self.proc is not None:
            with contextlib.suppress(Exception):
                _, items = self.request("GET", "/containers/json?all=1")
                for c in items or []:
                    self.request("DELETE", f"/containers/{c['Id']}?force=1&v=1")
            with contextlib.suppress(Exception):
                _, nets = self.request("GET", "/networks")
                for n in nets or []:
                    if n.get("Name") not in ("bridge", "host", "none"):
                        self.request("DELETE", f"/networks/{n['Id']}")
            self.stop()
        _kill_cgroup_leftovers(self.cgroup_parent)
        _unmount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        with contextlib.suppress(OSError):
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


def descendants(pid: int) -> list[int]:
    """*pid* and every process below it (by PPid), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("PPid:"):
                        children.setdefault(int(line.split()[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def wait_http(url: str, timeout: float = 10, attempt_timeout: float = 2) -> bytes:
    """The body at *url*, retried until it answers (a published port takes a moment after
    ``run -d``); after *timeout* seconds the last error goes up."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=attempt_timeout) as r:
                data: bytes = r.read()
                return data
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def leaked_cgroups(parent: str) -> list[str]:
    found = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if (hierarchy / parent).exists():
            found += [str(p) for p in (hierarchy / parent).iterdir() if p.is_dir()]
    return found


def leaked_mounts(base: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(base) in line]


def _kill_cgroup_leftovers(parent: str) -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / parent
        if not top.is_dir():
            continue
        for d in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
            if d.is_dir():
                with contextlib.suppress(OSError):
                    for pid in (d / "cgroup.procs").read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
                with contextlib.suppress(OSError):
                    d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _unmount_under(base: Path) -> None:
    for line in reversed(leaked_mounts(base)):
        target = line.split()[4]
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def in_pty(argv: list[str], send: bytes = b"", timeout: float = 30,
           until: bytes | None = None, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run *argv* with a pty as its stdin/stdout/stderr; (exit code, everything it wrote)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else in a forked interpreter
        os.execve(argv[0], argv, env if env is not None else os.environ)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if send and not sent and (until is None or until in out):
                os.write(fd, send)
                sent = True
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break  # EIO: the child closed the pty
                if not chunk:
                    break
                out += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out
