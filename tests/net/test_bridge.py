"""Real traffic between namespaces on the engine's own bridges (needs root)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runtime.api.errors import Conflict, Forbidden
from tests.net.conftest import BRIDGE, TABLE, cid, dns_query, in_ns, our_iptables_rules, setup

pytestmark = pytest.mark.root

SERVER = """
import socket, sys
kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
if kind == socket.SOCK_STREAM:
    s.listen(8)
print("ready", flush=True)
while True:
    if kind == socket.SOCK_DGRAM:
        data, addr = s.recvfrom(100)
        s.sendto(b"pong:" + data, addr)
    else:
        c, _ = s.accept()
        c.sendall(b"hello from " + socket.gethostname().encode())
        c.close()
"""


@contextmanager
def server(netns: str, proto: str = "tcp", port: int = 80) -> Iterator[None]:
    proc = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-c", SERVER, proto,
                             str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()


def tcp_get(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=5) as s:
        return s.recv(100)


def test_two_containers_talk_on_the_default_bridge(manager: Any) -> None:
    a, b = setup(manager, cid(1)), setup(manager, cid(2))
    ip_b = b.settings["Networks"]["bridge"]["IPAddress"]
    assert b.settings["IPAddress"] == ip_b and ip_b.startswith("10.231.7.")
    assert in_ns(a.netns_path, "busybox", "ping", "-c1", "-W2", ip_b).returncode == 0
    with server(b.netns_path):
        out = in_ns(a.netns_path, "busybox", "nc", "-w", "3", ip_b, "80")
        assert out.stdout.startswith("hello")


def test_published_tcp_port_from_host_loopback(manager: Any) -> None:
    n = setup(manager, cid(3), PortBindings={"80/tcp": [{"HostIp": "", "HostPort": "0"}]},
              config={"ExposedPorts": {"80/tcp": {}}})
    host_port = int(n.settings["Ports"]["80/tcp"][0]["HostPort"])
    assert host_port > 0 and n.settings["Ports"]["80/tcp"][0]["HostIp"] == "0.0.0.0"
    with server(n.netns_path):
        assert tcp_get("127.0.0.1", host_port).startswith(b"hello")


def test_published_port_on_127_0_0_1_only(manager: Any) -> None:
    n = setup(manager, cid(4), PortBindings={"80/tcp": [{"HostIp": "127.0.0.1",
                                                        "HostPort": "0"}]})
    port = int(n.settings["Ports"]["80/tcp"][0]["HostPort"])
    assert n.settings["Ports"]["80/tcp"][0]["HostIp"] == "127.0.0.1"
    with server(n.netns_path):
        assert tcp_get("127.0.0.1", port).startswith(b"hello")


def test_published_udp_port(manager: Any) -> None:
    n = setup(manager, cid(5), PortBindings={"53/udp": [{"HostPort": "0"}]})
    port = int(n.settings["Ports"]["53/udp"][0]["HostPort"])
    with server(n.netns_path, "udp", 53):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(b"ping", ("127.0.0.1", port))
        assert s.recvfrom(100)[0] == b"pong:ping"
        s.close()


def test_publish_all_assigns_host_ports(manager: Any) -> None:
    n = setup(manager, cid(6), PublishAllPorts=True,
              config={"ExposedPorts": {"80/tcp": {}, "81/udp": {}}})
    ports = n.settings["Ports"]
    assert set(ports) == {"80/tcp", "81/udp"}
    assert all(int(v[0]["HostPort"]) > 0 for v in ports.values())


def test_host_port_in_use_is_a_clear_conflict_and_leaves_nothing(manager: Any,
                                                                  layout: Any) -> None:
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        with pytest.raises(Conflict, match=f"0.0.0.0:{port}.*already in use"):
            setup(manager, cid(7), PortBindings={"80/tcp": [{"HostPort": str(port)}]})
    finally:
        busy.close()
    assert not (layout.netns / cid(7)).exists()
    assert str(port) not in manager.fw.listing()
    assert manager._default().pool.taken == set()


def test_same_host_port_twice_is_already_allocated(manager: Any) -> None:
    setup(manager, cid(8), PortBindings={"80/tcp": [{"HostPort": "18231"}]})
    with pytest.raises(Conflict, match="port is already allocated"):
        setup(manager, cid(9), PortBindings={"80/tcp": [{"HostPort": "18231"}]})
    manager.teardown(cid(8))
    setup(manager, cid(9), PortBindings={"80/tcp": [{"HostPort": "18231"}]})


def test_ip_not_reused_right_away(manager: Any) -> None:
    first = setup(manager, cid(10)).settings["IPAddress"]
    manager.teardown(cid(10))
    second = setup(manager, cid(11)).settings["IPAddress"]
    assert first != second


def test_user_networks_are_isolated_and_internal_has_no_way_out(manager: Any) -> None:
    n1, _ = manager.create_network({"Name": "t-one"})
    n2, _ = manager.create_network({"Name": "t-two", "Internal": True})
    a = setup(manager, cid(12), NetworkMode="t-one")
    b = setup(manager, cid(13), NetworkMode="t-two")
    c = setup(manager, cid(14), NetworkMode="t-one")
    ip_b = b.settings["Networks"]["t-two"]["IPAddress"]
    ip_c = c.settings["Networks"]["t-one"]["IPAddress"]
    assert in_ns(a.netns_path, "busybox", "ping", "-c1", "-W2", ip_c).returncode == 0
    assert in_ns(a.netns_path, "busybox", "ping", "-c1", "-W1", ip_b).returncode != 0
    routes = in_ns(b.netns_path, "busybox", "ip", "route").stdout
    assert "default" not in routes
    # Even the engine's own other bridge is out of reach from the internal network.
    gw_one = a.settings["Networks"]["t-one"]["Gateway"]
    assert in_ns(b.netns_path, "busybox", "ping", "-c1", "-W1", gw_one).returncode != 0
    assert n1 != n2


def test_embedded_dns_resolves_names_and_aliases_and_forwards(manager: Any,
                                                              upstream: Any) -> None:
    manager.create_network({"Name": "t-dns"})
    web = setup(manager, cid(15), "web", NetworkMode="t-dns", networking_config={
        "EndpointsConfig": {"t-dns": {"Aliases": ["www"]}}})
    client = setup(manager, cid(16), "client", NetworkMode="t-dns")
    ip_web = web.settings["Networks"]["t-dns"]["IPAddress"]
    assert web.settings["Networks"]["t-dns"]["DNSNames"][0] == "web"
    resolv = Path(client.mounts[1].source).read_text()
    assert "nameserver 127.0.0.11" in resolv
    for name in ("web", "www", cid(15)[:12], "web.t-dns"):
        out = in_ns(client.netns_path, "busybox", "nslookup", name, "127.0.0.11")
        assert ip_web in out.stdout, out.stdout + out.stderr
    out = in_ns(client.netns_path, "busybox", "nslookup", "example.invalid", "127.0.0.11")
    assert "127.0.0.7" in out.stdout  # the (loopback) upstream's answer
    assert upstream.queries


def test_no_embedded_dns_on_the_default_bridge(manager: Any) -> None:
    n = setup(manager, cid(17))
    probe = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
try:
    s.sendto({dns_query('x')!r}, ("127.0.0.11", 53)); s.recv(512); print("answered")
except OSError:
    print("silent")
"""
    assert in_ns(n.netns_path, sys.executable, "-c", probe).stdout.strip() == "silent"
    assert "127.0.0.11" not in Path(n.mounts[1].source).read_text()


def test_connect_and_disconnect_a_running_container(manager: Any) -> None:
    manager.create_network({"Name": "t-conn"})
    a = setup(manager, cid(18))
    peer = setup(manager, cid(19), NetworkMode="t-conn")
    ip_peer = peer.settings["Networks"]["t-conn"]["IPAddress"]
    assert in_ns(a.netns_path, "busybox", "ping", "-c1", "-W1", ip_peer).returncode != 0
    manager.connect("t-conn", cid(18), endpoint_config={"Aliases": ["later"]}, running=True)
    settings = manager.settings(cid(18))
    assert settings["Networks"]["t-conn"]["IPAddress"]
    assert in_ns(a.netns_path, "busybox", "ping", "-c1", "-W2", ip_peer).returncode == 0
    assert cid(18) in manager.inspect_network("t-conn")["Containers"]
    with pytest.raises(Forbidden):
        manager.remove_network("t-conn")
    manager.disconnect("t-conn", cid(18))
    assert "t-conn" not in manager.settings(cid(18))["Networks"]
    assert in_ns(a.netns_path, "busybox", "ping", "-c1", "-W1", ip_peer).returncode != 0


def test_host_and_none_modes(manager: Any) -> None:
    host = setup(manager, cid(20), NetworkMode="host", ExtraHosts=["db:10.231.7.9"])
    assert host.netns_path is None and not host.create_netns
    assert "10.231.7.9\tdb" in Path(host.mounts[0].source).read_text()
    assert list(host.settings["Networks"]) == ["host"]
    none = setup(manager, cid(21), NetworkMode="none")
    assert none.netns_path is None and none.create_netns
    assert list(none.settings["Networks"]) == ["none"]


def test_host_gateway_and_dns_options(manager: Any) -> None:
    n = setup(manager, cid(22), ExtraHosts=["host.docker.internal:host-gateway"],
              Dns=["10.231.7.1"], DnsSearch=["example.test"], DnsOptions=["ndots:2"])
    hosts = Path(n.mounts[0].source).read_text()
    assert "10.231.7.1\thost.docker.internal" in hosts
    resolv = Path(n.mounts[1].source).read_text()
    assert "nameserver 10.231.7.1" in resolv and "search example.test" in resolv
    assert "options ndots:2" in resolv


def test_static_ip_and_mac_on_user_network(manager: Any) -> None:
    manager.create_network({"Name": "t-static", "IPAM": {"Config": [
        {"Subnet": "10.233.5.0/24", "Gateway": "10.233.5.254", "IPRange": "10.233.5.128/25"}]}})
    n = setup(manager, cid(23), NetworkMode="t-static", config={"MacAddress": "02:aa:bb:cc:dd:ee"},
              networking_config={"EndpointsConfig": {"t-static": {
                  "IPAMConfig": {"IPv4Address": "10.233.5.10"}}}})
    ep = n.settings["Networks"]["t-static"]
    assert ep["IPAddress"] == "10.233.5.10" and ep["Gateway"] == "10.233.5.254"
    assert ep["MacAddress"] == "02:aa:bb:cc:dd:ee"
    dyn = setup(manager, cid(24), NetworkMode="t-static")
    assert dyn.settings["Networks"]["t-static"]["IPAddress"].startswith("10.233.5.1")
    link = in_ns(n.netns_path, "busybox", "ip", "link", "show", "eth0").stdout
    assert "02:aa:bb:cc:dd:ee" in link


def test_nothing_left_after_teardown_and_purge(manager: Any, layout: Any) -> None:
    manager.create_network({"Name": "t-gone"})
    a = setup(manager, cid(25), PortBindings={"80/tcp": [{"HostPort": "0"}]})
    b = setup(manager, cid(26), NetworkMode="t-gone")
    veths = [ep.veth for st in manager.states.values() for ep in st.endpoints.values()]
    manager.teardown(cid(25))
    manager.teardown(cid(26))
    assert not os.path.exists(a.netns_path) and not os.path.exists(b.netns_path)
    manager.remove_network("t-gone")
    manager.purge()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        if not any(v in links for v in veths):
            break
        time.sleep(0.05)
    assert not any(v in links for v in veths) and BRIDGE not in links
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert TABLE not in tables
    assert our_iptables_rules() == ""  # chains and jumps: the last network took them along
    assert str(layout.netns) not in Path("/proc/self/mountinfo").read_text()


def test_restore_cleans_what_a_crash_left(layout: Any, upstream: Any, backend: str) -> None:
    import ipaddress

    from runtime.engine.events import EventBus
    from runtime.net.manager import NetworkManager

    def make() -> NetworkManager:
        return NetworkManager(layout, EventBus(), bridge_name=BRIDGE, bridge_cidr="10.231.7.1/24",
                              nft_table=TABLE,
                              default_pools=[(ipaddress.IPv4Network("10.232.0.0/16"), 24)],
                              dns_upstreams=[("127.0.0.1", upstream.port)])

    first = make()
    try:
        live = setup(first, cid(27))
        dead = setup(first, cid(28), PortBindings={"80/tcp": [{"HostPort": "18232"}]})
        first.shutdown()  # "crash": the kernel state stays
        second = make()
        second.restore({cid(27)})
        assert os.path.exists(live.netns_path) and not os.path.exists(dead.netns_path)
        assert "18232" not in second.fw.listing()
        assert second.settings(cid(27))["IPAddress"] == live.settings["IPAddress"]
        again = setup(second, cid(29), PortBindings={"80/tcp": [{"HostPort": "18232"}]})
        assert again.settings["IPAddress"] != live.settings["IPAddress"]
        second.purge()
    finally:
        first.purge()


def test_backend_in_use_carries_the_rules(manager: Any, backend: str) -> None:
    from runtime.net.iptables import IptablesFirewall

    setup(manager, cid(31), PortBindings={"80/tcp": [{"HostPort": "18233"}]})
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    rules = our_iptables_rules()
    if backend == "iptables":
        assert isinstance(manager.fw, IptablesFirewall) and TABLE not in nft
        assert "--dport 18233" in rules and "-A FORWARD -j " in rules
        assert "-A PREROUTING -m addrtype --dst-type LOCAL -j " in rules
    else:
        assert TABLE in nft and rules == "" and "18233" in manager.fw.listing()


def test_legacy_links_on_the_default_bridge_write_hosts_entries(manager: Any) -> None:
    child = setup(manager, cid(23), "db")
    ip = child.settings["Networks"]["bridge"]["IPAddress"]
    parent = setup(manager, cid(24), "app", Links=["/db:/app/database", "db"])
    hosts = Path(parent.mounts[0].source).read_text()
    # moby: "<ip>\t<alias> <child hostname> <child name>", the name only if not the alias.
    assert f"{ip}\tdatabase {cid(23)[:12]} db\n" in hosts
    assert f"{ip}\tdb {cid(23)[:12]}\n" in hosts
