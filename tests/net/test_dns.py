"""The embedded DNS on 127.0.0.11: UDP and TCP, PTR, AAAA, forwarding as Docker (root)."""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

import pytest

from runtime.net._sys import in_netns
from runtime.net.dns import TYPE_AAAA, TYPE_PTR, parse_question, read_tcp_message, tcp_frame
from tests.net.conftest import cid, dns_query, in_ns, setup

pytestmark = pytest.mark.root


@pytest.fixture
def backend() -> str:
    return "nftables"  # DNS does not depend on the packet filter: one backend is enough


def ask(netns: str, packet: bytes, *, tcp: bool = False) -> bytes:
    """Send *packet* to 127.0.0.11:53 from inside *netns* (a socket keeps its namespace)."""
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with in_netns(fd):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    finally:
        os.close(fd)
    with s:
        s.settimeout(5)
        s.connect(("127.0.0.11", 53))
        if tcp:
            s.sendall(tcp_frame(packet))
            return read_tcp_message(s)
        s.send(packet)
        return s.recv(4096)


def rcode(reply: bytes) -> int:
    return int(struct.unpack_from("!H", reply, 2)[0]) & 0xF


def answers(reply: bytes) -> int:
    return int(struct.unpack_from("!H", reply, 6)[0])


def a_records(reply: bytes) -> list[str]:
    """The IPv4 addresses of the A records of a reply we built (fixed-size records)."""
    parsed = parse_question(reply[:2] + b"\0\0" + reply[4:])  # parse as if a query
    assert parsed is not None
    pos, out = parsed[2], []
    for _ in range(answers(reply)):
        rtype, _cls, _ttl, size = struct.unpack_from("!HHIH", reply, pos + 2)
        if rtype == 1:
            out.append(socket.inet_ntoa(reply[pos + 12 : pos + 12 + size]))
        pos += 12 + size
    return out


@pytest.fixture
def pair(manager: Any) -> tuple[Any, Any, str]:
    manager.create_network({"Name": "t-dns2"})
    web = setup(manager, cid(40), "web", NetworkMode="t-dns2", networking_config={
        "EndpointsConfig": {"t-dns2": {"Aliases": ["www"]}}})
    client = setup(manager, cid(41), "client", NetworkMode="t-dns2")
    return web, client, web.settings["Networks"]["t-dns2"]["IPAddress"]


def test_udp_and_tcp_answer_the_same(pair: tuple[Any, Any, str]) -> None:
    _web, client, ip = pair
    for tcp in (False, True):
        reply = ask(client.netns_path, dns_query("www"), tcp=tcp)
        assert rcode(reply) == 0 and a_records(reply) == [ip], tcp


def test_aaaa_of_a_container_is_empty_noerror(pair: tuple[Any, Any, str]) -> None:
    _web, client, _ip = pair
    reply = ask(client.netns_path, dns_query("web", TYPE_AAAA))
    assert rcode(reply) == 0 and answers(reply) == 0
    out = in_ns(client.netns_path, "busybox", "nslookup", "-type=aaaa", "web", "127.0.0.11")
    assert "NXDOMAIN" not in out.stdout + out.stderr


def test_ptr_names_the_container_on_the_network(pair: tuple[Any, Any, str]) -> None:
    _web, client, ip = pair
    arpa = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    reply = ask(client.netns_path, dns_query(arpa, TYPE_PTR), tcp=True)
    assert rcode(reply) == 0 and answers(reply) == 1 and b"\x03web\x06t-dns2\x00" in reply
    out = in_ns(client.netns_path, "busybox", "nslookup", ip, "127.0.0.11")
    assert "web.t-dns2" in out.stdout, out.stdout + out.stderr


def test_unknown_and_foreign_names_are_forwarded(manager: Any, upstream: Any,
                                                 pair: tuple[Any, Any, str]) -> None:
    _web, client, _ip = pair
    manager.create_network({"Name": "t-other"})
    other = setup(manager, cid(42), "stranger", NetworkMode="t-other")
    other_ip = other.settings["Networks"]["t-other"]["IPAddress"]
    # A container on another network is not ours to answer: the upstream's word counts.
    reply = ask(client.netns_path, dns_query("stranger"))
    assert a_records(reply) == ["127.0.0.7"] and other_ip not in a_records(reply)
    reply = ask(client.netns_path, dns_query("nxname"), tcp=True)
    assert rcode(reply) == 3  # the upstream's NXDOMAIN, relayed over TCP
    assert upstream.tcp_queries
    out = in_ns(client.netns_path, "busybox", "nslookup", "nxname", "127.0.0.11")
    assert "NXDOMAIN" in out.stdout + out.stderr


def test_internal_network_gets_no_forwarding(manager: Any, upstream: Any) -> None:
    manager.create_network({"Name": "t-inner", "Internal": True})
    a = setup(manager, cid(43), "inner-a", NetworkMode="t-inner")
    setup(manager, cid(44), "inner-b", NetworkMode="t-inner")
    before = len(upstream.queries)
    assert a_records(ask(a.netns_path, dns_query("inner-b")))  # own network still resolves
    assert rcode(ask(a.netns_path, dns_query("example.com"))) == 2  # SERVFAIL, not relayed
    assert len(upstream.queries) == before


def test_link_alias_resolves_for_the_linking_container_only(manager: Any, upstream: Any) -> None:
    # docker-py's test_create_with_links order: the linking container starts before its target.
    manager.create_network({"Name": "t-links"})
    linker = setup(manager, cid(45), "linker", NetworkMode="t-links", networking_config={
        "EndpointsConfig": {"t-links": {"Links": ["/upstream-x:bar"]}}})
    assert linker.settings["Networks"]["t-links"]["Links"] == ["/upstream-x:bar"]
    bystander = setup(manager, cid(46), "bystander", NetworkMode="t-links")
    target = setup(manager, cid(47), "upstream-x", NetworkMode="t-links")
    ip = target.settings["Networks"]["t-links"]["IPAddress"]
    assert a_records(ask(linker.netns_path, dns_query("bar"))) == [ip]
    assert a_records(ask(linker.netns_path, dns_query("bar.t-links"))) == [ip]
    assert a_records(ask(linker.netns_path, dns_query("upstream-x"))) == [ip]
    # The alias is the linking endpoint's own: anyone else's query goes upstream.
    assert a_records(ask(bystander.netns_path, dns_query("bar"))) == ["127.0.0.7"]


def test_connect_with_links_adds_the_alias(manager: Any) -> None:
    manager.create_network({"Name": "t-links2"})
    target = setup(manager, cid(48), "upstream-y", NetworkMode="t-links2")
    ip = target.settings["Networks"]["t-links2"]["IPAddress"]
    c = setup(manager, cid(49), "joiner", NetworkMode="t-links2")
    manager.disconnect("t-links2", cid(49))
    manager.connect("t-links2", cid(49), endpoint_config={"Links": ["upstream-y:baz"]},
                    running=True)
    assert a_records(ask(c.netns_path, dns_query("baz"))) == [ip]
