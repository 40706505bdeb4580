"""Fixtures for networking tests: a NetworkManager on a test-only bridge, table and subnet.

Everything a test creates lives on bridges and namespaces the manager made;
``purge()`` at the end removes them, the nft table, the netns pins, and puts
``net.ipv4.ip_forward`` back the way it was.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.events import EventBus
from runtime.layout import EngineLayout

BRIDGE = f"cvt{os.getpid() % 100000}"
TABLE = f"covetest{os.getpid()}"
CIDR = "10.231.7.1/24"
POOLS = "10.232.0.0/16"


class FakeUpstream:
    """A DNS server on 127.0.0.1 that answers every A query with 127.0.0.7."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        from runtime.net.dns import answer, parse_question

        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries.append(data)
            parsed = parse_question(data)
            if parsed:
                import ipaddress

                reply = answer(data, parsed[2], parsed[1], [ipaddress.IPv4Address("127.0.0.7")])
                try:
                    self.sock.sendto(reply, addr)
                except OSError:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream()
    yield up
    up.close()


@pytest.fixture
def layout(tmp_path: Path) -> EngineLayout:
    return EngineLayout(tmp_path / "data", tmp_path / "exec")


@pytest.fixture
def manager(layout: EngineLayout, upstream: FakeUpstream) -> Iterator[Any]:
    import ipaddress

    from runtime.net.manager import NetworkManager

    forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    m = NetworkManager(layout, EventBus(), bridge_name=BRIDGE, bridge_cidr=CIDR, nft_table=TABLE,
                       default_pools=[(ipaddress.IPv4Network(POOLS), 24)],
                       dns_upstreams=[("127.0.0.1", upstream.port)])
    m.restore(set())
    try:
        yield m
    finally:
        m.purge()
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward_before


def in_ns(netns: str, *argv: str, timeout: float = 10,
          check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={netns}", *argv], capture_output=True, text=True,
                          timeout=timeout, check=check)


def setup(m: Any, cid: str, name: str = "", **host_config: Any) -> Any:
    networking = host_config.pop("networking_config", {})
    config = host_config.pop("config", {})
    return m.setup(cid, name=name or cid[:6], hostname=cid[:12], domainname="", config=config,
                   host_config=host_config, networking_config=networking,
                   resolve_container=lambda ref: (ref, 0))


def cid(n: int) -> str:
    return f"{n:x}".rjust(2, "0") * 32


def dns_query(name: str) -> bytes:
    q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)
