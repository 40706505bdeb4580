"""Kernel plumbing: bridges, sandboxes (pinned netns files) and veth endpoints, via netlink.

No policy here (the manager decides addresses and names); every operation is a
few netlink messages, no subprocess.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runtime.net import _sys
from runtime.net.netlink import Netlink, NetlinkError

SYSCTL = "/proc/sys/net/ipv4"
SYSCTL6 = "/proc/sys/net/ipv6"


def veth_name(container_id: str, network_id: str) -> str:
    """Stable host-side name (15 chars max) so a restart can find it again."""
    digest = hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()
    return f"cv{digest[:11]}"


def write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read_sysctl(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _enable_ipv6(*devices: str) -> None:
    """``disable_ipv6=0`` on *devices* ("all" included) of the calling thread's network
    namespace: an address cannot be added while it is 1 (a host booted with IPv6 off
    on new interfaces)."""
    if not os.path.isdir(SYSCTL6):
        raise OSError(errno.EAFNOSUPPORT, "IPv6 is disabled in this kernel (no "
                      f"{SYSCTL6}): networks with EnableIPv6 cannot be used")
    for dev in devices:
        path = f"{SYSCTL6}/conf/{dev}/disable_ipv6"
        if read_sysctl(path) != "0":
            write_sysctl(path, "0")


@dataclass(slots=True)
class Sandbox:
    """A container's network namespace, opened for configuration."""

    path: str
    fd: int
    inner: Netlink


class Plumbing:
    def __init__(self) -> None:
        self.nl = Netlink()
        self._index: dict[str, int] = {}

    def close(self) -> None:
        self.nl.close()

    # -- bridges --
    def ensure_bridge(self, name: str, gateway: ipaddress.IPv4Interface,
                      mtu: int | None = None,
                      gateway6: ipaddress.IPv6Interface | None = None) -> int:
        """Create (or adopt) the bridge with the gateway address(es), up, with
        route_localnet."""
        link = self.nl.link(name)
        if link is None:
            try:
                self.nl.add_bridge(name, mtu=mtu)
            except NetlinkError as e:
                if e.errno != 17:  # EEXIST: raced with ourselves
                    raise
            link = self.nl.link(name)
            assert link is not None
        if gateway not in self.nl.addresses(link.index):
            self.nl.add_address(link.index, gateway)
        if gateway6 is not None:
            _enable_ipv6(name)  # our bridge only; the host's all/default stay as they are
            if gateway6 not in self.nl.addresses6(link.index):
                self.nl.add_address(link.index, gateway6)
        if not link.up:
            self.nl.set_up(link.index)
        # Lets DNAT'ed 127.0.0.1 connections leave through the bridge (then masqueraded).
        write_sysctl(f"{SYSCTL}/conf/{name}/route_localnet", "1")
        self._index[name] = link.index
        return link.index

    def bridge_index(self, name: str) -> int:
        idx = self._index.get(name)
        if idx is None:
            idx = self.nl.index(name)
            self._index[name] = idx
        return idx

    def delete_bridge(self, name: str) -> None:
        self._index.pop(name, None)
        self.nl.delete_link(name)

    # -- sandboxes --
    @contextmanager
    def create_sandbox(self, path: str) -> Iterator[Sandbox]:
        """A fresh pinned netns with lo up; the caller removes the file on failure."""
        if os.path.lexists(path):
            _sys.remove_netns(path)
        fd = _sys.new_netns(path)
        try:
            with _sys.in_netns(fd):
                inner = Netlink()
            try:
                inner.set_up(1)
                yield Sandbox(path, fd, inner)
            finally:
                inner.close()
        finally:
            os.close(fd)

    @contextmanager
    def open_sandbox(self, path: str) -> Iterator[Sandbox]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with _sys.in_netns(fd):
                inner = Netlink()
            try:
                yield Sandbox(path, fd, inner)
            finally:
                inner.close()
        finally:
            os.close(fd)

    @staticmethod
    def remove_sandbox(path: str) -> None:
        """Unpin; the kernel then destroys the netns and with it our veth ends."""
        _sys.remove_netns(path)

    # -- endpoints --
    def attach(self, sb: Sandbox, *, veth: str, ifname: str, bridge: str, mac: str,
               address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address | None,
               mtu: int | None, address6: ipaddress.IPv6Interface | None = None,
               gateway6: ipaddress.IPv6Address | None = None) -> None:
        """The container's end *ifname* in the sandbox, up with its address(es); the
        default route(s) via the gateway(s) given."""
        if self.nl.link(veth) is not None:
            self.nl.delete_link(veth)  # a leftover of a crash with the same name
        self.nl.add_veth(veth, ifname, peer_ns_fd=sb.fd, peer_mac=mac,
                         master=self.bridge_index(bridge), mtu=mtu)
        idx = sb.inner.index(ifname)
        sb.inner.add_address(idx, address)
        if address6 is not None:
            with _sys.in_netns(sb.fd):  # the sysctls of the sandbox, never the host's
                _enable_ipv6("all", ifname)
            sb.inner.add_address(idx, address6)
        sb.inner.set_up(idx)
        if gateway is not None:
            sb.inner.add_default_route(gateway, idx)
        if address6 is not None and gateway6 is not None:
            sb.inner.add_default_route(gateway6, idx)

    def detach(self, veth: str) -> None:
        self.nl.delete_link(veth)

    def free_ifname(self, sb: Sandbox) -> str:
        names = {link.name for link in sb.inner.links()}
        n = 0
        while f"eth{n}" in names:
            n += 1
        return f"eth{n}"

    def stale_veths(self, bridges: set[str], keep: set[str]) -> list[str]:
        """Veths enslaved to one of *bridges* that no live endpoint owns."""
        indexes = {link.index for link in self.nl.links() if link.name in bridges}
        return [link.name for link in self.nl.links()
                if link.kind == "veth" and link.master in indexes and link.name not in keep]
