"""Published ports: parse Docker's PortBindings/ExposedPorts, pick host ports, detect conflicts.

Ports are forwarded by kernel DNAT (see firewall.py), which holds no socket, so
conflicts are found two ways: against Cove's own allocations, and by probing a
bind on the host (a listener of another program means "address already in use").
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import Conflict, InvalidArgument

EPHEMERAL_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


@dataclass(frozen=True, slots=True)
class Wanted:
    """One requested binding: container port/proto to host ip and port (range)."""

    proto: str
    ctr_port: int
    host_ip: str  # "" = every address
    lo: int  # 0 = any free port
    hi: int


@dataclass(frozen=True, slots=True)
class Binding:
    proto: str
    ctr_port: int
    host_ip: str
    host_port: int

    def to_json(self) -> list[Any]:
        return [self.proto, self.ctr_port, self.host_ip, self.host_port]

    @staticmethod
    def from_json(v: list[Any]) -> Binding:
        return Binding(str(v[0]), int(v[1]), str(v[2]), int(v[3]))


def parse_port_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` → (80, "tcp"); ranges in keys are expanded by the clients already."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    try:
        n = int(port)
    except ValueError:
        raise InvalidArgument(f"invalid containerPort: {port}") from None
    if not 0 < n < 65536:
        raise InvalidArgument(f"invalid containerPort: {port}")
    return n, proto


def _host_range(spec: str) -> tuple[int, int]:
    if not spec:
        return 0, 0
    lo_s, _, hi_s = spec.partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if hi_s else lo
    except ValueError:
        raise InvalidArgument(f"invalid hostPort: {spec}") from None
    if not (0 <= lo <= hi < 65536):
        raise InvalidArgument(f"invalid hostPort: {spec}")
    return lo, hi


def wanted_ports(config: dict[str, Any], host_config: dict[str, Any]) -> list[Wanted]:
    out: list[Wanted] = []
    bindings = host_config.get("PortBindings") or {}
    for key, binds in bindings.items():
        port, proto = parse_port_key(key)
        for b in binds or [{}]:
            host_ip = (b or {}).get("HostIp") or ""
            if host_ip:
                try:
                    if ipaddress.ip_address(host_ip).version == 6:
                        continue  # IPv4-only engine: "::" bindings come next to 0.0.0.0 ones
                except ValueError:
                    raise InvalidArgument(f"invalid host IP: {host_ip}") from None
            lo, hi = _host_range(str((b or {}).get("HostPort") or ""))
            out.append(Wanted(proto, port, host_ip, lo, hi))
    if host_config.get("PublishAllPorts"):
        for key in exposed_keys(config, host_config):
            if key not in bindings:
                port, proto = parse_port_key(key)
                out.append(Wanted(proto, port, "", 0, 0))
    return [w for w in out if w.proto != "sctp"]


def exposed_keys(config: dict[str, Any], host_config: dict[str, Any]) -> list[str]:
    keys = list((config.get("ExposedPorts") or {}).keys())
    for key in (host_config.get("PortBindings") or {}):
        if key not in keys:
            keys.append(key)
    return [k if "/" in k else f"{k}/tcp" for k in keys]


def ephemeral_range() -> tuple[int, int]:
    try:
        with open(EPHEMERAL_FILE) as f:
            lo, hi = f.read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _overlaps(a_ip: str, b_ip: str) -> bool:
    any_ips = ("", "0.0.0.0")
    return a_ip in any_ips or b_ip in any_ips or a_ip == b_ip


def host_port_free(proto: str, host_ip: str, port: int) -> bool:
    """Probe with a bind: SO_REUSEADDR so TIME_WAIT leftovers do not count, listeners do."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip or "0.0.0.0", port))
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"host IP {host_ip} is not an address of this host") from None
        raise
    finally:
        s.close()
    return True


class PortAllocator:
    """Host ports in use by Cove containers (rebuilt from endpoints at engine start)."""

    def __init__(self) -> None:
        self.used: set[Binding] = set()
        self._next = 0

    def _taken(self, proto: str, host_ip: str, port: int) -> bool:
        return any(b.proto == proto and b.host_port == port and _overlaps(b.host_ip, host_ip)
                   for b in self.used)

    def allocate(self, wanted: Iterable[Wanted]) -> list[Binding]:
        """All or nothing: on a conflict, what this call took is given back."""
        got: list[Binding] = []
        try:
            for w in wanted:
                got.append(self._one(w))
        except BaseException:
            self.release(got)
            raise
        return got

    def _one(self, w: Wanted) -> Binding:
        shown = w.host_ip or "0.0.0.0"
        if w.lo and w.lo == w.hi:
            if self._taken(w.proto, w.host_ip, w.lo):
                raise Conflict(f"Bind for {shown}:{w.lo} failed: port is already allocated")
            if not host_port_free(w.proto, w.host_ip, w.lo):
                raise Conflict(f"failed to bind host port {shown}:{w.lo}/{w.proto}: "
                               "address already in use")
            return self._take(w, w.lo)
        lo, hi = (w.lo, w.hi) if w.lo else ephemeral_range()
        size = hi - lo + 1
        start = self._next if lo <= self._next <= hi else lo
        for i in range(size):
            port = lo + (start - lo + i) % size
            if not self._taken(w.proto, w.host_ip, port) and host_port_free(
                    w.proto, w.host_ip, port):
                self._next = port + 1
                return self._take(w, port)
        raise Conflict(f"Bind for {shown}:{lo}-{hi} failed: all ports are allocated")

    def _take(self, w: Wanted, port: int) -> Binding:
        b = Binding(w.proto, w.ctr_port, w.host_ip, port)
        self.used.add(b)
        return b

    def release(self, bindings: Iterable[Binding]) -> None:
        for b in bindings:
            self.used.discard(b)


def ports_settings(config: dict[str, Any], host_config: dict[str, Any],
                   bindings: list[Binding]) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports: every exposed port, null when not published."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for key in exposed_keys(config, host_config):
        out[key] = None
    for b in bindings:
        key = f"{b.ctr_port}/{b.proto}"
        entry = {"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)}
        current = out.get(key)
        if current is None:
            out[key] = [entry]
        else:
            current.append(entry)
    return out
