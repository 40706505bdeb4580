"""Docker's JSON shapes for networks and endpoints, and the pure validation of create requests."""

from __future__ import annotations

import contextlib
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import Forbidden, InvalidArgument, NotFound
from runtime.net.ipam import Pool, pick_subnet
from runtime.net.store import Endpoint

PREDEFINED = ("bridge", "host", "none")
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"


def rfc3339_now() -> str:
    t = time.time()
    frac = f"{t % 1:.9f}"[2:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{frac}Z"


@dataclass(slots=True)
class Net:
    """A network as the manager keeps it: the Docker record plus, for bridges, its pool."""

    record: dict[str, Any]
    pool: Pool | None

    @property
    def id(self) -> str:
        return str(self.record["Id"])

    @property
    def name(self) -> str:
        return str(self.record["Name"])

    @property
    def driver(self) -> str:
        return str(self.record["Driver"])

    @property
    def bridge(self) -> str:
        return str(self.record.get("_bridge", ""))

    @property
    def internal(self) -> bool:
        return bool(self.record.get("Internal"))

    @property
    def nat(self) -> bool:
        opts = self.record.get("Options") or {}
        return not self.internal and str(opts.get(OPT_MASQ, "true")).lower() != "false"

    @property
    def mtu(self) -> int | None:
        raw = (self.record.get("Options") or {}).get(OPT_MTU)
        try:
            return int(raw) if raw else None
        except ValueError:
            return None

    @property
    def user_defined(self) -> bool:
        return self.driver == "bridge" and self.name != "bridge"

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.record.items() if not k.startswith("_")}


def make_pool(record: dict[str, Any]) -> Pool | None:
    configs = (record.get("IPAM") or {}).get("Config") or []
    if record.get("Driver") != "bridge" or not configs:
        return None
    c = configs[0]
    subnet = ipaddress.IPv4Network(c["Subnet"], strict=False)
    gateway = ipaddress.IPv4Address(c.get("Gateway") or subnet.network_address + 1)
    rng = ipaddress.IPv4Network(c["IPRange"], strict=False) if c.get("IPRange") else None
    pool = Pool(subnet, gateway, rng)
    # Auxiliary addresses belong to devices outside Docker: never hand them out.
    for addr in (c.get("AuxiliaryAddresses") or {}).values():
        with contextlib.suppress(ValueError):
            pool.taken.add(ipaddress.IPv4Address(addr))
    return pool


def network_record(*, net_id: str, name: str, driver: str, subnet: str = "", gateway: str = "",
                   ip_range: str = "", internal: bool = False, attachable: bool = False,
                   options: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                   bridge: str = "", ipam_options: dict[str, str] | None = None,
                   aux_addresses: dict[str, str] | None = None) -> dict[str, Any]:
    config: list[dict[str, Any]] = []
    if subnet:
        entry: dict[str, Any] = {"Subnet": subnet, "Gateway": gateway}
        if ip_range:
            entry["IPRange"] = ip_range
        if aux_addresses:
            entry["AuxiliaryAddresses"] = dict(aux_addresses)
        config.append(entry)
    rec: dict[str, Any] = {
        "Name": name, "Id": net_id, "Created": rfc3339_now(), "Scope": "local",
        "Driver": driver, "EnableIPv4": True, "EnableIPv6": False,
        # IPAM options come back as given: null when the client sent none (moby).
        "IPAM": {"Driver": "default", "Options": ipam_options, "Config": config},
        "Internal": internal, "Attachable": attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Options": options or {}, "Labels": labels or {},
    }
    if bridge:
        rec["_bridge"] = bridge
    return rec


def default_bridge_record(net_id: str, *, subnet: str, gateway: str,
                          bridge: str) -> dict[str, Any]:
    """The predefined "bridge" network, with the options docker's default bridge shows."""
    return network_record(
        net_id=net_id, name="bridge", driver="bridge",
        subnet=subnet, gateway=gateway, bridge=bridge,
        options={
            "com.docker.network.bridge.default_bridge": "true",
            "com.docker.network.bridge.enable_icc": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "true",
            "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
            OPT_BRIDGE_NAME: bridge,
            "com.docker.network.driver.mtu": "1500",
        })


@dataclass(frozen=True, slots=True)
class CreateRequest:
    name: str
    internal: bool
    attachable: bool
    options: dict[str, str]
    labels: dict[str, str]
    subnet: ipaddress.IPv4Network | None
    gateway: ipaddress.IPv4Address | None
    ip_range: ipaddress.IPv4Network | None
    ipam_options: dict[str, str] | None = None
    aux_addresses: dict[str, str] | None = None


def parse_create(body: dict[str, Any]) -> CreateRequest:
    name = str(body.get("Name") or "")
    if not name:
        raise InvalidArgument("network name is required")
    if name in PREDEFINED:
        raise Forbidden(f"operation is not permitted on predefined {name} network ")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise NotFound(f'plugin "{driver}" not found')
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported by this engine")
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "default") != "default":
        raise NotFound(f'plugin "{ipam.get("Driver")}" not found')
    subnet = gateway = ip_range = None
    configs = [c for c in (ipam.get("Config") or []) if c]
    v4 = [c for c in configs if ":" not in str(c.get("Subnet", ""))]
    if len(configs) != len(v4):
        raise InvalidArgument("IPv6 subnets are not supported by this engine")
    if len(v4) > 1:
        raise InvalidArgument("only one IPv4 subnet per network is supported")
    if v4:
        subnet, gateway, ip_range = _parse_ipam(v4[0])
    return CreateRequest(
        name=name, internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
        options={str(k): str(v) for k, v in (body.get("Options") or {}).items()},
        labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
        subnet=subnet, gateway=gateway, ip_range=ip_range,
        ipam_options={str(k): str(v) for k, v in ipam["Options"].items()}
        if isinstance(ipam.get("Options"), dict) else None,
        aux_addresses={str(k): str(v) for k, v in v4[0]["AuxiliaryAddresses"].items()}
        if v4 and isinstance(v4[0].get("AuxiliaryAddresses"), dict) else None)


def _parse_ipam(c: dict[str, Any]) -> tuple[ipaddress.IPv4Network | None,
                                             ipaddress.IPv4Address | None,
                                             ipaddress.IPv4Network | None]:
    try:
        subnet = ipaddress.IPv4Network(c["Subnet"], strict=False) if c.get("Subnet") else None
        gateway = ipaddress.IPv4Address(c["Gateway"]) if c.get("Gateway") else None
        rng = ipaddress.IPv4Network(c["IPRange"], strict=False) if c.get("IPRange") else None
    except ValueError as e:
        raise InvalidArgument(f"invalid IPAM config: {e}") from None
    if subnet is None and (gateway or rng):
        raise InvalidArgument("a gateway or ip-range needs a subnet")
    if subnet is not None and subnet.prefixlen > 30:
        raise InvalidArgument(f"subnet {subnet} is too small")
    if gateway is not None and subnet is not None and gateway not in subnet:
        raise InvalidArgument(f"gateway {gateway} is not in subnet {subnet}")
    if rng is not None and subnet is not None and not rng.subnet_of(subnet):
        raise InvalidArgument(f"ip-range {rng} is not in subnet {subnet}")
    return subnet, gateway, rng


def endpoint_settings(net: Net, ep: Endpoint | None, cfg: dict[str, Any],
                      dns_names: list[str] | None) -> dict[str, Any]:
    """One entry of NetworkSettings.Networks (empty addresses when not running)."""
    aliases = (ep.aliases if ep else cfg.get("Aliases")) or None
    return {
        "IPAMConfig": cfg.get("IPAMConfig") or None,
        "Links": cfg.get("Links") or None,
        "Aliases": aliases,
        "MacAddress": ep.mac if ep else "",
        "DriverOpts": cfg.get("DriverOpts") or None,
        "NetworkID": net.id,
        "EndpointID": ep.endpoint_id if ep else "",
        "Gateway": ep.gateway if ep else "",
        "IPAddress": ep.ip if ep else "",
        "IPPrefixLen": ep.prefixlen if ep else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": dns_names if ep else None,
    }


def empty_settings() -> dict[str, Any]:
    return {
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        "Networks": {},
    }


def bridge_network_record(req: CreateRequest, net_id: str,
                          used: list[ipaddress.IPv4Network],
                          pools: list[tuple[ipaddress.IPv4Network, int]]) -> dict[str, Any]:
    """The record of a user bridge network: the requested subnet if it overlaps none in
    *used*, else the first free one from *pools*; its bridge named after the id."""
    if req.subnet is not None:
        if any(req.subnet.overlaps(u) for u in used):
            raise Forbidden("Pool overlaps with other one on this address space")
        subnet = req.subnet
    else:
        subnet = pick_subnet(pools, used)
    gateway = req.gateway or subnet.network_address + 1
    bridge = req.options.get(OPT_BRIDGE_NAME) or f"br-{net_id[:12]}"
    if len(bridge) > 15:
        raise InvalidArgument(f"bridge name {bridge} is longer than 15 characters")
    return network_record(
        net_id=net_id, name=req.name, driver="bridge", subnet=str(subnet),
        gateway=str(gateway), ip_range=str(req.ip_range) if req.ip_range else "",
        internal=req.internal, attachable=req.attachable, options=req.options,
        labels=req.labels, bridge=bridge, ipam_options=req.ipam_options,
        aux_addresses=req.aux_addresses)
