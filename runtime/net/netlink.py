"""A minimal rtnetlink client: links, addresses and routes without spawning ``ip``.

Container start is on the hot path; one ``ip`` process costs ~2 ms, a netlink
round trip ~20 µs. Only the handful of messages bridge networking needs are
built here (see linux/rtnetlink.h, linux/if_link.h for the constants).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_GETROUTE = 26

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
NLA_F_NESTED = 0x8000
IFF_UP = 0x1
IFA_F_NODAD = 0x02
IFA_FLAGS = 8
RT_TABLE_MAIN = 254

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBi")
_RTMSG = struct.Struct("=BBBBBBBBI")


class NetlinkError(OSError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _str(kind: int, value: str) -> bytes:
    return _attr(kind, value.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _mac(value: str) -> bytes:
    return bytes(int(part, 16) for part in value.split(":"))


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4:
            return
        yield kind & ~NLA_F_NESTED, data[pos + 4 : pos + length]
        pos += (length + 3) & ~3


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    kind: str
    master: int
    up: bool


@dataclass(frozen=True, slots=True)
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    oif: int


class Netlink:
    """One rtnetlink socket, in the network namespace of the thread that opened it."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport --
    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self._sock.send(_HDR.pack(_HDR.size + len(body), msg_type, flags | NLM_F_REQUEST,
                                  self._seq, 0) + body)
        return self._seq

    def request(self, msg_type: int, flags: int, body: bytes) -> None:
        """Send one message and wait for its ack; kernel errors raise NetlinkError."""
        seq = self._send(msg_type, flags | NLM_F_ACK, body)
        while True:
            for mtype, mseq, payload in self._recv():
                if mseq != seq or mtype != NLMSG_ERROR:
                    continue
                code = -struct.unpack_from("=i", payload)[0]
                if code:
                    raise NetlinkError(code, os.strerror(code))
                return

    def dump(self, msg_type: int, body: bytes) -> Iterator[tuple[int, bytes]]:
        seq = self._send(msg_type, NLM_F_DUMP, body)
        while True:
            for mtype, mseq, payload in self._recv():
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    raise NetlinkError(code, os.strerror(code))
                yield mtype, payload

    def _recv(self) -> Iterator[tuple[int, int, bytes]]:
        data = self._sock.recv(1 << 16)
        pos = 0
        while pos + _HDR.size <= len(data):
            length, mtype, _flags, seq, _pid = _HDR.unpack_from(data, pos)
            yield mtype, seq, data[pos + _HDR.size : pos + length]
            pos += (length + 3) & ~3

    # -- links --
    def links(self) -> list[Link]:
        out = []
        for _t, payload in self.dump(RTM_GETLINK, _IFINFO.pack(0, 0, 0, 0, 0)):
            out.append(_parse_link(payload))
        return out

    def link(self, name: str) -> Link | None:
        try:
            seq = self._send(RTM_GETLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + _str(IFLA_IFNAME, name))
            while True:
                for mtype, mseq, payload in self._recv():
                    if mseq != seq:
                        continue
                    if mtype == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", payload)[0]
                        raise NetlinkError(code, os.strerror(code))
                    return _parse_link(payload)
        except NetlinkError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise

    def index(self, name: str) -> int:
        link = self.link(name)
        if link is None:
            raise NetlinkError(errno.ENODEV, f"no such device: {name}")
        return link.index

    def add_bridge(self, name: str, mac: str | None = None, mtu: int | None = None) -> None:
        body = _IFINFO.pack(0, 0, 0, 0, 0) + _str(IFLA_IFNAME, name)
        body += _attr(IFLA_LINKINFO | NLA_F_NESTED, _str(IFLA_INFO_KIND, "bridge"))
        if mac:
            body += _attr(IFLA_ADDRESS, _mac(mac))
        if mtu:
            body += _u32(IFLA_MTU, mtu)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def add_veth(self, name: str, peer: str, *, peer_ns_fd: int, peer_mac: str, master: int,
                 mtu: int | None = None) -> None:
        """One message: the pair, the peer moved into *peer_ns_fd*, our end up on *master*."""
        peer_body = _IFINFO.pack(0, 0, 0, 0, 0) + _str(IFLA_IFNAME, peer)
        peer_body += _u32(IFLA_NET_NS_FD, peer_ns_fd) + _attr(IFLA_ADDRESS, _mac(peer_mac))
        if mtu:
            peer_body += _u32(IFLA_MTU, mtu)
        info = _str(IFLA_INFO_KIND, "veth") + _attr(
            IFLA_INFO_DATA | NLA_F_NESTED, _attr(VETH_INFO_PEER | NLA_F_NESTED, peer_body))
        body = _IFINFO.pack(0, 0, 0, IFF_UP, IFF_UP) + _str(IFLA_IFNAME, name)
        body += _u32(IFLA_MASTER, master) + _attr(IFLA_LINKINFO | NLA_F_NESTED, info)
        if mtu:
            body += _u32(IFLA_MTU, mtu)
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body)

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, _IFINFO.pack(0, 0, index, IFF_UP, IFF_UP))

    def delete_link(self, name: str) -> bool:
        """Delete a link by name; False when it did not exist."""
        try:
            self.request(RTM_DELLINK, 0, _IFINFO.pack(0, 0, 0, 0, 0) + _str(IFLA_IFNAME, name))
        except NetlinkError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # -- addresses and routes --
    def add_address(self, index: int, iface: Interface) -> None:
        """Add *iface* to link *index* (already there is fine). An IPv6 address skips
        duplicate address detection (IFA_F_NODAD, as libnetwork does): the engine hands
        out unique addresses, and a tentative one could not be used for about a second."""
        addr = iface.ip.packed
        if isinstance(iface, ipaddress.IPv6Interface):
            body = _IFADDR.pack(socket.AF_INET6, iface.network.prefixlen, IFA_F_NODAD, 0, index)
            body += _attr(IFA_LOCAL, addr) + _attr(IFA_ADDRESS, addr)
            body += _u32(IFA_FLAGS, IFA_F_NODAD)
        else:
            body = _IFADDR.pack(socket.AF_INET, iface.network.prefixlen, 0, 0, index)
            body += _attr(IFA_LOCAL, addr) + _attr(IFA_ADDRESS, addr)
            body += _attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
        try:
            self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)
        except NetlinkError as e:
            if e.errno != errno.EEXIST:
                raise

    def add_default_route(self, gateway: Address, oif: int) -> None:
        family = socket.AF_INET6 if gateway.version == 6 else socket.AF_INET
        body = _RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, 3, 0, 1, 0)
        body += _attr(RTA_GATEWAY, gateway.packed) + _u32(RTA_OIF, oif)
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)

    def routes(self, family: int = socket.AF_INET) -> list[Route]:
        """Routes of the main table (to avoid subnets the host already uses)."""
        size = 16 if family == socket.AF_INET6 else 4
        out: list[Route] = []
        for _t, payload in self.dump(RTM_GETROUTE, _RTMSG.pack(family, *[0] * 8)):
            fam, dst_len, _s, _tos, table, _p, _sc, _ty, _f = _RTMSG.unpack_from(payload)
            dst, oif = b"\0" * size, 0
            for kind, value in _attrs(payload[_RTMSG.size :]):
                if kind == RTA_DST:
                    dst = value
                elif kind == RTA_OIF:
                    oif = struct.unpack("=I", value)[0]
                elif kind == RTA_TABLE:
                    table = struct.unpack("=I", value)[0]
            if fam != family or table != RT_TABLE_MAIN:
                continue
            if family == socket.AF_INET6:
                out.append(Route(ipaddress.IPv6Network(
                    (ipaddress.IPv6Address(dst), dst_len), strict=False), oif))
            else:
                out.append(Route(ipaddress.IPv4Network(
                    (ipaddress.IPv4Address(dst), dst_len), strict=False), oif))
        return out

    def addresses(self, index: int) -> list[ipaddress.IPv4Interface]:
        out = []
        for _t, payload in self.dump(RTM_GETADDR, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
            _fam, plen, _fl, _sc, idx = _IFADDR.unpack_from(payload)
            if idx != index:
                continue
            for kind, value in _attrs(payload[_IFADDR.size :]):
                if kind == IFA_LOCAL:
                    out.append(ipaddress.IPv4Interface((ipaddress.IPv4Address(value), plen)))
        return out

    def addresses6(self, index: int) -> list[ipaddress.IPv6Interface]:
        """The IPv6 addresses of link *index* (link-local ones included)."""
        out = []
        for _t, payload in self.dump(RTM_GETADDR, _IFADDR.pack(socket.AF_INET6, 0, 0, 0, 0)):
            fam, plen, _fl, _sc, idx = _IFADDR.unpack_from(payload)
            if idx != index or fam != socket.AF_INET6:
                continue
            for kind, value in _attrs(payload[_IFADDR.size :]):
                if kind == IFA_ADDRESS:
                    out.append(ipaddress.IPv6Interface((ipaddress.IPv6Address(value), plen)))
        return out


def _parse_link(payload: bytes) -> Link:
    _fam, _type, index, flags, _change = _IFINFO.unpack_from(payload)
    name, kind, master = "", "", 0
    for attr, value in _attrs(payload[_IFINFO.size :]):
        if attr == IFLA_IFNAME:
            name = value.rstrip(b"\0").decode()
        elif attr == IFLA_MASTER:
            master = struct.unpack("=I", value)[0]
        elif attr == IFLA_LINKINFO:
            for sub, sval in _attrs(value):
                if sub == IFLA_INFO_KIND:
                    kind = sval.rstrip(b"\0").decode()
    return Link(index, name, kind, master, bool(flags & IFF_UP))
