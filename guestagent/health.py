"""Engine liveness and the guest's resource report (``guestagent info``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path


def engine_ping(path: str, timeout: float = 2.0) -> bool:
    """True when the engine answers ``GET /_ping`` with 200 on its socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n")
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.") and head[9:12] == b"200"


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskUsage:
    path: str
    total: int
    used: int
    free: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    engine_up: bool
    uptime: float
    time: float
    mem_total: int
    mem_available: int
    load1: float
    disks: tuple[DiskUsage, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


def _uptime() -> float:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def collect(engine_socket: str, disk_paths: tuple[str, ...]) -> Info:
    mem = _meminfo()
    disks = []
    for p in disk_paths:
        try:
            u = shutil.disk_usage(p)
        except OSError:
            continue
        disks.append(DiskUsage(path=p, total=u.total, used=u.used, free=u.free))
    return Info(
        engine_up=engine_ping(engine_socket),
        uptime=_uptime(),
        time=time.time(),
        mem_total=mem.get("MemTotal", 0),
        mem_available=mem.get("MemAvailable", 0),
        load1=os.getloadavg()[0],
        disks=tuple(disks),
    )
