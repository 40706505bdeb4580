"""The engine's side of the monitor zygote (runtime.linux.zygote): start it, send requests.

Kept out of the zygote's module so that the zygote imports neither threading nor
subprocess (their at-fork hooks would run in every monitor).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from runtime.linux.monitor_config import MonitorConfig, encode_config
from runtime.linux.zygote import LEN, PID, recv_exact


class ZygoteError(Exception):
    """The zygote could not be started or stopped answering."""


class ZygoteClient:
    """The engine's handle on its zygote: started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def spawn(self, cfg: MonitorConfig) -> int:
        """Have the zygote fork a monitor running *cfg*: its pid, or -1 if the zygote died
        after taking the request (then only the result pipe can tell whether a monitor runs).

        Raises ZygoteError when no monitor was forked; the caller still owns every fd.
        """
        payload, fds = encode_config(cfg)
        with self._lock:
            for attempt in range(2):
                sock = self._ensure()
                try:
                    socket.send_fds(sock, [LEN.pack(len(payload))], fds)
                except OSError as e:
                    # It died while idle: nothing of this request reached it; retry once.
                    self._discard()
                    if attempt:
                        raise ZygoteError(f"monitor zygote: {e}") from e
                    continue
                try:
                    sock.sendall(payload)
                    pid: int = PID.unpack(recv_exact(sock, PID.size))[0]
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
            if recv_exact(ours, 1) != b"r":
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
