"""IPv6 on user-defined bridge networks, through a real engine, the docker CLI and docker-py.

Subnets are from the documentation prefix 2001:db8::/32 (or the engine's own fd00::/8
ULA /48); traffic only flows between containers on the engine's bridge. The host's IPv6
sysctls and packet filter are never touched (only the test bridge's own disable_ipv6).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.net.dns import TYPE_A, TYPE_AAAA, answer, parse_question, ptr_address
from runtime.net.ipam import Pool6, pick_subnet6, ula_base
from runtime.net.model import parse_create
from tests.net.conftest import dns_query
from tests.net.helpers import cli

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")

HTTPD = "mkdir -p /www && echo hi-v6 > /www/index.html && exec httpd -f -p 80 -h /www"


# ---------------------------------------------------------------------- pure pieces
def test_create_request_validation_follows_moby() -> None:
    def body(**ipam: Any) -> dict[str, Any]:
        return {"Name": "n", "EnableIPv6": True, "IPAM": {"Config": [ipam]}}

    req = parse_create(body(Subnet="2001:db8:1::/64", Gateway="2001:db8:1::ffff",
                            IPRange="2001:db8:1::/96"))
    assert req.enable_ipv6 and req.ipv6 is not None
    assert str(req.ipv6.subnet) == "2001:db8:1::/64"
    with pytest.raises(Exception, match="it should be 2001:db8:1::/64"):
        parse_create(body(Subnet="2001:db8:1::5/64"))
    with pytest.raises(Exception, match="doesn't contain this address"):
        parse_create(body(Subnet="2001:db8:1::/64", Gateway="2001:db8:2::1"))
    with pytest.raises(Exception, match="doesn't contain ip-range"):
        parse_create(body(Subnet="2001:db8:1::/64", IPRange="2001:db8:2::/96"))
    with pytest.raises(Exception, match="Link-Local"):
        parse_create(body(Subnet="fe80::/60"))
    # Without EnableIPv6, moby takes IPv6 configs unchecked and allocates nothing from them.
    req = parse_create({"Name": "n", "IPAM": {"Config": [{"Subnet": "2001:db8:1::5/64"}]}})
    assert not req.enable_ipv6 and req.ipv6 is None and req.subnet is None
    assert req.ipv6_unused == ({"Subnet": "2001:db8:1::5/64"},)


def test_pool6_hands_out_in_order_and_refuses_taken_or_foreign() -> None:
    pool = Pool6(ipaddress.IPv6Network("2001:db8:9::/64"), ipaddress.IPv6Address("2001:db8:9::1"))
    assert str(pool.allocate()) == "2001:db8:9::2"
    assert str(pool.allocate("2001:db8:9::10")) == "2001:db8:9::10"
    with pytest.raises(Exception, match="Address already in use"):
        pool.allocate("2001:db8:9::10")
    with pytest.raises(Exception, match="Address already in use"):
        pool.allocate("2001:db8:9::1")  # the gateway
    with pytest.raises(Exception, match="no configured subnet"):
        pool.allocate("2001:db8:8::10")
    pool.release("2001:db8:9::2")
    assert str(pool.allocate()) == "2001:db8:9::3"  # round robin, as libnetwork


def test_ula_pool_is_per_engine_and_skips_used_subnets() -> None:
    a, b = ula_base("engine-a"), ula_base("engine-b")
    assert a.prefixlen == 48 and a.subnet_of(ipaddress.IPv6Network("fd00::/8")) and a != b
    first = pick_subnet6(a, [])
    assert first.prefixlen == 64 and pick_subnet6(a, [first]) != first


def test_dns_answers_aaaa_and_ip6_ptr() -> None:
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv4Address("10.0.0.2"), ipaddress.IPv6Address("2001:db8::2")]
    for qtype, rdlen, packed in ((TYPE_A, 4, ips[0].packed), (TYPE_AAAA, 16, ips[1].packed)):
        q = dns_query("web", qtype)
        parsed = parse_question(q)
        assert parsed is not None
        reply = answer(q, parsed[2], qtype, ips)
        assert reply[6:8] == b"\0\1"  # one answer, of the asked family only
        assert reply.endswith(rdlen.to_bytes(2, "big") + packed)
    q = dns_query("web", TYPE_AAAA)
    parsed = parse_question(q)
    assert parsed is not None
    assert answer(q, parsed[2], TYPE_AAAA, ips[:1])[6:8] == b"\0\0"  # empty NOERROR
    name = ".".join(reversed(ipaddress.IPv6Address("2001:db8::2").exploded.replace(":", "")))
    assert ptr_address(name + ".ip6.arpa") == ipaddress.IPv6Address("2001:db8::2")
    assert ptr_address("1.2.ip6.arpa") is None


# ---------------------------------------------------------------------- the engine
def inspect(engine: Any, kind: str, ref: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli(engine, kind, "inspect", ref).stdout)[0]
    return data


def ip6_addrs(dev: str, netns: str | None = None) -> str:
    argv = ["ip", "-6", "-o", "addr", "show", "dev", dev]
    if netns:
        argv = ["nsenter", f"--net={netns}", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def host_routes6() -> str:
    return subprocess.run(["ip", "-6", "route", "show"], capture_output=True, text=True,
                          check=False).stdout


def bridge_of(net: dict[str, Any]) -> str:
    return f"br-{net['Id'][:12]}"


def bridge_ports(bridge: str) -> list[str]:
    d = Path(f"/sys/class/net/{bridge}/brif")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


@contextlib.contextmanager
def network(engine: Any, name: str, *args: str) -> Iterator[dict[str, Any]]:
    cli(engine, "network", "create", *args, name)
    try:
        yield inspect(engine, "network", name)
    finally:
        cli(engine, "network", "rm", name, check=False)


def rm(engine: Any, *names: str) -> None:
    cli(engine, "rm", "-f", *names, check=False)


@pytest.mark.root
def test_create_inspect_and_remove_an_ipv6_network(engine: Any) -> None:
    with network(engine, "v6-create", "--ipv6", "--subnet", "2001:db8:71::/64",
                 "--gateway", "2001:db8:71::ffff", "--ip-range", "2001:db8:71::/96") as net:
        assert net["EnableIPv6"] is True
        configs = net["IPAM"]["Config"]
        assert len(configs) == 2 and ":" not in configs[0]["Subnet"]  # IPv4 first, as moby
        assert configs[1] == {"Subnet": "2001:db8:71::/64", "Gateway": "2001:db8:71::ffff",
                              "IPRange": "2001:db8:71::/96"}
        bridge = bridge_of(net)
        assert "2001:db8:71::ffff/64" in ip6_addrs(bridge)
        listed = json.loads(cli(engine, "network", "ls", "--filter", "name=v6-create",
                                "--format", "{{json .}}").stdout)
        assert listed["IPv6"] == "true"
        # A second network may not overlap the first's IPv6 subnet.
        bad = cli(engine, "network", "create", "--ipv6", "--subnet", "2001:db8:71::/48",
                  "v6-overlap", check=False)
        assert bad.returncode != 0 and "overlaps" in bad.stderr
    assert not Path(f"/sys/class/net/{bridge}").exists()
    assert "2001:db8:71::" not in host_routes6()


@pytest.mark.root
def test_enable_ipv6_without_a_subnet_gets_a_ula_64(engine: Any) -> None:
    with network(engine, "v6-ula", "--ipv6") as net:
        v6 = [c for c in net["IPAM"]["Config"] if ":" in c["Subnet"]]
        assert len(v6) == 1
        subnet = ipaddress.IPv6Network(v6[0]["Subnet"])
        assert subnet.prefixlen == 64 and subnet.subnet_of(ipaddress.IPv6Network("fd00::/8"))
        assert v6[0]["Gateway"] == str(subnet.network_address + 1)
        with network(engine, "v6-ula2", "--ipv6") as other:
            v6b = [c for c in other["IPAM"]["Config"] if ":" in c["Subnet"]]
            assert v6b[0]["Subnet"] != v6[0]["Subnet"]
        cli(engine, "run", "-d", "--name", "v6-ula-c", "--network", "v6-ula", "busybox",
            "sleep", "60")
        try:
            ep = inspect(engine, "container", "v6-ula-c")["NetworkSettings"]["Networks"]["v6-ula"]
            assert ipaddress.IPv6Address(ep["GlobalIPv6Address"]) in subnet
            # --ip6 needs a subnet the user configured (moby's rule).
            bad = cli(engine, "run", "--rm", "--network", "v6-ula", "--ip6",
                      str(subnet.network_address + 50), "busybox", "true", check=False)
            assert bad.returncode != 0 and "user configured subnets" in bad.stderr
        finally:
            rm(engine, "v6-ula-c")


@pytest.mark.root
def test_ipv6_subnet_without_enable_ipv6_is_accepted_and_unused(engine: Any) -> None:
    """moby: the IPv6 config is neither validated nor allocated from (inspect leaves it out),
    but a requested IPv6Address is checked against it and echoed in IPAMConfig."""
    with network(engine, "v6-off", "--subnet", "2001:db8:73::/64") as net:
        assert net["EnableIPv6"] is False
        assert all(":" not in c["Subnet"] for c in net["IPAM"]["Config"])
        cli(engine, "run", "-d", "--name", "v6-off-c", "--network", "v6-off", "--ip6",
            "2001:db8:73::5", "busybox", "sleep", "60")
        try:
            ep = inspect(engine, "container", "v6-off-c")["NetworkSettings"]["Networks"]["v6-off"]
            assert ep["IPAMConfig"]["IPv6Address"] == "2001:db8:73::5"
            assert ep["GlobalIPv6Address"] == "" and ep["IPv6Gateway"] == ""
        finally:
            rm(engine, "v6-off-c")
        bad = cli(engine, "run", "--rm", "--network", "v6-off", "--ip6", "2001:db8:99::5",
                  "busybox", "true", check=False)
        assert bad.returncode != 0
        assert "no configured subnet or ip-range contain the IP address" in bad.stderr


@pytest.mark.root
def test_containers_talk_over_ipv6_and_resolve_aaaa(engine: Any) -> None:
    with network(engine, "v6-talk", "--ipv6", "--subnet", "2001:db8:72::/64") as net:
        cli(engine, "run", "-d", "--name", "v6-web", "--network", "v6-talk", "--ip6",
            "2001:db8:72::10", "busybox", "sh", "-c", HTTPD)
        try:
            info = inspect(engine, "container", "v6-web")
            ep = info["NetworkSettings"]["Networks"]["v6-talk"]
            assert ep["GlobalIPv6Address"] == "2001:db8:72::10"
            assert ep["GlobalIPv6PrefixLen"] == 64
            assert ep["IPv6Gateway"] == "2001:db8:72::1"
            assert ep["IPAMConfig"] == {"IPv6Address": "2001:db8:72::10"}
            # The legacy top-level fields are the default bridge's only (moby).
            assert info["NetworkSettings"]["GlobalIPv6Address"] == ""
            members = inspect(engine, "network", "v6-talk")["Containers"]
            assert members[info["Id"]]["IPv6Address"] == "2001:db8:72::10/64"
            netns = info["NetworkSettings"]["SandboxKey"]
            line = [ln for ln in ip6_addrs("eth0", netns).splitlines()
                    if "2001:db8:72::10/64" in ln]
            assert line and "tentative" not in line[0]  # nodad: usable at once
            routes = subprocess.run(["nsenter", f"--net={netns}", "ip", "-6", "route"],
                                    capture_output=True, text=True, check=False).stdout
            assert "default via 2001:db8:72::1 dev eth0" in routes
            hosts = Path(info["HostsPath"]).read_text()
            assert "2001:db8:72::10\t" in hosts
            script = ("ping -6 -c1 -W5 2001:db8:72::10 && "
                      "wget -qO- 'http://[2001:db8:72::10]/' && "
                      "nslookup -type=aaaa v6-web 127.0.0.11 && "
                      "nslookup -type=a v6-web 127.0.0.11 && "
                      "nslookup 2001:db8:72::10 127.0.0.11 && ip -6 -o addr show dev eth0")
            out = cli(engine, "run", "--rm", "--network", "v6-talk", "busybox", "sh", "-c",
                      script, check=False)
            assert out.returncode == 0, out.stdout + out.stderr
            assert "hi-v6" in out.stdout
            assert "2001:db8:72::10" in out.stdout  # the AAAA record
            assert info["NetworkSettings"]["Networks"]["v6-talk"]["IPAddress"] in out.stdout
            assert "2001:db8:72::2/64" in out.stdout  # the next free one (::1: gateway)
            assert "v6-web.v6-talk" in out.stdout  # PTR of the IPv6 address
            veths = bridge_ports(bridge_of(net))
            assert len(veths) == 1
        finally:
            rm(engine, "v6-web")
        assert bridge_ports(bridge_of(net)) == []


@pytest.mark.root
def test_requested_addresses_refused_cleanly(engine: Any) -> None:
    with network(engine, "v6-bad", "--ipv6", "--subnet", "2001:db8:74::/64") as net:
        cli(engine, "run", "-d", "--name", "v6-a", "--network", "v6-bad", "--ip6",
            "2001:db8:74::20", "busybox", "sleep", "60")
        try:
            dup = cli(engine, "run", "--name", "v6-dup", "--network", "v6-bad", "--ip6",
                      "2001:db8:74::20", "busybox", "true", check=False)
            assert dup.returncode != 0 and "Address already in use" in dup.stderr
            rm(engine, "v6-dup")
            out = cli(engine, "run", "--rm", "--network", "v6-bad", "--ip6", "2001:db8:75::1",
                      "busybox", "true", check=False)
            assert out.returncode != 0
            assert "no configured subnet or ip-range contain the IP address" in out.stderr
            # Refused at create, as moby does: no container is left behind.
            for wanted, message in (("not-an-ip", "invalid IPv6 address"),
                                    ("2001:db8:75::1", "no configured subnet")):
                status, body = engine.request("POST", "/containers/create?name=v6-inv", {
                    "Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "v6-bad"},
                    "NetworkingConfig": {"EndpointsConfig": {"v6-bad": {
                        "IPAMConfig": {"IPv6Address": wanted}}}}})
                assert status == 400 and message in body["message"], body
                assert engine.request("GET", "/containers/v6-inv/json")[0] == 404
            # Connecting a stopped container is checked too.
            cli(engine, "create", "--name", "v6-inv", "busybox", "true")
            bad = cli(engine, "network", "connect", "--ip6", "2001:db8:75::1", "v6-bad",
                      "v6-inv", check=False)
            assert bad.returncode != 0 and "no configured subnet" in bad.stderr
            rm(engine, "v6-inv")
            # The refused ones leaked nothing: only v6-a's veth is on the bridge, and the
            # address a refused container asked for is free for the next one.
            assert len(bridge_ports(bridge_of(net))) == 1
            rm(engine, "v6-a")
            cli(engine, "run", "--rm", "--network", "v6-bad", "--ip6", "2001:db8:74::20",
                "busybox", "true")
        finally:
            rm(engine, "v6-a", "v6-dup", "v6-inv")


@pytest.mark.root
def test_connect_and_disconnect_with_ip6(engine: Any, docker: Any) -> None:
    with network(engine, "v6-conn", "--ipv6", "--subnet", "2001:db8:76::/64") as net:
        cli(engine, "run", "-d", "--name", "v6-c1", "busybox", "sleep", "60")
        cli(engine, "run", "-d", "--name", "v6-c2", "--network", "v6-conn", "busybox",
            "sleep", "60")
        try:
            cli(engine, "network", "connect", "--ip6", "2001:db8:76::30", "v6-conn", "v6-c1")
            info = inspect(engine, "container", "v6-c1")
            ep = info["NetworkSettings"]["Networks"]["v6-conn"]
            assert ep["GlobalIPv6Address"] == "2001:db8:76::30"
            assert ep["IPAMConfig"]["IPv6Address"] == "2001:db8:76::30"
            netns = info["NetworkSettings"]["SandboxKey"]
            assert "2001:db8:76::30/64" in ip6_addrs("eth1", netns)
            ping = cli(engine, "exec", "v6-c2", "ping", "-6", "-c1", "-W5", "2001:db8:76::30",
                       check=False)
            assert ping.returncode == 0, ping.stdout + ping.stderr
            # docker-py sees the same (the shape its own tests check).
            attrs = docker.containers.get("v6-c1").attrs
            assert attrs["NetworkSettings"]["Networks"]["v6-conn"]["GlobalIPv6PrefixLen"] == 64
            # Taken while connected; free again after disconnect.
            dup = cli(engine, "network", "connect", "--ip6", "2001:db8:76::30", "v6-conn",
                      "v6-c2", check=False)
            assert dup.returncode != 0
            cli(engine, "network", "disconnect", "v6-conn", "v6-c1")
            assert "v6-conn" not in inspect(engine, "container", "v6-c1")[
                "NetworkSettings"]["Networks"]
            cli(engine, "run", "--rm", "--network", "v6-conn", "--ip6", "2001:db8:76::30",
                "busybox", "true")
            assert len(bridge_ports(bridge_of(net))) == 1  # v6-c2's only
        finally:
            rm(engine, "v6-c1", "v6-c2")


@pytest.mark.root
def test_engine_restart_keeps_the_ipv6_allocation(private_engine: Any) -> None:
    eng = private_engine
    cli(eng, "network", "create", "--ipv6", "--subnet", "2001:db8:77::/64", "v6-keep")
    cli(eng, "run", "-d", "--name", "keep1", "--network", "v6-keep", "busybox", "sleep", "300")
    before = inspect(eng, "container", "keep1")["NetworkSettings"]["Networks"]["v6-keep"]
    assert before["GlobalIPv6Address"] == "2001:db8:77::2"
    eng.stop()
    eng.start()
    net = inspect(eng, "network", "v6-keep")
    assert net["EnableIPv6"] is True
    assert [c["Subnet"] for c in net["IPAM"]["Config"] if ":" in c["Subnet"]] == [
        "2001:db8:77::/64"]
    after = inspect(eng, "container", "keep1")["NetworkSettings"]["Networks"]["v6-keep"]
    assert after["GlobalIPv6Address"] == "2001:db8:77::2"
    # The restarted engine knows ::2 is taken; the adopted container is still reachable.
    cli(eng, "run", "-d", "--name", "keep2", "--network", "v6-keep", "busybox", "sleep", "300")
    ep2 = inspect(eng, "container", "keep2")["NetworkSettings"]["Networks"]["v6-keep"]
    assert ep2["GlobalIPv6Address"] == "2001:db8:77::3"
    ping = cli(eng, "exec", "keep2", "ping", "-6", "-c1", "-W5", "2001:db8:77::2", check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    bridge = bridge_of(net)
    cli(eng, "rm", "-f", "keep1", "keep2")
    cli(eng, "network", "rm", "v6-keep")
    assert not Path(f"/sys/class/net/{bridge}").exists()
    assert "2001:db8:77::" not in host_routes6()


@pytest.mark.root
def test_ipv6_default_route_from_the_first_network_with_ipv6(engine: Any) -> None:
    """A container whose first network has no IPv6 still gets its IPv6 default route from
    a later one (libnetwork picks the gateway endpoint per family)."""
    with network(engine, "v6-first4"), \
            network(engine, "v6-second6", "--ipv6", "--subnet", "2001:db8:78::/64"):
        out = cli(engine, "run", "--rm", "--network", "v6-first4", "--network", "v6-second6",
                  "busybox", "sh", "-c", "ip route; ip -6 route")
        assert "default via" in out.stdout.split("\n")[0]
        assert "default via 2001:db8:78::1 dev eth1" in out.stdout


@pytest.mark.root
def test_cove_cli_ip6_on_run_and_connect(engine: Any) -> None:
    """cove's own verbs take --ip6 as docker's do (the same request bodies)."""
    import sys

    def cove(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runtime.cli.main", "-H", engine.url,
                               *args], capture_output=True, text=True, timeout=60, check=False)

    with network(engine, "v6-cove", "--ipv6", "--subnet", "2001:db8:77::/64"):
        try:
            out = cove("run", "--rm", "--network", "v6-cove", "--ip6", "2001:db8:77::41",
                       "busybox", "ip", "-6", "-o", "addr", "show", "dev", "eth0")
            assert out.returncode == 0, out.stderr
            assert "2001:db8:77::41/64" in out.stdout
            assert cove("run", "-d", "--name", "v6-cove-c", "busybox", "sleep", "60"
                        ).returncode == 0
            conn = cove("network", "connect", "--ip6", "2001:db8:77::42", "v6-cove", "v6-cove-c")
            assert conn.returncode == 0, conn.stderr
            ep = inspect(engine, "container", "v6-cove-c")["NetworkSettings"]["Networks"]
            assert ep["v6-cove"]["GlobalIPv6Address"] == "2001:db8:77::42"
            bad = cove("run", "--rm", "--network", "v6-cove", "--ip6", "2001:db8:99::1",
                       "busybox", "true")
            assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
            assert "2001:db8:99::1" in bad.stderr
        finally:
            rm(engine, "v6-cove-c")
