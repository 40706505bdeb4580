"""Listening TCP ports from /proc/net/tcp{,6} (Lima's comparePorts, in Python).

Only sockets in state LISTEN (0A) count. A port bound on several addresses (0.0.0.0 and
::, say) is one :class:`Port`, because the host forwards it once, on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from guestagent.protocol import Port

TCP_LISTEN = "0A"
PROC_FILES = ("/proc/net/tcp", "/proc/net/tcp6")


def parse_proc_net_tcp(text: str) -> set[Port]:
    """Ports in LISTEN state from one /proc/net/tcp-style table (the header line is skipped)."""
    found: set[Port] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != TCP_LISTEN:
            continue
        _addr, _, port_hex = fields[1].rpartition(":")
        try:
            found.add(Port(proto="tcp", port=int(port_hex, 16)))
        except ValueError:
            continue
    return found


def listening_ports(files: Iterable[str | Path] = PROC_FILES) -> set[Port]:
    ports: set[Port] = set()
    for name in files:
        try:
            ports |= parse_proc_net_tcp(Path(name).read_text())
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
    return ports


def diff(old: set[Port], new: set[Port]) -> tuple[list[Port], list[Port]]:
    """(opened, closed), each sorted, between two observations."""
    return sorted(new - old), sorted(old - new)
