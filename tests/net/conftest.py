"""Fixtures for networking tests: a NetworkManager on a test-only bridge, table and subnet.

Everything a test creates lives on bridges and namespaces the manager made;
``purge()`` at the end removes them, the nft table, the netns pins, and puts
``net.ipv4.ip_forward`` back the way it was.
"""

from __future__ import annotations

import contextlib
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
from runtime.net.iptables import chain_prefix

BRIDGE = f"cvt{os.getpid() % 100000}"
TABLE = f"covetest{os.getpid()}"
CIDR = "10.231.7.1/24"
POOLS = "10.232.0.0/16"


class FakeUpstream:
    """A DNS server on 127.0.0.1 (UDP and TCP, same port): A queries get 127.0.0.7, names
    starting with ``nx`` an authoritative NXDOMAIN. It records what it was asked."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.port = self.tcp.getsockname()[1]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.queries: list[bytes] = []
        self.tcp_queries: list[bytes] = []
        for target in (self._serve, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    def reply(self, data: bytes) -> bytes | None:
        import ipaddress

        from runtime.net.dns import answer, failure, parse_question

        parsed = parse_question(data)
        if parsed is None:
            return None
        if parsed[0].startswith("nx"):
            reply = bytearray(failure(data, 3))
            reply[2] |= 0x04  # authoritative
            return bytes(reply)
        return answer(data, parsed[2], parsed[1], [ipaddress.IPv4Address("127.0.0.7")])

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries.append(data)
            reply = self.reply(data)
            if reply is not None:
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, addr)

    def _serve_tcp(self) -> None:
        from runtime.net.dns import read_tcp_message, tcp_frame

        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError, ConnectionError):
                data = read_tcp_message(conn)
                self.tcp_queries.append(data)
                conn.sendall(tcp_frame(self.reply(data) or b""))

    def close(self) -> None:
        self.sock.close()
        self.tcp.close()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream()
    yield up
    up.close()


@pytest.fixture
def layout(tmp_path: Path) -> EngineLayout:
    return EngineLayout(tmp_path / "data", tmp_path / "exec")


@pytest.fixture(params=["nftables", "iptables"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every manager test runs on both packet-filter backends (backends.py reads the env)."""
    choice = str(request.param)
    monkeypatch.setenv("COVE_FIREWALL", choice)
    return choice


@pytest.fixture
def manager(layout: EngineLayout, upstream: FakeUpstream, backend: str) -> Iterator[Any]:
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


def our_iptables_rules() -> str:
    """Every line of iptables-save (both tables) that mentions this test's chains."""
    prefix = chain_prefix(TABLE)
    out = ""
    for table in ("nat", "filter"):
        text = subprocess.run(["iptables-save", "-t", table], capture_output=True,
                              text=True).stdout
        out += "".join(ln + "\n" for ln in text.splitlines() if prefix in ln)
    return out


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


def dns_query(name: str, qtype: int = 1) -> bytes:
    q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", qtype, 1)


@pytest.fixture
def private_engine(tmp_path: Path, busybox_tar: Path) -> Iterator[Any]:
    """An engine of the test's own, for tests that stop, kill or restart it."""
    from tests.harness import EngineProcess

    eng = EngineProcess(tmp_path / "engine")
    eng.start()
    eng.import_image(busybox_tar, "busybox")
    try:
        yield eng
    finally:
        if eng.proc is None:
            with contextlib.suppress(Exception):
                eng.start()  # cleanup() removes containers and networks through the engine
        eng.cleanup()
