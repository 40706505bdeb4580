"""A container's place on bridge networks: which networks it joins (in order), the endpoint
(address, MAC, veth, aliases) it gets on each, and the packet-filter rules of its
published ports. Plain functions; NetworkManager does the plumbing and holds the lock."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from runtime.api.errors import Forbidden, InvalidArgument
from runtime.net.firewall import PortRule
from runtime.net.ipam import mac_for, parse_ipv6
from runtime.net.model import Net
from runtime.net.plumbing import veth_name
from runtime.net.ports import Binding
from runtime.net.store import ContainerState, Endpoint, new_id


def want_networks(st: ContainerState, mode: str, networking_config: dict[str, Any],
                  find: Callable[[str], Net], nets: Mapping[str, Net]) -> None:
    """Record the wanted networks: the mode's first, then EndpointsConfig's others, then
    those connected while the container was stopped. *find* takes "default" too."""
    primary = find(mode)
    if primary.driver != "bridge":
        raise InvalidArgument(f"container cannot be connected to network {primary.name} "
                              "together with other networks")
    cfgs = (networking_config or {}).get("EndpointsConfig") or {}
    wanted: dict[str, dict[str, Any]] = {}
    order = [primary.id]
    for key, cfg in cfgs.items():
        net = find(key)
        if net.driver != "bridge":
            raise InvalidArgument(f"container cannot be connected to network {net.name}")
        wanted[net.id] = dict(cfg or {})
        if net.id not in order:
            order.append(net.id)
    for net_id, cfg in st.wanted.items():  # connected while stopped
        if net_id in nets and net_id not in wanted:
            wanted[net_id] = cfg
            order.append(net_id)
    wanted.setdefault(primary.id, {})
    st.mode, st.wanted, st.order = primary.id, wanted, order


def check_connectable(st: ContainerState, net: Net, nets: Mapping[str, Net], *,
                      running: bool) -> None:
    """docker's refusals of ``network connect``: only bridge networks, not a container in
    another's (or the host's) namespace, not twice to one network."""
    if net.driver != "bridge":
        raise Forbidden(f"container cannot be disconnected from host network or "
                        f"connected to {net.name} network")
    if st.mode.startswith("container:") or (
            st.mode in nets and nets[st.mode].driver != "bridge"):
        raise Forbidden("container sharing network namespace with another container or "
                        "host cannot be connected to any other network")
    if net.id in st.endpoints or (net.id in st.wanted and not running):
        raise Forbidden(f"endpoint with name {st.name} already exists in network "
                        f"{net.name}")


def new_endpoint(st: ContainerState, net: Net, ifname: str, cfg: dict[str, Any],
                 config: dict[str, Any], *, first: bool) -> Endpoint:
    """The endpoint of the container on *net*, its address taken from the pool. *cfg* is
    the network's EndpointSettings, *config* the container's Config (its MacAddress is the
    first network's)."""
    assert net.pool is not None
    ipam = cfg.get("IPAMConfig") or {}
    wanted_ip = str(ipam.get("IPv4Address") or "")
    wanted_ip6 = str(ipam.get("IPv6Address") or "")
    if not net.user_defined and (wanted_ip or wanted_ip6 or cfg.get("Aliases")):
        what = "IP address" if wanted_ip or wanted_ip6 else "network-scoped alias"
        raise InvalidArgument(f"user specified {what} is supported on user defined "
                              "networks only")
    if wanted_ip6:
        check_ipv6_request(net, wanted_ip6)
    ip = net.pool.allocate(wanted_ip)
    ip6: ipaddress.IPv6Address | None = None
    if net.pool6 is not None:
        try:
            ip6 = net.pool6.allocate(wanted_ip6)
        except BaseException:
            net.pool.release(str(ip))  # not an endpoint yet: nothing else would free it
            raise
    mac = str(cfg.get("MacAddress") or (config.get("MacAddress") if first else "") or "")
    return Endpoint(
        network_id=net.id, endpoint_id=new_id(), ip=str(ip),
        prefixlen=net.pool.subnet.prefixlen, gateway=str(net.pool.gateway),
        mac=mac or mac_for(ip), ifname=ifname, veth=veth_name(st.container_id, net.id),
        aliases=_aliases(st, net, cfg), ipam_config=cfg.get("IPAMConfig") or None,
        ip6=str(ip6) if ip6 else "",
        prefixlen6=net.pool6.subnet.prefixlen if ip6 and net.pool6 else 0,
        gateway6=str(net.pool6.gateway) if ip6 and net.pool6 else "")


def check_ipv6_request(net: Net, wanted: str) -> None:
    """moby's checks of a requested IPv6Address (validateEndpointIPAddress): a valid
    address inside one of the IPv6 subnets the user configured on the network, whether
    or not it has EnableIPv6 (without, the address is accepted and left unused)."""
    ip = parse_ipv6(wanted)
    subnets = net.static_subnets6()
    if not subnets:
        raise InvalidArgument("user specified IP address is supported only when connecting "
                              "to networks with user configured subnets")
    if not any(ip in s for s in subnets):
        raise InvalidArgument(f"no configured subnet or ip-range contain the IP address "
                              f"{wanted}")


def _aliases(st: ContainerState, net: Net, cfg: dict[str, Any]) -> list[str]:
    aliases = [str(a) for a in (cfg.get("Aliases") or [])]
    if net.user_defined and st.container_id[:12] not in aliases:
        aliases.append(st.container_id[:12])  # API < 1.45 lists the short id too
    return aliases


def interface_address(ep: Endpoint) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{ep.ip}/{ep.prefixlen}")


def interface_address6(ep: Endpoint) -> ipaddress.IPv6Interface | None:
    return ipaddress.IPv6Interface(f"{ep.ip6}/{ep.prefixlen6}") if ep.ip6 else None


def port_rules(st: ContainerState) -> list[PortRule]:
    """DNAT rules of the container's published ports, to its first network's address."""
    ep = st.endpoints.get(st.order[0]) if st.order else None
    if ep is None:
        return []
    return [PortRule(b.proto, b.host_ip, b.host_port, ep.ip, b.ctr_port)
            for b in map(Binding.from_json, st.ports)]
