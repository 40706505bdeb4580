"""What container networking puts on the host itself: bridges, the engine's packet-filter
table, ip_forward and the shared netns directory. Each is set up on first need and
tracked, so that restore() can rebuild it and purge() can remove every trace."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

from runtime.layout import EngineLayout
from runtime.net import _sys, forwarding
from runtime.net.backends import FirewallBackend
from runtime.net.firewall import BridgeRules, PortRule
from runtime.net.model import Net
from runtime.net.plumbing import Plumbing
from runtime.net.store import ContainerState

PortRules = Callable[[], list[PortRule]]  # every published port's rule, asked when needed


def bridge_rules(net: Net) -> BridgeRules:
    assert net.pool is not None
    return BridgeRules(net.bridge, net.pool.subnet, net.internal, net.nat)


class HostSide:
    def __init__(self, layout: EngineLayout, fw: FirewallBackend) -> None:
        self.layout = layout
        self.fw = fw
        self._plumbing: Plumbing | None = None
        self.fw_ready = False  # our table holds every ready bridge's and port's rules
        self.bridges_ready: set[str] = set()
        self._netns_shared = False

    @property
    def plumbing(self) -> Plumbing:
        if self._plumbing is None:
            self._plumbing = Plumbing()
        return self._plumbing

    @property
    def active(self) -> bool:
        """Whether any bridge or rule of ours may be on the host."""
        return bool(self.bridges_ready) or self.fw_ready

    def ensure_firewall(self, nets: Iterable[Net], port_rules: PortRules) -> None:
        if self.fw_ready:
            return
        rules = [bridge_rules(n) for n in nets if n.bridge in self.bridges_ready]
        self.fw.rebuild(rules, port_rules())
        self.fw_ready = True

    def rebuild_firewall(self, nets: Iterable[Net], port_rules: PortRules) -> None:
        """The whole table again, whatever a crashed engine left in it."""
        self.fw_ready = False
        self.ensure_firewall(nets, port_rules)

    def ensure_bridge(self, net: Net, nets: Iterable[Net], port_rules: PortRules) -> None:
        """*net*'s bridge up with its rules (the first bridge builds the table: *nets* and
        *port_rules* are what goes in it), and ip_forward held for a NAT'ed one."""
        if net.bridge in self.bridges_ready:
            return
        assert net.pool is not None
        gw = ipaddress.IPv4Interface(f"{net.pool.gateway}/{net.pool.subnet.prefixlen}")
        gw6 = (ipaddress.IPv6Interface(f"{net.pool6.gateway}/{net.pool6.subnet.prefixlen}")
               if net.pool6 is not None else None)
        self.plumbing.ensure_bridge(net.bridge, gw, net.mtu, gw6)
        self.bridges_ready.add(net.bridge)
        if self.fw_ready:
            self.fw.add_bridge(bridge_rules(net))
        else:
            self.ensure_firewall(nets, port_rules)
        if net.nat:
            # ip_forward on while our NAT'ed bridges are up (host-wide refcount: forwarding.py)
            forwarding.hold(str(self.layout.exec_root))

    def unpublish(self, rules: list[PortRule]) -> None:
        if rules and self.fw_ready:
            self.fw.unpublish(rules)

    def remove_bridge(self, net: Net) -> None:
        if net.bridge in self.bridges_ready and self.fw_ready:
            self.fw.remove_bridge(bridge_rules(net))
        self.bridges_ready.discard(net.bridge)
        self.plumbing.delete_bridge(net.bridge)

    def netns_dir(self) -> Path:
        """Where the containers' netns files are bound (a shared mount, made once)."""
        d = self.layout.netns
        d.mkdir(parents=True, exist_ok=True)
        if not self._netns_shared:
            _sys.make_shared_dir(str(d))
            self._netns_shared = True
        return d

    def clean_leftovers(self, nets: Iterable[Net], states: Mapping[str, ContainerState],
                        live: Collection[str]) -> None:
        """After a crash: netns files of containers not running any more, and veths on our
        bridges that no endpoint owns."""
        d = self.layout.netns
        if d.is_dir():
            for entry in d.iterdir():
                st = states.get(entry.name)
                if entry.name not in live or st is None or not st.running:
                    self.plumbing.remove_sandbox(str(entry))
        bridges = {n.bridge for n in nets if n.bridge}
        keep = {ep.veth for st in states.values() for ep in st.endpoints.values()}
        for veth in self.plumbing.stale_veths(bridges, keep):
            self.plumbing.detach(veth)

    def destroy(self, nets: Iterable[Net]) -> None:
        """Bridges, table, ip_forward hold and the netns mount gone from the host."""
        for net in nets:
            if net.bridge:
                self.plumbing.delete_bridge(net.bridge)
        self.bridges_ready.clear()
        self.fw.destroy()
        self.fw_ready = False
        forwarding.release(str(self.layout.exec_root))
        d = str(self.layout.netns)
        if self._netns_shared and _sys.is_mountpoint(d):
            _sys.umount(d)
            self._netns_shared = False

    def close(self) -> None:
        if self._plumbing is not None:
            self._plumbing.close()
            self._plumbing = None
