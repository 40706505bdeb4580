"""IPv4 address management for one bridge network.

Allocation state is derived from the persisted endpoints (one source of truth:
an address is taken while an endpoint file names it), so a crash can never
leave the allocator and the endpoints disagreeing. Dynamic addresses are handed
out round-robin after the last one given, as libnetwork does, so a freed
address is not reused right away by the next container.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from runtime.api.errors import Conflict, InvalidArgument

IPv4 = ipaddress.IPv4Address


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
        size = last - first + 1
        start = self.last + 1 if first <= self.last < last else first
        for i in range(size):
            n = first + (start - first + i) % size
            ip = IPv4(n)
            if ip in self.taken or ip == self.gateway or ip in _edges(self.subnet):
                continue
            self.taken.add(ip)
            self.last = n
            return ip
        raise Conflict(f"no available IPv4 addresses on this network's address pools: {rng}")

    def release(self, ip: str) -> None:
        try:
            self.taken.discard(IPv4(ip))
        except ValueError:
            pass


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
