"""Docker's JSON shapes for networks and endpoints, and the pure validation of create requests."""

from __future__ import annotations

import contextlib
import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import Forbidden, InvalidArgument, NotFound
from runtime.net.ipam import Pool, Pool6, pick_subnet, pick_subnet6
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
    pool6: Pool6 | None = None  # only with EnableIPv6

    @staticmethod
    def of(record: dict[str, Any]) -> Net:
        return Net(record, make_pool(record), make_pool6(record))

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

    def static_subnets6(self) -> list[ipaddress.IPv6Network]:
        """The IPv6 subnets the user configured, used or not: moby checks a requested
        IPv6Address against them even on a network without EnableIPv6 (where they are
        accepted, kept out of inspect and given to no one)."""
        out = []
        configs = [] if self.record.get("_ipv6_auto") else v6_configs(self.record)
        for c in configs + list(self.record.get("_ipv6_unused") or []):
            with contextlib.suppress(ValueError, KeyError):
                out.append(ipaddress.IPv6Network(c["Subnet"], strict=False))
        return out


def _is_v6(config: dict[str, Any]) -> bool:
    return ":" in str(config.get("Subnet", ""))


def v6_configs(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in (record.get("IPAM") or {}).get("Config") or [] if _is_v6(c)]


def make_pool6(record: dict[str, Any]) -> Pool6 | None:
    configs = v6_configs(record)
    if record.get("Driver") != "bridge" or not record.get("EnableIPv6") or not configs:
        return None
    c = configs[0]
    subnet = ipaddress.IPv6Network(c["Subnet"], strict=False)
    gateway = ipaddress.IPv6Address(c.get("Gateway") or subnet.network_address + 1)
    rng = ipaddress.IPv6Network(c["IPRange"], strict=False) if c.get("IPRange") else None
    pool = Pool6(subnet, gateway, rng)
    for addr in (c.get("AuxiliaryAddresses") or {}).values():
        with contextlib.suppress(ValueError):
            pool.taken.add(ipaddress.IPv6Address(addr))
    return pool


def make_pool(record: dict[str, Any]) -> Pool | None:
    configs = [c for c in (record.get("IPAM") or {}).get("Config") or [] if not _is_v6(c)]
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
                   aux_addresses: dict[str, str] | None = None,
                   ipv6: dict[str, Any] | None = None) -> dict[str, Any]:
    """*ipv6*: the IPv6 IPAM entry of a network with EnableIPv6 (after the IPv4 one, as
    moby lists them)."""
    config: list[dict[str, Any]] = []
    if subnet:
        entry: dict[str, Any] = {"Subnet": subnet, "Gateway": gateway}
        if ip_range:
            entry["IPRange"] = ip_range
        if aux_addresses:
            entry["AuxiliaryAddresses"] = dict(aux_addresses)
        config.append(entry)
    if ipv6:
        config.append(dict(ipv6))
    rec: dict[str, Any] = {
        "Name": name, "Id": net_id, "Created": rfc3339_now(), "Scope": "local",
        "Driver": driver, "EnableIPv4": True, "EnableIPv6": bool(ipv6),
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
    enable_ipv6: bool = False
    ipv6: Ipv6Request | None = None  # the validated IPv6 config (EnableIPv6 only)
    ipv6_unused: tuple[dict[str, Any], ...] = ()  # IPv6 configs given without EnableIPv6


@dataclass(frozen=True, slots=True)
class Ipv6Request:
    subnet: ipaddress.IPv6Network
    gateway: ipaddress.IPv6Address | None
    ip_range: ipaddress.IPv6Network | None
    aux_addresses: dict[str, str] | None


def parse_create(body: dict[str, Any]) -> CreateRequest:
    name = str(body.get("Name") or "")
    if not name:
        raise InvalidArgument("network name is required")
    if name in PREDEFINED:
        raise Forbidden(f"operation is not permitted on predefined {name} network ")
    driver = body.get("Driver") or "bridge"
    if driver != "bridge":
        raise NotFound(f'plugin "{driver}" not found')
    enable_ipv6 = _bool(body.get("EnableIPv6"))
    ipam = body.get("IPAM") or {}
    if (ipam.get("Driver") or "default") != "default":
        raise NotFound(f'plugin "{ipam.get("Driver")}" not found')
    subnet = gateway = ip_range = None
    configs = [c for c in (ipam.get("Config") or []) if c]
    v4 = [c for c in configs if not _is_v6(c)]
    v6 = [c for c in configs if _is_v6(c)]
    if len(v6) > 1 and enable_ipv6:
        raise InvalidArgument("only one IPv6 subnet per network is supported")
    # Without EnableIPv6 moby takes IPv6 configs unchecked and uses them for nothing but
    # checking a container's requested IPv6Address.
    ipv6 = _parse_ipam6(v6[0]) if v6 and enable_ipv6 else None
    unused = () if enable_ipv6 else tuple(_unused6(c) for c in v6)
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
        if v4 and isinstance(v4[0].get("AuxiliaryAddresses"), dict) else None,
        enable_ipv6=enable_ipv6, ipv6=ipv6, ipv6_unused=unused)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _unused6(c: dict[str, Any]) -> dict[str, Any]:
    try:
        ipaddress.IPv6Network(str(c.get("Subnet")), strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid subnet {c.get('Subnet')}: invalid CIDR block "
                              "notation") from None
    return {k: c[k] for k in ("Subnet", "IPRange", "Gateway", "AuxiliaryAddresses") if c.get(k)}


_LINK_LOCAL = ipaddress.IPv6Network("fe80::/64")


def _parse_ipam6(c: dict[str, Any]) -> Ipv6Request:
    """An IPv6 IPAM config checked as moby's validateIpamConfig and the bridge driver's
    validateIPv6Subnet do, with their messages."""
    errs: list[str] = []
    try:
        subnet = ipaddress.IPv6Network(str(c.get("Subnet")), strict=False)
    except ValueError:
        raise InvalidArgument(f"invalid network config:\ninvalid subnet {c.get('Subnet')}: "
                              "invalid CIDR block notation") from None
    given = str(c.get("Subnet"))
    if ipaddress.IPv6Interface(given).ip != subnet.network_address:
        errs.append(f"invalid subnet {given}: it should be {subnet}")
    rng = None
    if c.get("IPRange"):
        try:
            rng = ipaddress.IPv6Network(str(c["IPRange"]), strict=False)
        except ValueError:
            errs.append(f"invalid ip-range {c['IPRange']}: parent subnet is an IPv6 block")
        if rng is not None and rng.prefixlen < subnet.prefixlen:
            errs.append(f"invalid ip-range {rng}: CIDR block is bigger than its parent "
                        f"subnet {subnet}")
        elif rng is not None and not rng.subnet_of(subnet):
            errs.append(f"invalid ip-range {rng}: parent subnet {subnet} doesn't contain "
                        "ip-range")
    gateway = _address6(c.get("Gateway"), subnet, "gateway", errs)
    aux = c.get("AuxiliaryAddresses") if isinstance(c.get("AuxiliaryAddresses"), dict) else None
    for name, addr in (aux or {}).items():
        _address6(addr, subnet, f"auxiliary address {name}", errs)
    if errs:
        raise InvalidArgument("invalid network config:\n" + "\n".join(errs))
    if subnet.is_multicast:
        raise InvalidArgument(f"multicast subnet '{subnet}' is not allowed")
    if subnet != _LINK_LOCAL and subnet.overlaps(_LINK_LOCAL):
        raise InvalidArgument(f"'{subnet}' clashes with the Link-Local prefix 'fe80::/64'")
    if subnet.prefixlen > 126:
        raise InvalidArgument(f"subnet {subnet} is too small")
    return Ipv6Request(subnet, gateway, rng,
                       {str(k): str(v) for k, v in aux.items()} if aux else None)


def _address6(value: Any, subnet: ipaddress.IPv6Network, what: str,
              errs: list[str]) -> ipaddress.IPv6Address | None:
    if not value:
        return None
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        errs.append(f"invalid {what} {value}: not an IP address")
        return None
    if not isinstance(addr, ipaddress.IPv6Address):
        errs.append(f"invalid {what} {value}: parent subnet is an IPv6 block")
        return None
    if addr not in subnet:
        errs.append(f"invalid {what} {value}: parent subnet {subnet} doesn't contain this "
                    "address")
        return None
    return addr


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
        "IPv6Gateway": ep.gateway6 if ep else "",
        "GlobalIPv6Address": ep.ip6 if ep else "",
        "GlobalIPv6PrefixLen": ep.prefixlen6 if ep else 0,
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
                          pools: list[tuple[ipaddress.IPv4Network, int]],
                          used6: list[ipaddress.IPv6Network] | None = None,
                          ula: ipaddress.IPv6Network | None = None) -> dict[str, Any]:
    """The record of a user bridge network: the requested subnet if it overlaps none in
    *used*, else the first free one from *pools*; its bridge named after the id. With
    EnableIPv6 the same for IPv6: the requested subnet, else the first free /64 of *ula*."""
    ipv6, auto6 = _ipv6_entry(req, used6 or [], ula)
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
    rec = network_record(
        net_id=net_id, name=req.name, driver="bridge", subnet=str(subnet),
        gateway=str(gateway), ip_range=str(req.ip_range) if req.ip_range else "",
        internal=req.internal, attachable=req.attachable, options=req.options,
        labels=req.labels, bridge=bridge, ipam_options=req.ipam_options,
        aux_addresses=req.aux_addresses, ipv6=ipv6)
    if auto6:
        rec["_ipv6_auto"] = True
    if req.ipv6_unused:
        rec["_ipv6_unused"] = [dict(c) for c in req.ipv6_unused]
    return rec


def _ipv6_entry(req: CreateRequest, used6: list[ipaddress.IPv6Network],
                ula: ipaddress.IPv6Network | None) -> tuple[dict[str, Any] | None, bool]:
    """The IPv6 IPAM entry of a new network (None without EnableIPv6), and whether its
    subnet was picked from the engine's ULA pool."""
    if not req.enable_ipv6:
        return None, False
    v6 = req.ipv6
    if v6 is not None:
        if any(v6.subnet.overlaps(u) for u in used6):
            raise Forbidden("Pool overlaps with other one on this address space")
        subnet, auto = v6.subnet, False
    else:
        if ula is None:
            raise InvalidArgument("an IPv6 network needs a subnet (--subnet)")
        subnet, auto = pick_subnet6(ula, used6), True
    gateway = (v6.gateway if v6 else None) or subnet.network_address + 1
    entry: dict[str, Any] = {"Subnet": str(subnet), "Gateway": str(gateway)}
    if v6 is not None and v6.ip_range is not None:
        entry["IPRange"] = str(v6.ip_range)
    if v6 is not None and v6.aux_addresses:
        entry["AuxiliaryAddresses"] = dict(v6.aux_addresses)
    return entry, auto
