"""Docker's ``NetworkSettings`` of a container for inspect, from its network state, or for
one never started, from the networks its create config asks for."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from runtime.api.errors import NotFound
from runtime.net.model import Net, empty_settings, endpoint_settings
from runtime.net.store import ContainerState


def network_mode(host_config: dict[str, Any]) -> str:
    """``HostConfig.NetworkMode`` with docker's "default" spelled out as "bridge"."""
    mode = str(host_config.get("NetworkMode") or "default")
    return "bridge" if mode == "default" else mode


def planned_state(container_id: str, host_config: dict[str, Any],
                  networking_config: dict[str, Any],
                  find: Callable[[str], Net]) -> ContainerState:
    """The state a not yet started container would have: its wanted networks, in order
    (the mode's first); networks that do not exist (any more) are left out."""
    st = ContainerState(container_id)
    mode = network_mode(host_config)
    if mode.startswith("container:"):
        st.mode = mode
        return st
    try:
        net = find(mode)
    except NotFound:
        return st
    st.mode, st.order, st.wanted = net.id, [net.id], {net.id: {}}
    for key, cfg in ((networking_config or {}).get("EndpointsConfig") or {}).items():
        try:
            other = find(key)
        except NotFound:
            continue
        st.wanted[other.id] = dict(cfg or {})
        if other.id not in st.order:
            st.order.append(other.id)
    return st


def container_settings(st: ContainerState, nets: Mapping[str, Net],
                       default: Net) -> dict[str, Any]:
    """NetworkSettings: one entry a network; the top-level address fields are the default
    bridge's endpoint (docker's legacy fields)."""
    out = empty_settings()
    if st.mode.startswith("container:"):
        return out
    for net_id in st.order or list(st.wanted):
        net = nets.get(net_id)
        if net is None:
            continue
        ep = st.endpoints.get(net_id)
        dns_names = None
        if ep is not None and net.user_defined:
            dns_names = [st.name, *[a for a in ep.aliases if a != st.name]]
        out["Networks"][net.name] = endpoint_settings(net, ep, st.wanted.get(net_id, {}),
                                                      dns_names)
    if st.running:
        out["SandboxID"] = hashlib.sha256(st.container_id.encode()).hexdigest()
        out["SandboxKey"] = st.netns
        out["Ports"] = st.ports_settings
        ep = st.endpoints.get(default.id)
        if ep is not None:
            out.update(EndpointID=ep.endpoint_id, Gateway=ep.gateway, IPAddress=ep.ip,
                       IPPrefixLen=ep.prefixlen, MacAddress=ep.mac, IPv6Gateway=ep.gateway6,
                       GlobalIPv6Address=ep.ip6, GlobalIPv6PrefixLen=ep.prefixlen6)
    return out


def containers_of(net: Net, states: Mapping[str, ContainerState]) -> dict[str, Any]:
    """A network inspect's ``Containers``: who has an endpoint on *net*."""
    out: dict[str, Any] = {}
    for st in states.values():
        ep = st.endpoints.get(net.id)
        # Without an endpoint only host/none (no interfaces) list their running users.
        if ep is None and not (st.running and st.mode == net.id
                               and net.driver in ("host", "null")):
            continue
        out[st.container_id] = {
            "Name": st.name,
            "EndpointID": ep.endpoint_id if ep else "",
            "MacAddress": ep.mac if ep else "",
            "IPv4Address": f"{ep.ip}/{ep.prefixlen}" if ep else "",
            "IPv6Address": f"{ep.ip6}/{ep.prefixlen6}" if ep and ep.ip6 else "",
        }
    return out
