"""The engine's network service: Docker's bridge/host/none/container networking.

The container service calls :meth:`NetworkManager.setup` before a container
starts (the runtime then joins the returned netns) and :meth:`teardown` after it
exits; the ``/networks`` routes call the CRUD and connect/disconnect methods.
See the package docstrings of plumbing.py (netlink), firewall.py (nftables),
dns.py (embedded DNS) and store.py (what is persisted) for the pieces. This class
holds the state and the lock; the logic over that state lives beside it: hostside.py
(bridges, table, ip_forward), endpoints.py (joining networks), etcfiles.py (/etc files),
resolver.py (what the DNS answers) and settings.py (inspect's NetworkSettings).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from runtime.api.errors import Conflict, CoveError, Forbidden, InvalidArgument, NotFound
from runtime.engine.events import EventBus
from runtime.layout import EngineLayout
from runtime.net import endpoints, etcfiles, files, resolver
from runtime.net.backends import FirewallBackend, make_firewall
from runtime.net.dns import DnsServer
from runtime.net.firewall import PortRule
from runtime.net.hostside import HostSide
from runtime.net.ipam import ula_base
from runtime.net.model import (
    PREDEFINED,
    CreateRequest,
    Net,
    bridge_network_record,
    default_bridge_record,
    network_record,
    parse_create,
)
from runtime.net.plumbing import Plumbing, Sandbox
from runtime.net.ports import Binding, PortAllocator, ports_settings, wanted_ports
from runtime.net.settings import container_settings, containers_of, network_mode, planned_state
from runtime.net.store import ContainerState, Endpoint, NetworkStore, new_id
from runtime.spec import Mount

log = logging.getLogger(__name__)

DEFAULT_POOLS = [(ipaddress.IPv4Network("172.16.0.0/12"), 16),
                 (ipaddress.IPv4Network("192.168.0.0/16"), 20)]


def table_for(bridge_name: str) -> str:
    """The nft table of the engine whose default bridge is *bridge_name*."""
    return "cove" if bridge_name == "cove0" else f"cove_{bridge_name}"


def env_upstreams() -> list[tuple[str, int]] | None:
    """``COVE_DNS_UPSTREAMS=ip:port,...``: where the embedded DNS forwards instead of the
    host's resolvers and any --dns (test engines point it at loopback so that no query
    ever leaves the host)."""
    value = os.environ.get("COVE_DNS_UPSTREAMS", "").strip()
    if not value:
        return None
    out = []
    for item in value.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host, int(port)) if host else (item.strip(), 53))
    return out


def _engine_seed(layout: EngineLayout) -> str:
    try:
        return (layout.data_root / "engine-id").read_text().strip()
    except OSError:
        return ""


@dataclass(slots=True)  # not frozen: engine/ports.py's NetworkSetup protocol has plain attributes
class ContainerNetwork:
    netns_path: str | None  # the netns to join; None with --network host or none
    create_netns: bool  # True for --network none: the runtime creates a fresh one (only lo)
    mounts: tuple[Mount, ...]  # /etc/hosts, /etc/resolv.conf, /etc/hostname binds
    settings: dict[str, Any]  # Docker's NetworkSettings for inspect


class NetworkManager:
    def __init__(self, layout: EngineLayout, events: EventBus, *, bridge_name: str = "cove0",
                 bridge_cidr: str = "172.17.0.1/16", nft_table: str | None = None,
                 default_pools: list[tuple[ipaddress.IPv4Network, int]] | None = None,
                 dns_upstreams: list[tuple[str, int]] | None = None,
                 host_resolv: str = files.HOST_RESOLV, firewall: str | None = None) -> None:
        self.layout = layout
        self.events = events
        self.bridge_name = bridge_name
        self.bridge_cidr = ipaddress.IPv4Interface(bridge_cidr)
        self.pools = default_pools or DEFAULT_POOLS
        # Where EnableIPv6 without a subnet gets its /64: this engine's ULA /48 (moby
        # derives it from its host id; an engine without an id file uses its bridge name).
        self.ula = ula_base(_engine_seed(layout) or bridge_name)
        self._dns_upstreams = dns_upstreams if dns_upstreams is not None else env_upstreams()
        self._host_resolv_path = host_resolv
        self._lock = threading.RLock()
        self.store = NetworkStore(layout.network)
        # One table per engine instance: a test engine (own bridge) never touches the real one.
        # nftables, or iptables where it is missing (backends.py; COVE_FIREWALL forces one).
        self.host = HostSide(layout, make_firewall(nft_table or table_for(bridge_name), firewall))
        self._dns: DnsServer | None = None
        self.ports = PortAllocator()
        self.nets: dict[str, Net] = {}
        self.states: dict[str, ContainerState] = {}
        self._load()

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        for rec in self.store.load_networks():
            self.nets[rec["Id"]] = Net.of(rec)
        self._ensure_predefined()
        for st in self.store.load_containers():
            self.states[st.container_id] = st
            self._account(st, take=True)

    def _ensure_predefined(self) -> None:
        by_name = {n.name: n for n in self.nets.values()}
        subnet = str(self.bridge_cidr.network)
        gateway = str(self.bridge_cidr.ip)
        bridge = by_name.get("bridge")
        if bridge is None or bridge.bridge != self.bridge_name or (
                (bridge.record["IPAM"]["Config"] or [{}])[0].get("Subnet") != subnet):
            rec = default_bridge_record(bridge.id if bridge else new_id(), subnet=subnet,
                                        gateway=gateway, bridge=self.bridge_name)
            self._save_net(Net.of(rec))
        for name, driver in (("host", "host"), ("none", "null")):
            if name not in by_name:
                self._save_net(Net(network_record(net_id=new_id(), name=name, driver=driver),
                                   None))

    def _save_net(self, net: Net) -> None:
        self.nets[net.id] = net
        self.store.save_network(net.record)

    def _account(self, st: ContainerState, *, take: bool) -> None:
        """Add (or drop) a container's live addresses and ports to the allocators."""
        for net_id, ep in st.endpoints.items():
            net = self.nets.get(net_id)
            if net and net.pool:
                if take:
                    net.pool.taken.add(ipaddress.IPv4Address(ep.ip))
                else:
                    net.pool.release(ep.ip)
            if net and net.pool6 and ep.ip6:
                if take:
                    net.pool6.taken.add(ipaddress.IPv6Address(ep.ip6))
                else:
                    net.pool6.release(ep.ip6)
        bindings = [Binding.from_json(p) for p in st.ports]
        if take:
            self.ports.used.update(bindings)
        else:
            self.ports.release(bindings)

    @property
    def plumbing(self) -> Plumbing:
        return self.host.plumbing

    @property
    def fw(self) -> FirewallBackend:
        return self.host.fw

    def _default(self) -> Net:
        return self.find("bridge")

    def _network_for(self, key: str) -> Net:
        """An EndpointsConfig key: a network reference, or "default" for the bridge."""
        return self._default() if key == "default" else self.find(key)

    # ------------------------------------------------------------------ lookup
    def find(self, ref: str) -> Net:
        """By full id, exact name, then unique id prefix (Docker's order)."""
        with self._lock:
            if ref in self.nets:
                return self.nets[ref]
            for net in self.nets.values():
                if net.name == ref:
                    return net
            matches = [n for n in self.nets.values() if ref and n.id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(matches)} matches found "
                                      "based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    # ------------------------------------------------------------------ kernel state
    def _all_port_rules(self) -> list[PortRule]:
        out = []
        for st in self.states.values():
            out.extend(endpoints.port_rules(st))
        return out

    def _ensure_bridge(self, net: Net) -> None:
        self.host.ensure_bridge(net, self.nets.values(), self._all_port_rules)

    @property
    def dns(self) -> DnsServer:
        if self._dns is None:
            self._dns = DnsServer(self._resolve_name, self._upstreams, reverse=self._resolve_ip)
        return self._dns

    # ------------------------------------------------------------------ engine lifecycle
    def restore(self, live_containers: Collection[str] = ()) -> None:
        """Engine start: bridges and rules back, crash leftovers gone, DNS re-opened."""
        live = set(live_containers)
        with self._lock:
            for net in list(self.nets.values()):
                if net.driver == "bridge":
                    try:
                        self._ensure_bridge(net)
                    except (OSError, CoveError) as e:
                        log.warning("network %s: cannot restore bridge %s: %s", net.name,
                                    net.bridge, e)
            for st in list(self.states.values()):
                if st.running and st.container_id not in live:
                    self._teardown(st)
            self.host.clean_leftovers(self.nets.values(), self.states, live)
            self.host.rebuild_firewall(self.nets.values(), self._all_port_rules)
            for st in self.states.values():
                if st.running and st.netns and self._on_user_network(st):
                    try:
                        with self.plumbing.open_sandbox(st.netns) as sb:
                            self.dns.listen(st.container_id, sb.fd)
                    except OSError as e:
                        log.warning("dns for %s: %s", st.container_id[:12], e)

    def shutdown(self) -> None:
        """Engine stopping: containers keep their networking (kernel state stays); DNS
        stops answering until the next engine start re-opens it. With no container
        running, bridges and rules go too (restore() rebuilds them): nothing is left."""
        with self._lock:
            if not any(st.running for st in self.states.values()) and self.host.active:
                try:
                    self.purge()
                except (OSError, CoveError) as e:
                    log.warning("network cleanup at shutdown: %s", e)
                return
            if self._dns is not None:
                self._dns.close()
                self._dns = None
            self.host.close()

    def purge(self) -> None:
        """Remove every trace from the host (tests, uninstall): endpoints, bridges, rules."""
        with self._lock:
            for st in list(self.states.values()):
                self._teardown(st)
            if self._dns is not None:
                self._dns.close()
                self._dns = None
            self.host.destroy(self.nets.values())
            self.shutdown()

    # ------------------------------------------------------------------ containers
    def setup(self, container_id: str, *, name: str, hostname: str, domainname: str,
              config: dict[str, Any], host_config: dict[str, Any],
              networking_config: dict[str, Any],
              resolve_container: Callable[[str], tuple[str, int]]) -> ContainerNetwork:
        """Prepare a container's networking right before it starts (see ContainerNetwork)."""
        with self._lock:
            st = self.states.get(container_id) or ContainerState(container_id)
            self.states[container_id] = st
            if st.running:
                self._teardown(st)
            st.name, st.hostname = name.lstrip("/"), hostname
            mode = network_mode(host_config)
            if mode == "host" or mode == "none" or mode.startswith("container:"):
                return self._setup_special(st, mode, domainname, host_config, resolve_container)
            endpoints.want_networks(st, mode, networking_config, self._network_for, self.nets)
            try:
                return self._setup_bridge(st, domainname, config, host_config)
            except BaseException:
                self._teardown(st)
                raise

    def _setup_bridge(self, st: ContainerState, domainname: str, config: dict[str, Any],
                      host_config: dict[str, Any]) -> ContainerNetwork:
        path = str(self.host.netns_dir() / st.container_id)
        st.running, st.netns = True, path
        with self.plumbing.create_sandbox(path) as sb:
            gateway_set = gateway6_set = False
            for i, net_id in enumerate(st.order):
                net = self.nets[net_id]
                route = not gateway_set and not net.internal
                # The IPv6 default route is chosen apart (as libnetwork picks a gateway
                # endpoint per family): the first non-internal network with IPv6.
                route6 = not gateway6_set and not net.internal and net.pool6 is not None
                self._attach(st, net, sb, f"eth{i}", st.wanted.get(net_id, {}), config,
                             route=route, first=i == 0, route6=route6)
                gateway_set = gateway_set or route
                gateway6_set = gateway6_set or route6
            self._publish(st, config, host_config)
            if self._on_user_network(st):
                self.dns.listen(st.container_id, sb.fd)
        st.dns = list(host_config.get("Dns") or [])
        mounts = self._write_files(st, domainname, host_config)
        self.store.save_container(st)
        for net_id in st.order:
            self._event("connect", self.nets[net_id], st.container_id)
        return ContainerNetwork(path, False, mounts, self._settings(st))

    def _attach(self, st: ContainerState, net: Net, sb: Sandbox, ifname: str,
                cfg: dict[str, Any], config: dict[str, Any], *, route: bool,
                first: bool, route6: bool = False) -> Endpoint:
        assert net.pool is not None
        self._ensure_bridge(net)
        ep = endpoints.new_endpoint(st, net, ifname, cfg, config, first=first)
        st.endpoints[net.id] = ep  # before plumbing: a failure's teardown then frees the IP
        self.plumbing.attach(
            sb, veth=ep.veth, ifname=ifname, bridge=net.bridge, mac=ep.mac,
            address=endpoints.interface_address(ep),
            gateway=net.pool.gateway if route else None, mtu=net.mtu,
            address6=endpoints.interface_address6(ep),
            gateway6=net.pool6.gateway if route6 and net.pool6 else None)
        return ep

    def _publish(self, st: ContainerState, config: dict[str, Any],
                 host_config: dict[str, Any]) -> None:
        primary = self.nets[st.order[0]]
        wanted = [] if primary.internal else wanted_ports(config, host_config)
        try:
            bindings = self.ports.allocate(wanted)
        except Conflict as e:
            ep = st.endpoints[primary.id]
            raise Conflict(f"driver failed programming external connectivity on endpoint "
                           f"{st.name} ({ep.endpoint_id}): {e.message}") from None
        st.ports = [b.to_json() for b in bindings]
        st.ports_settings = ports_settings(config, host_config, bindings)
        if bindings:
            self.fw.publish(endpoints.port_rules(st))

    def _on_user_network(self, st: ContainerState) -> bool:
        return any(self.nets[n].user_defined for n in st.endpoints if n in self.nets)

    def _setup_special(self, st: ContainerState, mode: str, domainname: str,
                       host_config: dict[str, Any],
                       resolve_container: Callable[[str], tuple[str, int]]) -> ContainerNetwork:
        # Docker ignores published ports outside bridge networks, so do we.
        st.order, st.endpoints, st.ports, st.ports_settings = [], {}, [], {}
        if mode.startswith("container:"):
            other_id, pid = resolve_container(mode.split(":", 1)[1])
            if not pid:
                raise Conflict(f"cannot join network namespace of a non running container: "
                               f"{mode.split(':', 1)[1]}")
            st.mode, st.running = f"container:{other_id}", True
            other_ns = self.layout.netns / other_id
            ns = str(other_ns) if other_ns.exists() else f"/proc/{pid}/ns/net"
            src = self.layout.container_dir(other_id)
            mounts = etcfiles.file_mounts(src)
            self.store.save_container(st)
            return ContainerNetwork(ns, False, mounts, self._settings(st))
        net = self.find(mode)
        st.mode, st.order, st.running, st.wanted = net.id, [net.id], True, {net.id: {}}
        mounts = self._write_files(st, domainname, host_config)
        self.store.save_container(st)
        return ContainerNetwork(None, mode == "none", mounts, self._settings(st))

    # ------------------------------------------------------------------ files
    def _write_files(self, st: ContainerState, domainname: str,
                     host_config: dict[str, Any]) -> tuple[Mount, ...]:
        is_host = self.nets.get(st.mode) is not None and self.nets[st.mode].driver == "host"
        primary = st.endpoints.get(st.order[0]) if st.order else None
        return etcfiles.write_files(
            self.layout.container_dir(st.container_id), st, domainname=domainname,
            host_config=host_config, host_resolv_path=self._host_resolv_path,
            host_mode=is_host,
            gateway=primary.gateway if primary else str(self.bridge_cidr.ip),
            links=etcfiles.link_hosts(st, self.states.values(), self._default(), host_config),
            embedded_dns=self._on_user_network(st))

    def check_endpoints(self, networking_config: dict[str, Any]) -> None:
        """Container create: refuse requested IPv6 addresses moby refuses then (invalid,
        or in none of the network's configured IPv6 subnets) with 400, so no container is
        left behind; whether the address is free is known only at start."""
        cfgs = networking_config.get("EndpointsConfig") if isinstance(
            networking_config, dict) else None
        if not isinstance(cfgs, dict):
            return
        with self._lock:
            for key, cfg in cfgs.items():
                ipam = cfg.get("IPAMConfig") if isinstance(cfg, dict) else None
                wanted6 = str(ipam.get("IPv6Address") or "") if isinstance(ipam, dict) else ""
                if not wanted6:
                    continue
                try:
                    net = self._network_for(key)
                except NotFound:
                    continue  # start reports the missing network
                if not net.user_defined:
                    raise InvalidArgument("user specified IP address is supported on user "
                                          "defined networks only")
                endpoints.check_ipv6_request(net, wanted6)

    # ------------------------------------------------------------------ teardown
    def teardown(self, container_id: str) -> None:
        """After the container exited: addresses, ports, veths and netns released."""
        with self._lock:
            st = self.states.get(container_id)
            if st is None:
                self.plumbing.remove_sandbox(str(self.layout.netns / container_id))
                return
            self._teardown(st)

    def _teardown(self, st: ContainerState) -> None:
        if self._dns is not None:
            self._dns.unlisten(st.container_id)
        self.host.unpublish(endpoints.port_rules(st))
        self._account(st, take=False)
        was_running = st.running
        for ep in st.endpoints.values():
            net = self.nets.get(ep.network_id)
            if net is not None and was_running:
                self._event("disconnect", net, st.container_id)
            # Delete the host end now: the kernel destroys an unpinned netns (and the veths
            # in it) from a workqueue, so right after rm or a failed start the veth lingered.
            try:
                self.plumbing.detach(ep.veth)
            except (OSError, CoveError) as e:
                log.debug("detach %s: %s", ep.veth, e)
        if st.netns:
            self.plumbing.remove_sandbox(st.netns)
        st.endpoints, st.ports, st.ports_settings = {}, [], {}
        st.netns, st.running = "", False
        self.states[st.container_id] = st
        self.store.save_container(st)

    def forget(self, container_id: str) -> None:
        """The container was removed: drop everything we kept about it."""
        with self._lock:
            st = self.states.pop(container_id, None)
            if st is not None and st.running:
                self._teardown(st)
                self.states.pop(container_id, None)
            self.store.delete_container(container_id)

    # ------------------------------------------------------------------ inspect
    def settings(self, container_id: str, *, host_config: dict[str, Any] | None = None,
                 networking_config: dict[str, Any] | None = None) -> dict[str, Any]:
        """NetworkSettings of any container; a never-started one from its create config."""
        with self._lock:
            st = self.states.get(container_id)
            if st is None:
                st = self._planned(container_id, host_config or {}, networking_config or {})
            return self._settings(st)

    def _planned(self, container_id: str, host_config: dict[str, Any],
                 networking_config: dict[str, Any]) -> ContainerState:
        return planned_state(container_id, host_config, networking_config, self._network_for)

    def _settings(self, st: ContainerState) -> dict[str, Any]:
        return container_settings(st, self.nets, self._default())

    # ------------------------------------------------------------------ DNS callbacks
    def _resolve_name(self, container_id: str, qname: str) -> list[resolver.Address] | None:
        with self._lock:
            return resolver.resolve_name(self.states, self.nets, container_id, qname)

    def _resolve_ip(self, container_id: str, ip: resolver.Address) -> str | None:
        with self._lock:
            return resolver.resolve_ip(self.states, self.nets, container_id, ip)

    def _upstreams(self, container_id: str) -> list[tuple[str, int]]:
        """Where names the engine does not know go (none from --internal networks)."""
        with self._lock:
            st = self.states.get(container_id)
            if resolver.only_internal(st, self.nets):
                return []
            dns = list(st.dns) if st else []
        if self._dns_upstreams is not None:
            return list(self._dns_upstreams)
        host = files.read_host_resolv(self._host_resolv_path)
        return [(s, 53) for s in files.upstream_servers(host, dns)]

    # ------------------------------------------------------------------ network CRUD
    def create_network(self, body: dict[str, Any]) -> tuple[str, str]:
        """POST /networks/create → (id, warning)."""
        req = parse_create(body)
        with self._lock:
            if any(n.name == req.name for n in self.nets.values()):
                raise Conflict(f"network with name {req.name} already exists")
            used = [n.pool.subnet for n in self.nets.values() if n.pool]
            if req.subnet is None:  # a picked subnet also avoids the host's routes
                used += [r.dst for r in self.plumbing.nl.routes()
                         if r.dst.prefixlen > 0 and isinstance(r.dst, ipaddress.IPv4Network)]
            rec = bridge_network_record(req, new_id(), used, self.pools,
                                        self._used_subnets6(req), self.ula)
            net = Net.of(rec)
            try:
                self._ensure_bridge(net)
            except BaseException:
                # e.g. IPv6 off in the kernel: no half-made bridge stays behind
                with contextlib.suppress(OSError, CoveError):
                    self.host.remove_bridge(net)
                raise
            self._save_net(net)
            self._event("create", net)
            return net.id, ""

    def _used_subnets6(self, req: CreateRequest) -> list[ipaddress.IPv6Network]:
        """IPv6 subnets a new network must not overlap: the other networks' (used or
        merely configured) and, for a picked one, the host's IPv6 routes."""
        used: list[ipaddress.IPv6Network] = []
        for n in self.nets.values():
            if n.pool6 is not None:
                used.append(n.pool6.subnet)
        if req.enable_ipv6 and req.ipv6 is None:
            used += [r.dst for r in self.plumbing.nl.routes(socket.AF_INET6)
                     if isinstance(r.dst, ipaddress.IPv6Network) and r.dst.prefixlen > 0
                     and not r.dst.is_link_local and not r.dst.is_multicast]
        return used

    def list_networks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.inspect_network(n.id) for n in self.nets.values()]

    def inspect_network(self, ref: str) -> dict[str, Any]:
        with self._lock:
            net = self.find(ref)
            out = net.public()
            out["Containers"] = containers_of(net, self.states)
            return out

    def in_use(self, net: Net) -> bool:
        return bool(containers_of(net, self.states))

    def remove_network(self, ref: str) -> None:
        with self._lock:
            net = self.find(ref)
            if net.name in PREDEFINED:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if self.in_use(net):
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} "
                                "has active endpoints")
            self.host.remove_bridge(net)
            self.store.delete_network(net.id)
            del self.nets[net.id]
            self._event("destroy", net)

    def _event(self, action: str, net: Net, container_id: str = "") -> None:
        attrs = {"name": net.name, "type": net.driver}
        if container_id:
            attrs["container"] = container_id
        try:
            self.events.publish("network", action, net.id, **attrs)
        except TypeError:
            # EventBus.publish(type, ...) without positional-only parameters cannot take a
            # "type" attribute; until it does, the event goes out without it.
            attrs.pop("type")
            self.events.publish("network", action, net.id, **attrs)

    # ------------------------------------------------------------------ connect / disconnect
    def connect(self, ref: str, container_id: str, *, endpoint_config: dict[str, Any],
                running: bool, name: str = "") -> None:
        with self._lock:
            net = self.find(ref)
            st = self.states.get(container_id) or ContainerState(container_id, name=name)
            if name:
                st.name = name.lstrip("/")
            endpoints.check_connectable(st, net, self.nets, running=running)
            wanted6 = str(((endpoint_config or {}).get("IPAMConfig") or {}).get("IPv6Address")
                          or "")
            if wanted6:  # a stopped container's too, as moby checks it at connect
                endpoints.check_ipv6_request(net, wanted6)
            st.wanted[net.id] = dict(endpoint_config or {})
            if net.id not in st.order:
                st.order.append(net.id)
            if running and st.running and st.netns:
                self._connect_live(st, net)
            self.states[container_id] = st
            self.store.save_container(st)

    def _connect_live(self, st: ContainerState, net: Net) -> None:
        with self.plumbing.open_sandbox(st.netns) as sb:
            ifname = self.plumbing.free_ifname(sb)
            try:
                self._attach(st, net, sb, ifname, st.wanted[net.id], {}, route=False,
                             first=False)
            except BaseException:
                ep = st.endpoints.pop(net.id, None)
                if ep is not None and net.pool is not None:
                    self._release(net, ep)
                    self.plumbing.detach(ep.veth)
                raise
            if net.user_defined:
                self.dns.listen(st.container_id, sb.fd)
        self._rewrite_hosts(st)
        self._event("connect", net, st.container_id)

    def disconnect(self, ref: str, container_id: str, *, force: bool = False) -> None:
        with self._lock:
            net = self.find(ref)
            st = self.states.get(container_id)
            if st is None or (net.id not in st.wanted and net.id not in st.endpoints):
                if net.driver == "host" or net.driver == "null":
                    raise Forbidden(f"container cannot be disconnected from {net.name} network")
                raise Forbidden(f"container {container_id} is not connected to network "
                                f"{net.name}")
            ep = st.endpoints.pop(net.id, None)
            st.wanted.pop(net.id, None)
            if net.id in st.order:
                st.order.remove(net.id)
            if ep is not None:
                self._release(net, ep)
                self.plumbing.detach(ep.veth)
                self._rewrite_hosts(st)
                self._event("disconnect", net, container_id)
            if self._dns is not None and not self._on_user_network(st):
                self._dns.unlisten(container_id)
            self.store.save_container(st)

    @staticmethod
    def _release(net: Net, ep: Endpoint) -> None:
        if net.pool is not None:
            net.pool.release(ep.ip)
        if net.pool6 is not None and ep.ip6:
            net.pool6.release(ep.ip6)

    def _rewrite_hosts(self, st: ContainerState) -> None:
        etcfiles.rewrite_hosts(self.layout.container_dir(st.container_id), st)
