"""The embedded DNS server of user-defined networks (Docker's 127.0.0.11).

For each container on a user network the engine opens a UDP and a TCP socket
*inside the container's network namespace* bound to 127.0.0.11:53 (a socket
keeps the namespace it was created in), and serves all of them from one thread
here. So it answers only containers on user networks, knows which container
asks, and resolves names within the networks that container is attached to.

Semantics follow Docker's resolver: A and AAAA for container names, aliases and
short ids (an empty NOERROR when the name exists without an address of that family,
e.g. AAAA of a container on no IPv6 network); PTR for container addresses, IPv4 and
IPv6 (``name.network``); anything else - including names of
containers on networks the asker is not on - is relayed to the upstream
resolvers from the host's namespace, over the protocol the query came in on.
A container only on ``--internal`` networks gets no upstreams: SERVFAIL.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from runtime.net._sys import in_netns

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.11"
TTL = 600
TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
RCODE_REFUSED = 5
TCP_IDLE = 5.0  # seconds a DNS-over-TCP client may keep a connection without a query
_ARPA = ".in-addr.arpa"
_ARPA6 = ".ip6.arpa"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# (container id, lower-case name without trailing dot) -> addresses, or None if not ours.
Resolver = Callable[[str, str], list[Address] | None]
# (container id, address) -> "name.network" of a container the asker can see, or None.
Reverse = Callable[[str, Address], str | None]
Upstreams = Callable[[str], list[tuple[str, int]]]


def parse_question(packet: bytes) -> tuple[str, int, int] | None:
    """(name, qtype, offset after the question) of a standard query, else None."""
    if len(packet) < 12:
        return None
    flags, qdcount = struct.unpack_from("!HH", packet, 2)
    if flags & 0x8000 or (flags >> 11) & 0xF or qdcount != 1:
        return None
    labels, pos = [], 12
    while pos < len(packet):
        n = packet[pos]
        pos += 1
        if n == 0:
            break
        if n & 0xC0:
            return None
        labels.append(packet[pos : pos + n].decode("ascii", "replace"))
        pos += n
    if pos + 4 > len(packet):
        return None
    qtype = struct.unpack_from("!H", packet, pos)[0]
    return ".".join(labels).lower(), qtype, pos + 4


def ptr_address(name: str) -> Address | None:
    """``4.3.2.1.in-addr.arpa`` -> 1.2.3.4, 32 nibbles ``.ip6.arpa`` -> the IPv6 address;
    None for anything else."""
    if name.endswith(_ARPA6):
        nibbles = name[: -len(_ARPA6)].split(".")
        if len(nibbles) != 32 or any(len(n) != 1 for n in nibbles):
            return None
        try:
            return ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16))
        except ValueError:
            return None
    if not name.endswith(_ARPA):
        return None
    parts = name[: -len(_ARPA)].split(".")
    if len(parts) != 4:
        return None
    try:
        return ipaddress.IPv4Address(".".join(reversed(parts)))
    except ValueError:
        return None


def encode_name(name: str) -> bytes:
    out = b"".join(bytes([len(lb)]) + lb.encode("ascii", "replace")
                   for lb in name.strip(".").split(".") if lb)
    return out + b"\0"


def _head(query: bytes, ancount: int, rcode: int = 0) -> bytes:
    """A reply header: QR, AA, RD copied, RA; one question."""
    flags = 0x8400 | (struct.unpack_from("!H", query, 2)[0] & 0x0100) | 0x0080 | rcode
    return query[:2] + struct.pack("!HHHHH", flags, 1, ancount, 0, 0)


def answer(query: bytes, qend: int, qtype: int, ips: list[Address]) -> bytes:
    """An authoritative reply for a name we own: its addresses of the asked family (none
    of it: an empty NOERROR)."""
    version = 4 if qtype == TYPE_A else 6
    records = [ip for ip in ips if ip.version == version]
    body = query[12:qend]
    for ip in records:
        body += struct.pack("!HHHIH", 0xC00C, qtype, 1, TTL, len(ip.packed)) + ip.packed
    return _head(query, len(records)) + body


def answer_ptr(query: bytes, qend: int, target: str) -> bytes:
    rdata = encode_name(target)
    rr = struct.pack("!HHHIH", 0xC00C, TYPE_PTR, 1, TTL, len(rdata)) + rdata
    return _head(query, 1) + query[12:qend] + rr


def failure(query: bytes, rcode: int) -> bytes:
    parsed = parse_question(query)
    qend = parsed[2] if parsed else 12
    flags = 0x8080 | (struct.unpack_from("!H", query, 2)[0] & 0x0100) | rcode
    return query[:2] + struct.pack("!HHHHH", flags, 1 if parsed else 0, 0, 0, 0) + query[12:qend]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def read_tcp_message(sock: socket.socket) -> bytes:
    (size,) = struct.unpack("!H", _recv_exact(sock, 2))
    return _recv_exact(sock, size)


def tcp_frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


class DnsServer:
    def __init__(self, resolve: Resolver, upstreams: Upstreams, *, reverse: Reverse | None = None,
                 timeout: float = 2.0) -> None:
        self._resolve = resolve
        self._reverse = reverse
        self._upstreams = upstreams
        self._timeout = timeout
        self._lock = threading.Lock()
        # fd -> (container id, socket, is a TCP listener)
        self._socks: dict[int, tuple[str, socket.socket, bool]] = {}
        self._by_container: dict[str, list[socket.socket]] = {}
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cove-dns-fwd")
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="cove-dns", daemon=True)
        self._thread.start()

    def listen(self, container_id: str, netns_fd: int) -> None:
        """Open 127.0.0.11:53 (UDP and TCP) in the container's namespace (idempotent)."""
        with self._lock:
            if container_id in self._by_container:
                return
        with in_netns(netns_fd):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            udp.bind((ADDRESS, 53))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((ADDRESS, 53))
            tcp.listen(16)
        except OSError:
            udp.close()
            tcp.close()
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        with self._lock:
            self._by_container[container_id] = [udp, tcp]
            for sock, listener in ((udp, False), (tcp, True)):
                self._socks[sock.fileno()] = (container_id, sock, listener)
                self._epoll.register(sock.fileno(), select.EPOLLIN)

    def unlisten(self, container_id: str) -> None:
        with self._lock:
            for sock in self._by_container.pop(container_id, []):
                self._socks.pop(sock.fileno(), None)
                try:
                    self._epoll.unregister(sock.fileno())
                except OSError:
                    pass
                sock.close()

    def listening(self) -> list[str]:
        with self._lock:
            return list(self._by_container)

    def close(self) -> None:
        self._stopped = True
        os.write(self._wake_w, b"x")
        self._thread.join(2)
        with self._lock:
            for _cid, sock, _listener in self._socks.values():
                sock.close()
            self._socks.clear()
            self._by_container.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ------------------------------------------------------------------ event loop
    def _loop(self) -> None:
        while not self._stopped:
            try:
                events = self._epoll.poll(1.0)
            except OSError:
                return
            for fd, _ev in events:
                if fd == self._wake_r:
                    continue
                with self._lock:
                    entry = self._socks.get(fd)
                if entry is None:
                    continue
                container_id, sock, listener = entry
                if listener:
                    self._accept(container_id, sock)
                else:
                    self._drain(container_id, sock)

    def _drain(self, container_id: str, sock: socket.socket) -> None:
        while True:
            try:
                packet, client = sock.recvfrom(4096)
            except (BlockingIOError, OSError):
                return
            try:
                reply = self._local(container_id, packet)
                if reply is not None:
                    sock.sendto(reply, client)
                elif parse_question(packet) is not None:
                    self._pool.submit(self._forward_udp, container_id, sock, packet, client)
            except Exception:
                log.exception("dns: query from %s failed", container_id[:12])

    def _accept(self, container_id: str, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, OSError):
                return
            self._pool.submit(self._serve_tcp, container_id, conn)

    # ------------------------------------------------------------------ answering
    def _local(self, container_id: str, packet: bytes) -> bytes | None:
        """Our own answer to *packet*, or None when it is to be forwarded."""
        parsed = parse_question(packet)
        if parsed is None:
            return None
        name, qtype, qend = parsed
        if qtype in (TYPE_A, TYPE_AAAA):
            ips = self._resolve(container_id, name)
            if ips is not None:
                return answer(packet, qend, qtype, ips)
        elif qtype == TYPE_PTR and self._reverse is not None:
            addr = ptr_address(name)
            target = self._reverse(container_id, addr) if addr is not None else None
            if target is not None:
                return answer_ptr(packet, qend, target)
        return None

    def _serve_tcp(self, container_id: str, conn: socket.socket) -> None:
        """One DNS-over-TCP client: length-prefixed queries until it closes or idles."""
        with conn:
            conn.setblocking(True)
            conn.settimeout(TCP_IDLE)
            while not self._stopped:
                try:
                    packet = read_tcp_message(conn)
                except (OSError, ConnectionError, struct.error):
                    return
                if parse_question(packet) is None:
                    return
                reply = self._local(container_id, packet)
                if reply is None:
                    reply = self._upstream(container_id, packet, tcp=True)
                try:
                    conn.sendall(tcp_frame(reply))
                except OSError:
                    return

    def _forward_udp(self, container_id: str, sock: socket.socket, packet: bytes,
                     client: tuple[str, int]) -> None:
        reply = self._upstream(container_id, packet, tcp=False)
        try:
            sock.sendto(reply, client)
        except OSError:
            pass

    def _upstream(self, container_id: str, packet: bytes, *, tcp: bool) -> bytes:
        """The first usable upstream reply (Docker: SERVFAIL/REFUSED and non-authoritative
        NXDOMAIN try the next server), the last one seen, or SERVFAIL."""
        last: bytes | None = None
        for server in self._upstreams(container_id):
            try:
                reply = self._ask(server, packet, tcp)
            except (OSError, ConnectionError, struct.error):
                continue
            last = reply
            flags = struct.unpack_from("!H", reply, 2)[0]
            rcode = flags & 0xF
            if rcode in (RCODE_SERVFAIL, RCODE_REFUSED):
                continue
            if rcode == RCODE_NXDOMAIN and not flags & 0x0400:
                continue
            return reply
        return last if last is not None else failure(packet, RCODE_SERVFAIL)

    def _ask(self, server: tuple[str, int], packet: bytes, tcp: bool) -> bytes:
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC) as up:
            up.settimeout(self._timeout)
            up.connect(server)
            if tcp:
                up.sendall(tcp_frame(packet))
                return read_tcp_message(up)
            up.send(packet)
            while True:
                reply = up.recv(65535)
                if reply[:2] == packet[:2] and len(reply) >= 12:
                    return reply
