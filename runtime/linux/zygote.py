"""The monitor zygote: a small pre-started Python process that forks container monitors.

Forking each monitor from the engine copies a large, multi-threaded address
space: the fork is slower, every page the monitor touches (Python's refcounts
touch most) becomes a private copy, and forking from threads risks inheriting
a lock another thread held. The zygote is started once per engine process
with only the monitor's modules imported (``python -S -m runtime.linux.zygote``),
freezes its heap out of the GC's reach and forks a monitor per request.

Protocol on a socketpair (the zygote's end's number is its argument): the engine
sends a 4-byte big-endian length with the monitor's file descriptors attached
(result pipe, then the early attaches' sockets), then that many bytes of JSON
(:func:`encode_config`); the zygote answers with the monitor's pid as a signed
4-byte integer (negative: fork failed, -errno).

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
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

from runtime.linux.cgroups import CgroupV2, open_cgroup
from runtime.linux.monitor import AttachFlags, MonitorConfig, run_monitor
from runtime.linux.process import Security
from runtime.spec import spec_from_json, to_json

_LEN = struct.Struct("!I")
_PID = struct.Struct("!i")
MAX_FDS = 256  # the result pipe plus early attaches


def encode_config(cfg: MonitorConfig) -> tuple[bytes, list[int]]:
    """*cfg* as JSON plus the descriptors that travel beside it (SCM_RIGHTS)."""
    sec = cfg.security
    data = {
        "spec": to_json(cfg.spec),
        "dir": str(cfg.dir),
        "cgroup": cfg.cgroup.path,
        "cap_mask": sec.cap_mask,
        "seccomp": sec.seccomp_bpf.hex() if sec.seccomp_bpf is not None else None,
        "no_new_privileges": sec.no_new_privileges,
        "pending": [[f.stdin, f.stdout, f.stderr] for _, f in cfg.pending],
    }
    fds = [cfg.result_fd, *(s.fileno() for s, _ in cfg.pending)]
    return json.dumps(data).encode(), fds


def decode_config(payload: bytes, fds: list[int]) -> MonitorConfig:
    data: dict[str, Any] = json.loads(payload)
    cgroup = open_cgroup(str(data["cgroup"]))
    bpf = data["seccomp"]
    spec = spec_from_json(data["spec"])
    security = Security(int(data["cap_mask"]), bytes.fromhex(bpf) if bpf else None,
                        bool(data["no_new_privileges"]))
    if len(fds) != 1 + len(data["pending"]):
        raise ValueError("monitor zygote: descriptors and attaches do not match")
    # Sockets last: once they own their fds, nothing above can fail and leave them open.
    pending = tuple(
        (socket.socket(fileno=fd), AttachFlags(bool(f[0]), bool(f[1]), bool(f[2])))
        for fd, f in zip(fds[1:], data["pending"], strict=True)
    )
    return MonitorConfig(
        spec=spec, dir=Path(data["dir"]), cgroup=cgroup,
        cgroup_v2=isinstance(cgroup, CgroupV2), security=security,
        result_fd=fds[0], pending=pending,
    )


# -- engine side ----------------------------------------------------------------------
class ZygoteError(Exception):
    """The zygote could not be started or stopped answering."""


class ZygoteClient:
    """The engine's handle on its zygote: started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def spawn(self, cfg: MonitorConfig) -> int:
        """Fork a monitor running *cfg*: its pid, or -1 if the zygote died after taking the
        request (then only the result pipe can tell whether a monitor runs).

        Raises ZygoteError when no monitor was forked; the caller still owns every fd.
        """
        payload, fds = encode_config(cfg)
        with self._lock:
            for attempt in range(2):
                sock = self._ensure()
                try:
                    socket.send_fds(sock, [_LEN.pack(len(payload))], fds)
                except OSError as e:
                    # It died while idle: nothing of this request reached it; retry once.
                    self._discard()
                    if attempt:
                        raise ZygoteError(f"monitor zygote: {e}") from e
                    continue
                try:
                    sock.sendall(payload)
                    pid: int = _PID.unpack(_recv_exact(sock, _PID.size))[0]
                except OSError:
                    self._discard()
                    return -1
                if pid < 0:
                    raise ZygoteError(f"monitor zygote: fork: {os.strerror(-pid)}")
                return pid
        raise ZygoteError("monitor zygote unavailable")

    def _ensure(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._discard()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            # -S: no site (and no .pth hooks) — the monitor needs only the stdlib and us.
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-m", "runtime.linux.zygote", str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                pass_fds=(theirs.fileno(),),
            )
        except OSError as e:
            ours.close()
            raise ZygoteError(f"monitor zygote: {e}") from e
        finally:
            theirs.close()
        self._sock = ours
        # Wait for its ready byte: a failed import shows here, not at the first start.
        try:
            if _recv_exact(ours, 1) != b"r":
                raise OSError("bad greeting")
        except OSError as e:
            self._discard()
            raise ZygoteError(f"monitor zygote did not start: {e}") from e
        return ours

    def _discard(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            # Reap it off the caller's path: it exits as soon as its socket closes.
            threading.Thread(target=self._proc.wait, daemon=True).start()
            self._proc = None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionResetError("monitor zygote closed its socket")
        buf += chunk
    return bytes(buf)


# -- zygote side ------------------------------------------------------------------------
def _serve(sock: socket.socket) -> None:
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
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


def _one_request(sock: socket.socket, own_fds: tuple[int, int]) -> bool:
    """Fork one monitor; False when the engine is gone."""
    try:
        head, fds, _, _ = socket.recv_fds(sock, _LEN.size, MAX_FDS)
        if not head:
            return False
        head += _recv_exact(sock, _LEN.size - len(head))
        payload = _recv_exact(sock, _LEN.unpack(head)[0])
    except OSError:
        return False
    cfg = None
    try:
        # Decoded here, before the fork, so the monitors share the result's pages.
        cfg = decode_config(payload, fds)
        pid = os.fork()
    except Exception as e:
        pid = -(e.errno or 1) if isinstance(e, OSError) else -22  # EINVAL
    if pid == 0 and cfg is not None:
        _monitor_child(sock, own_fds, cfg)
    if cfg is None:
        for fd in fds:
            os.close(fd)
    else:  # through the socket objects, which would otherwise close the numbers later
        os.close(cfg.result_fd)
        for s, _ in cfg.pending:
            s.close()
    sock.sendall(_PID.pack(pid))
    return True


def _monitor_child(sock: socket.socket, own_fds: tuple[int, int],
                   cfg: MonitorConfig) -> NoReturn:
    try:
        sock.close()
        for fd in own_fds:
            os.close(fd)
        signal.set_wakeup_fd(-1)
        run_monitor(cfg)
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
