"""What the embedded DNS asks of the network state: the addresses a name has for the asking
container, the name an address has (PTR), and whether the asker may reach the outside.

Plain functions over the manager's container states and networks; NetworkManager calls
them holding its lock (dns.py calls the manager from its own thread).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from runtime.net.model import Net
from runtime.net.store import ContainerState

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve_name(states: Mapping[str, ContainerState], nets: Mapping[str, Net],
                 container_id: str, qname: str) -> list[Address] | None:
    """A/AAAA: addresses (IPv4 and IPv6) of *qname* on the asker's user networks, None if
    it has none."""
    st = states.get(container_id)
    if st is None:
        return None
    user_nets = [nets[n] for n in st.endpoints if n in nets and nets[n].user_defined]
    # libnetwork tries the asker's own link aliases first (``--link name:alias`` is
    # an alias local to the linking endpoint), then the names everyone can see.
    found: list[Address] = []
    for net in user_nets:
        target = link_target(st.wanted.get(net.id) or {}, qname, net.name.lower())
        found += lookup_on(states, net, target) if target else []
    if not found:
        for net in user_nets:
            found += lookup_on(states, net, qname)
    return found or None


def lookup_on(states: Mapping[str, ContainerState], net: Net,
              qname: str) -> list[Address]:
    """Addresses on *net* of the containers called *qname* (name, alias, short id)."""
    found: list[Address] = []
    for other in states.values():
        ep = other.endpoints.get(net.id)
        if ep is None:
            continue
        names = {other.name.lower(), other.container_id[:12],
                 f"{other.name.lower()}.{net.name.lower()}"}
        names.update(a.lower() for a in ep.aliases)
        if qname in names:
            found.append(ipaddress.IPv4Address(ep.ip))
            if ep.ip6:
                found.append(ipaddress.IPv6Address(ep.ip6))
    return found


def resolve_ip(states: Mapping[str, ContainerState], nets: Mapping[str, Net],
               container_id: str, ip: Address) -> str | None:
    """PTR: ``name.network`` of the container holding *ip* on one of the asker's
    user networks (Docker's answer), else None (forwarded)."""
    wanted = str(ip)
    st = states.get(container_id)
    if st is None:
        return None
    for net_id in st.endpoints:
        net = nets.get(net_id)
        if net is None or not net.user_defined:
            continue
        for other in states.values():
            ep = other.endpoints.get(net_id)
            if ep is not None and wanted in (ep.ip, ep.ip6):
                return f"{other.name}.{net.name}"
    return None


def only_internal(st: ContainerState | None, nets: Mapping[str, Net]) -> bool:
    """True for a container only on --internal networks: Docker does not proxy DNS out of
    those (the asker gets SERVFAIL)."""
    on = [nets[n] for n in (st.endpoints if st else {}) if n in nets]
    return bool(on) and all(n.internal for n in on)


def link_target(endpoint_config: dict[str, Any], qname: str, net_name: str) -> str | None:
    """The container name that *qname* stands for through one of the endpoint's legacy
    links (``EndpointSettings.Links``: ``name:alias``, or ``alias.network``), else None."""
    for spec in endpoint_config.get("Links") or []:
        name, _, alias = str(spec).partition(":")
        name = name.strip("/").lower()
        alias = (alias or name).strip("/").rsplit("/", 1)[-1].lower()
        if qname in (alias, f"{alias}.{net_name}"):
            return name
    return None
