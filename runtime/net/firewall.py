"""Cove's nftables table: NAT, isolation between networks, published ports.

Everything lives in one table of our own (``ip cove`` by default; tests use
their own name). The rules are fixed; networks and ports are *set and map
elements*, so attaching a network or publishing a port is one tiny transaction
that never needs rule handles, and removing our table removes all of it.

- ``bridges``/``pairs``: every Cove bridge; traffic between two different ones
  is dropped (Docker's isolation), traffic within one is accepted.
- ``internal``: bridges of ``--internal`` networks; nothing is forwarded in or out.
- ``nat_subnets``: subnets masqueraded when leaving through a non-Cove interface.
- ``pub_*``: published ports, DNAT'ed for packets to any local address, from
  outside (prerouting) and from the host itself (output). 127.0.0.1 works because
  the bridges have ``route_localnet`` and loopback sources get masqueraded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from runtime.net.nftlib import Nft

_SKELETON = """
table ip {t} {{
  set bridges {{ type ifname; }}
  set internal {{ type ifname; }}
  set pairs {{ type ifname . ifname; }}
  set subnets {{ type ipv4_addr; flags interval; }}
  set nat_subnets {{ type ipv4_addr; flags interval; }}
  map pub_tcp {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}
  map pub_any_tcp {{ type inet_service : ipv4_addr . inet_service; }}
  map pub_udp {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}
  map pub_any_udp {{ type inet_service : ipv4_addr . inet_service; }}
  chain publish {{
    dnat ip to ip daddr . tcp dport map @pub_tcp
    dnat ip to tcp dport map @pub_any_tcp
    dnat ip to ip daddr . udp dport map @pub_udp
    dnat ip to udp dport map @pub_any_udp
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local jump publish
  }}
  chain output {{
    type nat hook output priority -100; policy accept;
    fib daddr type local jump publish
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 127.0.0.0/8 oifname @bridges masquerade
    ct status dnat oifname @bridges ip saddr @subnets masquerade
    ip saddr @nat_subnets oifname != @bridges masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    ct status dnat oifname != @internal accept
    iifname . oifname @pairs accept
    iifname @internal drop
    oifname @internal drop
    iifname @bridges oifname @bridges drop
  }}
}}
"""


@dataclass(frozen=True, slots=True)
class BridgeRules:
    bridge: str
    subnet: ipaddress.IPv4Network
    internal: bool
    nat: bool = True


@dataclass(frozen=True, slots=True)
class PortRule:
    proto: str  # "tcp" | "udp"
    host_ip: str  # "" or "0.0.0.0" for every local address
    host_port: int
    ctr_ip: str
    ctr_port: int

    def key(self) -> str:
        if self.host_ip in ("", "0.0.0.0"):
            return str(self.host_port)
        return f"{self.host_ip} . {self.host_port}"

    def map_name(self) -> str:
        if self.host_ip in ("", "0.0.0.0"):
            return f"pub_any_{self.proto}"
        return f"pub_{self.proto}"


class Firewall:
    def __init__(self, table: str = "cove", nft: Nft | None = None) -> None:
        self.table = table
        self._nft = nft or Nft()

    def _t(self) -> str:
        return f"ip {self.table}"

    def rebuild(self, bridges: Iterable[BridgeRules], ports: Iterable[PortRule]) -> None:
        """Replace the whole table atomically with the given state (engine start)."""
        script = f"table {self._t()} {{}}\ndelete table {self._t()}\n"
        script += _SKELETON.format(t=self.table)
        script += "".join(self._bridge_lines("add", b) for b in bridges)
        script += self._port_lines("add", ports)
        self._nft.run(script)

    def destroy(self) -> None:
        self._nft.run(f"table {self._t()} {{}}\ndelete table {self._t()}\n")

    def add_bridge(self, rules: BridgeRules) -> None:
        self._nft.run(self._bridge_lines("add", rules))

    def remove_bridge(self, rules: BridgeRules) -> None:
        self._nft.run(self._bridge_lines("delete", rules))

    def publish(self, ports: Iterable[PortRule]) -> None:
        self._nft.run(self._port_lines("add", ports))

    def unpublish(self, ports: Iterable[PortRule]) -> None:
        """Remove port elements; ones already gone are ignored (teardown is idempotent)."""
        ports = list(ports)
        try:
            self._nft.run(self._port_lines("delete", ports))
        except Exception:
            for p in ports:  # one of them was missing: the transaction was rolled back
                try:
                    self._nft.run(self._port_lines("delete", [p]))
                except Exception:
                    pass

    def _bridge_lines(self, verb: str, b: BridgeRules) -> str:
        t, name = self._t(), f'"{b.bridge}"'
        lines = [
            f"{verb} element {t} bridges {{ {name} }}",
            f"{verb} element {t} pairs {{ {name} . {name} }}",
            f"{verb} element {t} subnets {{ {b.subnet} }}",
        ]
        if b.internal:
            lines.append(f"{verb} element {t} internal {{ {name} }}")
        elif b.nat:
            lines.append(f"{verb} element {t} nat_subnets {{ {b.subnet} }}")
        return "\n".join(lines) + "\n"

    def _port_lines(self, verb: str, ports: Iterable[PortRule]) -> str:
        out = []
        for p in ports:
            value = f" : {p.ctr_ip} . {p.ctr_port}" if verb == "add" else ""
            out.append(f"{verb} element {self._t()} {p.map_name()} {{ {p.key()}{value} }}\n")
        return "".join(out)

    def listing(self) -> str:
        return self._nft.run(f"list table {self._t()}")
