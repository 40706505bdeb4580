"""IPv4 and IPv6 address management for one bridge network.

Allocation state is derived from the persisted endpoints (one source of truth:
an address is taken while an endpoint file names it), so a crash can never
leave the allocator and the endpoints disagreeing. Dynamic addresses are handed
out round-robin after the last one given, as libnetwork does, so a freed
address is not reused right away by the next container.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.api.errors import Conflict, InvalidArgument

IPv4 = ipaddress.IPv4Address
IPv6 = ipaddress.IPv6Address
# libnetwork's ULA pool: a /48 under fd00::/8 derived from the daemon's id, split into /64s.
ULA_SIZE = 64


@dataclass(slots=True)
class Pool:
    subnet: ipaddress.IPv4Network
    gateway: IPv4
    ip_range: ipaddress.IPv4Network | None = None
    taken: set[IPv4] = field(default_factory=set)
    last: int = 0  # integer of the last dynamic address handed out

    def _range(self) -> ipaddress.IPv4Network:
        return self.ip_range or self.subnet

    def allocate(self, wanted: str = "") -> IPv4:
        """A free address: *wanted* exactly (Conflict if taken), else the next free one."""
        if wanted:
            try:
                ip = IPv4(wanted)
            except ValueError:
                raise InvalidArgument(f"invalid IPv4 address: {wanted}") from None
            if ip not in self.subnet:
                raise InvalidArgument(
                    f"no configured subnet or ip-range contain the IP address {wanted}")
            if ip in self.taken or ip == self.gateway or ip in _edges(self.subnet):
                raise Conflict(f"Address already in use: {wanted}")
            self.taken.add(ip)
            return ip
        rng = self._range()
        first, last = int(rng.network_address) + 1, int(rng.broadcast_address) - 1
        if rng.prefixlen >= 31:
            first, last = int(rng.network_address), int(rng.broadcast_address)
        n = _scan(first, last, self.last, lambda n: self._free(IPv4(n)))
        if n is None:
            raise Conflict(f"no available IPv4 addresses on this network's address pools: {rng}")
        ip = IPv4(n)
        self.taken.add(ip)
        self.last = n
        return ip

    def _free(self, ip: IPv4) -> bool:
        return not (ip in self.taken or ip == self.gateway or ip in _edges(self.subnet))

    def release(self, ip: str) -> None:
        try:
            self.taken.discard(IPv4(ip))
        except ValueError:
            pass


@dataclass(slots=True)
class Pool6:
    """The IPv6 pool of a network with EnableIPv6: no broadcast address; the subnet's own
    (all-zeros, subnet-router anycast) address is never handed out."""

    subnet: ipaddress.IPv6Network
    gateway: IPv6
    ip_range: ipaddress.IPv6Network | None = None
    taken: set[IPv6] = field(default_factory=set)
    last: int = 0

    def allocate(self, wanted: str = "") -> IPv6:
        """A free address: *wanted* exactly (Conflict if taken), else the next free one."""
        if wanted:
            ip = parse_ipv6(wanted)
            if ip not in self.subnet:
                raise InvalidArgument(
                    f"no configured subnet or ip-range contain the IP address {wanted}")
            if not self._free(ip):
                raise Conflict(f"Address already in use: {wanted}")
            self.taken.add(ip)
            return ip
        rng = self.ip_range or self.subnet
        first, last = int(rng.network_address), int(rng.broadcast_address)
        n = _scan(first, last, self.last, lambda n: self._free(IPv6(n)))
        if n is None:
            raise Conflict(f"no available IPv6 addresses on this network's address pools: {rng}")
        ip = IPv6(n)
        self.taken.add(ip)
        self.last = n
        return ip

    def _free(self, ip: IPv6) -> bool:
        return not (ip in self.taken or ip == self.gateway or ip == self.subnet.network_address)

    def release(self, ip: str) -> None:
        try:
            self.taken.discard(IPv6(ip))
        except ValueError:
            pass


def parse_ipv6(text: str) -> IPv6:
    """An IPv6 address as moby accepts one for an endpoint (no zone, not v4-mapped)."""
    try:
        ip = IPv6(text)
    except ValueError:
        raise InvalidArgument(f"invalid IPv6 address: {text}") from None
    if ip.scope_id or ip.ipv4_mapped is not None or ip.is_unspecified:
        raise InvalidArgument(f"invalid IPv6 address: {text}")
    return ip


def _scan(first: int, last: int, previous: int, free: Callable[[int], bool]) -> int | None:
    """The first free address of [first, last] after *previous* (round robin), else None.
    Stops at the first free one, so a /64 costs as many steps as addresses are taken."""
    size = last - first + 1
    start = previous + 1 if first <= previous < last else first
    i = 0
    while i < size:
        n = first + (start - first + i) % size
        if free(n):
            return n
        i += 1
    return None


def ula_base(seed: str) -> ipaddress.IPv6Network:
    """The engine's own /48 under fd00::/8 (RFC 4193 §3.2.2 style, as moby derives it from
    its host id): stable for one engine, different between engines."""
    gid = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") & ((1 << 40) - 1)
    return ipaddress.IPv6Network((int(IPv6("fd00::")) + (gid << 80), 48))


def pick_subnet6(base: ipaddress.IPv6Network,
                 used: list[ipaddress.IPv6Network]) -> ipaddress.IPv6Network:
    """The first /64 of *base* that overlaps nothing in *used*."""
    for candidate in base.subnets(new_prefix=ULA_SIZE):
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise Conflict("could not find an available, non-overlapping IPv6 address pool among "
                   "the defaults to assign to the network")


def _edges(net: ipaddress.IPv4Network) -> tuple[IPv4, ...]:
    if net.prefixlen >= 31:
        return ()
    return (net.network_address, net.broadcast_address)


def pick_subnet(pools: list[tuple[ipaddress.IPv4Network, int]],
                used: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first subnet of the default address pools that overlaps nothing in *used*.

    *pools* are ``(base, size)`` pairs as dockerd's ``default-address-pools``.
    """
    for base, size in pools:
        for candidate in base.subnets(new_prefix=size):
            if not any(candidate.overlaps(u) for u in used):
                return candidate
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among "
                   "the defaults to assign to the network")


def mac_for(ip: IPv4) -> str:
    """Docker's classic MAC derived from the address: 02:42 + the 4 address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)
