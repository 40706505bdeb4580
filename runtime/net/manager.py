"""The engine's network service: Docker's bridge/host/none/container networking.

The container service calls :meth:`NetworkManager.setup` before a container
starts (the runtime then joins the returned netns) and :meth:`teardown` after it
exits; the ``/networks`` routes call the CRUD and connect/disconnect methods.
See the package docstrings of plumbing.py (netlink), firewall.py (nftables),
dns.py (embedded DNS) and store.py (what is persisted) for the pieces.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.api.errors import Conflict, CoveError, Forbidden, InvalidArgument, NotFound
from runtime.engine.events import EventBus
from runtime.layout import CONTAINER_HOSTNAME, CONTAINER_HOSTS, CONTAINER_RESOLV, EngineLayout
from runtime.net import _sys, files, forwarding
from runtime.net.backends import make_firewall
from runtime.net.dns import DnsServer
from runtime.net.firewall import BridgeRules, PortRule
from runtime.net.ipam import mac_for, pick_subnet
from runtime.net.model import (
    OPT_BRIDGE_NAME,
    PREDEFINED,
    Net,
    empty_settings,
    endpoint_settings,
    make_pool,
    network_record,
    parse_create,
)
from runtime.net.plumbing import Plumbing, Sandbox, veth_name
from runtime.net.ports import Binding, PortAllocator, ports_settings, wanted_ports
from runtime.net.store import ContainerState, Endpoint, NetworkStore, new_id
from runtime.spec import Mount

log = logging.getLogger(__name__)

DEFAULT_POOLS = [(ipaddress.IPv4Network("172.16.0.0/12"), 16),
                 (ipaddress.IPv4Network("192.168.0.0/16"), 20)]
_BIND = ("rbind", "rprivate")


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
        self._dns_upstreams = dns_upstreams if dns_upstreams is not None else env_upstreams()
        self._host_resolv_path = host_resolv
        self._lock = threading.RLock()
        self.store = NetworkStore(layout.network)
        # One table per engine instance: a test engine (own bridge) never touches the real one.
        # nftables, or iptables where it is missing (backends.py; COVE_FIREWALL forces one).
        self.fw = make_firewall(nft_table or table_for(bridge_name), firewall)
        self._plumbing: Plumbing | None = None
        self._dns: DnsServer | None = None
        self._fw_ready = False
        self._bridges_ready: set[str] = set()
        self.ports = PortAllocator()
        self.nets: dict[str, Net] = {}
        self.states: dict[str, ContainerState] = {}
        self._load()

    # ------------------------------------------------------------------ state
    def _load(self) -> None:
        for rec in self.store.load_networks():
            self.nets[rec["Id"]] = Net(rec, make_pool(rec))
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
            rec = network_record(
                net_id=bridge.id if bridge else new_id(), name="bridge", driver="bridge",
                subnet=subnet, gateway=gateway, bridge=self.bridge_name,
                options={
                    "com.docker.network.bridge.default_bridge": "true",
                    "com.docker.network.bridge.enable_icc": "true",
                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                    OPT_BRIDGE_NAME: self.bridge_name,
                    "com.docker.network.driver.mtu": "1500",
                })
            self._save_net(Net(rec, make_pool(rec)))
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
        bindings = [Binding.from_json(p) for p in st.ports]
        if take:
            self.ports.used.update(bindings)
        else:
            self.ports.release(bindings)

    @property
    def plumbing(self) -> Plumbing:
        if self._plumbing is None:
            self._plumbing = Plumbing()
        return self._plumbing

    def _default(self) -> Net:
        return self.find("bridge")

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
    def _ensure_firewall(self) -> None:
        if self._fw_ready:
            return
        rules = [self._rules(n) for n in self.nets.values() if n.bridge in self._bridges_ready]
        self.fw.rebuild(rules, self._all_port_rules())
        self._fw_ready = True

    def _rules(self, net: Net) -> BridgeRules:
        assert net.pool is not None
        return BridgeRules(net.bridge, net.pool.subnet, net.internal, net.nat)

    def _all_port_rules(self) -> list[PortRule]:
        out = []
        for st in self.states.values():
            out.extend(self._port_rules(st))
        return out

    def _port_rules(self, st: ContainerState) -> list[PortRule]:
        ep = st.endpoints.get(st.order[0]) if st.order else None
        if ep is None:
            return []
        return [PortRule(b.proto, b.host_ip, b.host_port, ep.ip, b.ctr_port)
                for b in map(Binding.from_json, st.ports)]

    def _ensure_bridge(self, net: Net) -> None:
        if net.bridge in self._bridges_ready:
            return
        assert net.pool is not None
        gw = ipaddress.IPv4Interface(f"{net.pool.gateway}/{net.pool.subnet.prefixlen}")
        self.plumbing.ensure_bridge(net.bridge, gw, net.mtu)
        self._bridges_ready.add(net.bridge)
        if self._fw_ready:
            self.fw.add_bridge(self._rules(net))
        else:
            self._ensure_firewall()
        if net.nat:
            self._enable_forwarding()

    def _enable_forwarding(self) -> None:
        """ip_forward on while our NAT'ed bridges are up (host-wide refcount: forwarding.py)."""
        forwarding.hold(str(self.layout.exec_root))

    def _restore_forwarding(self) -> None:
        forwarding.release(str(self.layout.exec_root))

    def _netns_dir(self) -> Path:
        d = self.layout.netns
        d.mkdir(parents=True, exist_ok=True)
        if not getattr(self, "_netns_shared", False):
            _sys.make_shared_dir(str(d))
            self._netns_shared = True
        return d

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
            self._clean_netns_dir(live)
            self._clean_veths()
            self._fw_ready = False
            self._ensure_firewall()
            for st in self.states.values():
                if st.running and st.netns and self._on_user_network(st):
                    try:
                        with self.plumbing.open_sandbox(st.netns) as sb:
                            self.dns.listen(st.container_id, sb.fd)
                    except OSError as e:
                        log.warning("dns for %s: %s", st.container_id[:12], e)

    def _clean_netns_dir(self, live: set[str]) -> None:
        d = self.layout.netns
        if not d.is_dir():
            return
        for entry in d.iterdir():
            st = self.states.get(entry.name)
            if entry.name not in live or st is None or not st.running:
                self.plumbing.remove_sandbox(str(entry))

    def _clean_veths(self) -> None:
        bridges = {n.bridge for n in self.nets.values() if n.bridge}
        keep = {ep.veth for st in self.states.values() for ep in st.endpoints.values()}
        for veth in self.plumbing.stale_veths(bridges, keep):
            self.plumbing.detach(veth)

    def shutdown(self) -> None:
        """Engine stopping: containers keep their networking (kernel state stays); DNS
        stops answering until the next engine start re-opens it. With no container
        running, bridges and rules go too (restore() rebuilds them): nothing is left."""
        with self._lock:
            if not any(st.running for st in self.states.values()) and (
                    self._bridges_ready or self._fw_ready):
                try:
                    self.purge()
                except (OSError, CoveError) as e:
                    log.warning("network cleanup at shutdown: %s", e)
                return
            if self._dns is not None:
                self._dns.close()
                self._dns = None
            if self._plumbing is not None:
                self._plumbing.close()
                self._plumbing = None

    def purge(self) -> None:
        """Remove every trace from the host (tests, uninstall): endpoints, bridges, rules."""
        with self._lock:
            for st in list(self.states.values()):
                self._teardown(st)
            if self._dns is not None:
                self._dns.close()
                self._dns = None
            for net in self.nets.values():
                if net.bridge:
                    self.plumbing.delete_bridge(net.bridge)
            self._bridges_ready.clear()
            self.fw.destroy()
            self._fw_ready = False
            self._restore_forwarding()
            d = str(self.layout.netns)
            if getattr(self, "_netns_shared", False) and _sys.is_mountpoint(d):
                _sys.umount(d)
                self._netns_shared = False
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
            mode = self._mode(host_config)
            if mode == "host" or mode == "none" or mode.startswith("container:"):
                return self._setup_special(st, mode, domainname, host_config, resolve_container)
            self._want(st, mode, networking_config)
            try:
                return self._setup_bridge(st, domainname, config, host_config)
            except BaseException:
                self._teardown(st)
                raise

    @staticmethod
    def _mode(host_config: dict[str, Any]) -> str:
        mode = str(host_config.get("NetworkMode") or "default")
        return "bridge" if mode == "default" else mode

    def _want(self, st: ContainerState, mode: str, networking_config: dict[str, Any]) -> None:
        """Record the wanted networks: the mode's first, then EndpointsConfig's others."""
        primary = self.find(mode)
        if primary.driver != "bridge":
            raise InvalidArgument(f"container cannot be connected to network {primary.name} "
                                  "together with other networks")
        cfgs = (networking_config or {}).get("EndpointsConfig") or {}
        wanted: dict[str, dict[str, Any]] = {}
        order = [primary.id]
        for key, cfg in cfgs.items():
            net = self._default() if key == "default" else self.find(key)
            if net.driver != "bridge":
                raise InvalidArgument(f"container cannot be connected to network {net.name}")
            wanted[net.id] = dict(cfg or {})
            if net.id not in order:
                order.append(net.id)
        for net_id, cfg in st.wanted.items():  # connected while stopped
            if net_id in self.nets and net_id not in wanted:
                wanted[net_id] = cfg
                order.append(net_id)
        wanted.setdefault(primary.id, {})
        st.mode, st.wanted, st.order = primary.id, wanted, order

    def _setup_bridge(self, st: ContainerState, domainname: str, config: dict[str, Any],
                      host_config: dict[str, Any]) -> ContainerNetwork:
        path = str(self._netns_dir() / st.container_id)
        st.running, st.netns = True, path
        with self.plumbing.create_sandbox(path) as sb:
            gateway_set = False
            for i, net_id in enumerate(st.order):
                net = self.nets[net_id]
                route = not gateway_set and not net.internal
                self._attach(st, net, sb, f"eth{i}", st.wanted.get(net_id, {}), config,
                             route=route, first=i == 0)
                gateway_set = gateway_set or route
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
                first: bool) -> Endpoint:
        assert net.pool is not None
        self._ensure_bridge(net)
        ipam = cfg.get("IPAMConfig") or {}
        wanted_ip = str(ipam.get("IPv4Address") or "")
        if not net.user_defined and (wanted_ip or cfg.get("Aliases")):
            what = "IP address" if wanted_ip else "network-scoped alias"
            raise InvalidArgument(f"user specified {what} is supported on user defined "
                                  "networks only")
        ip = net.pool.allocate(wanted_ip)
        mac = str(cfg.get("MacAddress") or (config.get("MacAddress") if first else "") or "")
        ep = Endpoint(
            network_id=net.id, endpoint_id=new_id(), ip=str(ip),
            prefixlen=net.pool.subnet.prefixlen, gateway=str(net.pool.gateway),
            mac=mac or mac_for(ip), ifname=ifname, veth=veth_name(st.container_id, net.id),
            aliases=self._aliases(st, net, cfg), ipam_config=cfg.get("IPAMConfig") or None)
        st.endpoints[net.id] = ep  # before plumbing: a failure's teardown then frees the IP
        self.plumbing.attach(
            sb, veth=ep.veth, ifname=ifname, bridge=net.bridge, mac=ep.mac,
            address=ipaddress.IPv4Interface(f"{ip}/{ep.prefixlen}"),
            gateway=net.pool.gateway if route else None, mtu=net.mtu)
        return ep

    @staticmethod
    def _aliases(st: ContainerState, net: Net, cfg: dict[str, Any]) -> list[str]:
        aliases = [str(a) for a in (cfg.get("Aliases") or [])]
        if net.user_defined and st.container_id[:12] not in aliases:
            aliases.append(st.container_id[:12])  # API < 1.45 lists the short id too
        return aliases

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
            self.fw.publish(self._port_rules(st))

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
            mounts = self._file_mounts(src)
            self.store.save_container(st)
            return ContainerNetwork(ns, False, mounts, self._settings(st))
        net = self.find(mode)
        st.mode, st.order, st.running, st.wanted = net.id, [net.id], True, {net.id: {}}
        mounts = self._write_files(st, domainname, host_config)
        self.store.save_container(st)
        return ContainerNetwork(None, mode == "none", mounts, self._settings(st))

    # ------------------------------------------------------------------ files
    def _file_mounts(self, d: Path) -> tuple[Mount, ...]:
        return tuple(
            Mount(destination=dest, type="bind", source=str(d / fname), options=_BIND)
            for dest, fname in (("/etc/hosts", CONTAINER_HOSTS),
                                ("/etc/resolv.conf", CONTAINER_RESOLV),
                                ("/etc/hostname", CONTAINER_HOSTNAME)))

    def _write_files(self, st: ContainerState, domainname: str,
                     host_config: dict[str, Any]) -> tuple[Mount, ...]:
        d = self.layout.container_dir(st.container_id)
        d.mkdir(parents=True, exist_ok=True)
        host = files.read_host_resolv(self._host_resolv_path)
        is_host = self.nets.get(st.mode) is not None and self.nets[st.mode].driver == "host"
        primary = st.endpoints.get(st.order[0]) if st.order else None
        gateway = primary.gateway if primary else str(self.bridge_cidr.ip)
        extra = files.parse_extra_hosts(list(host_config.get("ExtraHosts") or []), gateway)
        extra += self._link_hosts(st, host_config)
        ips = [ep.ip for ep in st.endpoints.values()]
        files.write_file(d / CONTAINER_HOSTS, files.hosts_file(
            hostname=st.hostname, domainname=domainname, ips=ips, extra=extra,
            host_copy=is_host))
        dns = list(host_config.get("Dns") or [])
        search = list(host_config.get("DnsSearch") or [])
        opts = list(host_config.get("DnsOptions") or [])
        if is_host and not (dns or search or opts):
            try:
                text = Path(self._host_resolv_path).read_text()
            except OSError:
                text = ""
        else:
            text = files.resolv_conf(host, dns=dns, search=search, options=opts,
                                     embedded=self._on_user_network(st))
        files.write_file(d / CONTAINER_RESOLV, text)
        files.write_file(d / CONTAINER_HOSTNAME, f"{st.hostname}\n")
        return self._file_mounts(d)

    def _link_hosts(self, st: ContainerState, host_config: dict[str, Any]
                    ) -> list[tuple[str, str]]:
        """/etc/hosts lines of legacy links on the default bridge, as moby writes them:
        ``<ip>\t<alias> <hostname> <name>`` (the name only when it differs from the alias).
        On user networks links are DNS aliases instead (see _resolve_name)."""
        default = self._default()
        if st.mode != default.id:
            return []
        out = []
        for spec in host_config.get("Links") or []:
            ref, _, alias = str(spec).partition(":")
            ref = ref.strip("/")
            alias = (alias or ref).strip("/").rsplit("/", 1)[-1]
            child = self._state_named(ref)
            ep = child.endpoints.get(default.id) if child else None
            if child is None or ep is None:
                continue
            names = [alias, child.hostname or child.container_id[:12]]
            if alias != child.name:
                names.append(child.name)
            out.append((ep.ip, " ".join(names)))
        return out

    def _state_named(self, ref: str) -> ContainerState | None:
        for other in self.states.values():
            if other.name == ref or (len(ref) >= 12 and other.container_id.startswith(ref)):
                return other
        return None

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
        rules = self._port_rules(st)
        if rules and self._fw_ready:
            self.fw.unpublish(rules)
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
        st = ContainerState(container_id)
        mode = self._mode(host_config)
        if mode.startswith("container:"):
            st.mode = mode
            return st
        try:
            net = self.find(mode)
        except NotFound:
            return st
        st.mode, st.order, st.wanted = net.id, [net.id], {net.id: {}}
        for key, cfg in ((networking_config or {}).get("EndpointsConfig") or {}).items():
            try:
                other = self._default() if key == "default" else self.find(key)
            except NotFound:
                continue
            st.wanted[other.id] = dict(cfg or {})
            if other.id not in st.order:
                st.order.append(other.id)
        return st

    def _settings(self, st: ContainerState) -> dict[str, Any]:
        out = empty_settings()
        if st.mode.startswith("container:"):
            return out
        for net_id in st.order or list(st.wanted):
            net = self.nets.get(net_id)
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
            default = self._default()
            ep = st.endpoints.get(default.id)
            if ep is not None:
                out.update(EndpointID=ep.endpoint_id, Gateway=ep.gateway, IPAddress=ep.ip,
                           IPPrefixLen=ep.prefixlen, MacAddress=ep.mac)
        return out

    # ------------------------------------------------------------------ DNS callbacks
    def _resolve_name(self, container_id: str, qname: str) -> list[ipaddress.IPv4Address] | None:
        with self._lock:
            st = self.states.get(container_id)
            if st is None:
                return None
            nets = [self.nets[n] for n in st.endpoints
                    if n in self.nets and self.nets[n].user_defined]
            # libnetwork tries the asker's own link aliases first (``--link name:alias`` is
            # an alias local to the linking endpoint), then the names everyone can see.
            found: list[ipaddress.IPv4Address] = []
            for net in nets:
                target = _link_target(st.wanted.get(net.id) or {}, qname, net.name.lower())
                found += self._lookup_on(net, target) if target else []
            if not found:
                for net in nets:
                    found += self._lookup_on(net, qname)
            return found or None

    def _lookup_on(self, net: Net, qname: str) -> list[ipaddress.IPv4Address]:
        """Addresses on *net* of the containers called *qname* (name, alias, short id)."""
        found = []
        for other in self.states.values():
            ep = other.endpoints.get(net.id)
            if ep is None:
                continue
            names = {other.name.lower(), other.container_id[:12],
                     f"{other.name.lower()}.{net.name.lower()}"}
            names.update(a.lower() for a in ep.aliases)
            if qname in names:
                found.append(ipaddress.IPv4Address(ep.ip))
        return found

    def _resolve_ip(self, container_id: str, ip: ipaddress.IPv4Address) -> str | None:
        """PTR: ``name.network`` of the container holding *ip* on one of the asker's
        user networks (Docker's answer), else None (forwarded)."""
        wanted = str(ip)
        with self._lock:
            st = self.states.get(container_id)
            if st is None:
                return None
            for net_id in st.endpoints:
                net = self.nets.get(net_id)
                if net is None or not net.user_defined:
                    continue
                for other in self.states.values():
                    ep = other.endpoints.get(net_id)
                    if ep is not None and ep.ip == wanted:
                        return f"{other.name}.{net.name}"
            return None

    def _upstreams(self, container_id: str) -> list[tuple[str, int]]:
        """Where unknown names go; none for a container only on --internal networks
        (Docker does not proxy DNS out of those: the asker gets SERVFAIL)."""
        with self._lock:
            st = self.states.get(container_id)
            nets = [self.nets[n] for n in (st.endpoints if st else {}) if n in self.nets]
            if nets and all(n.internal for n in nets):
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
            if req.subnet is not None:
                if any(req.subnet.overlaps(u) for u in used):
                    raise Forbidden("Pool overlaps with other one on this address space")
                subnet = req.subnet
            else:
                routes = [r.dst for r in self.plumbing.nl.routes() if r.dst.prefixlen > 0]
                subnet = pick_subnet(self.pools, used + routes)
            gateway = req.gateway or subnet.network_address + 1
            net_id = new_id()
            bridge = req.options.get(OPT_BRIDGE_NAME) or f"br-{net_id[:12]}"
            if len(bridge) > 15:
                raise InvalidArgument(f"bridge name {bridge} is longer than 15 characters")
            rec = network_record(
                net_id=net_id, name=req.name, driver="bridge", subnet=str(subnet),
                gateway=str(gateway), ip_range=str(req.ip_range) if req.ip_range else "",
                internal=req.internal, attachable=req.attachable, options=req.options,
                labels=req.labels, bridge=bridge, ipam_options=req.ipam_options,
                aux_addresses=req.aux_addresses)
            net = Net(rec, make_pool(rec))
            self._ensure_bridge(net)
            self._save_net(net)
            self._event("create", net)
            return net_id, ""

    def list_networks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.inspect_network(n.id) for n in self.nets.values()]

    def inspect_network(self, ref: str) -> dict[str, Any]:
        with self._lock:
            net = self.find(ref)
            out = net.public()
            out["Containers"] = self._containers_of(net)
            return out

    def _containers_of(self, net: Net) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for st in self.states.values():
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
                "IPv6Address": "",
            }
        return out

    def in_use(self, net: Net) -> bool:
        return bool(self._containers_of(net))

    def remove_network(self, ref: str) -> None:
        with self._lock:
            net = self.find(ref)
            if net.name in PREDEFINED:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if self.in_use(net):
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} "
                                "has active endpoints")
            if net.bridge in self._bridges_ready and self._fw_ready:
                self.fw.remove_bridge(self._rules(net))
            self._bridges_ready.discard(net.bridge)
            self.plumbing.delete_bridge(net.bridge)
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
            if net.driver != "bridge":
                raise Forbidden(f"container cannot be disconnected from host network or "
                                f"connected to {net.name} network")
            if st.mode.startswith("container:") or (
                    st.mode in self.nets and self.nets[st.mode].driver != "bridge"):
                raise Forbidden("container sharing network namespace with another container or "
                                "host cannot be connected to any other network")
            if net.id in st.endpoints or (net.id in st.wanted and not running):
                raise Forbidden(f"endpoint with name {st.name} already exists in network "
                                f"{net.name}")
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
                    net.pool.release(ep.ip)
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
                if net.pool is not None:
                    net.pool.release(ep.ip)
                self.plumbing.detach(ep.veth)
                self._rewrite_hosts(st)
                self._event("disconnect", net, container_id)
            if self._dns is not None and not self._on_user_network(st):
                self._dns.unlisten(container_id)
            self.store.save_container(st)

    def _rewrite_hosts(self, st: ContainerState) -> None:
        """Keep /etc/hosts of a running container in line with its addresses (in place)."""
        path = self.layout.container_dir(st.container_id) / CONTAINER_HOSTS
        if not path.exists():
            return
        lines = [ln for ln in path.read_text().splitlines(keepends=True)
                 if not ln.rstrip().endswith(f"\t{st.hostname}") and
                 f"\t{st.hostname}." not in ln]
        lines += [f"{ep.ip}\t{st.hostname}\n" for ep in st.endpoints.values()]
        files.write_file(path, "".join(lines))


def _link_target(endpoint_config: dict[str, Any], qname: str, net_name: str) -> str | None:
    """The container name that *qname* stands for through one of the endpoint's legacy
    links (``EndpointSettings.Links``: ``name:alias``, or ``alias.network``), else None."""
    for spec in endpoint_config.get("Links") or []:
        name, _, alias = str(spec).partition(":")
        name = name.strip("/").lower()
        alias = (alias or name).strip("/").rsplit("/", 1)[-1].lower()
        if qname in (alias, f"{alias}.{net_name}"):
            return name
    return None
