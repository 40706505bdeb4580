"""The embedded DNS server of user-defined networks (Docker's 127.0.0.11).

For each container on a user network the engine opens a UDP socket *inside the
container's network namespace* bound to 127.0.0.11:53 (a socket keeps the
namespace it was created in), and serves all of them from one thread here. So
it answers only containers on user networks, knows which container asks, and
resolves names within the networks that container is attached to. Other
queries are relayed to the upstream resolvers from the host's namespace.
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
TYPE_AAAA = 28
RCODE_SERVFAIL = 2

# (container id, lower-case name without trailing dot) -> addresses, or None if not ours.
Resolver = Callable[[str, str], list[ipaddress.IPv4Address] | None]
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


def answer(query: bytes, qend: int, qtype: int, ips: list[ipaddress.IPv4Address]) -> bytes:
    """An authoritative reply for a name we own (AAAA gets an empty NOERROR)."""
    records = ips if qtype == TYPE_A else []
    flags = 0x8400 | (struct.unpack_from("!H", query, 2)[0] & 0x0100) | 0x0080
    head = query[:2] + struct.pack("!HHHHH", flags, 1, len(records), 0, 0)
    body = query[12:qend]
    for ip in records:
        body += struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, TTL, 4) + ip.packed
    return head + body


def failure(query: bytes, rcode: int) -> bytes:
    parsed = parse_question(query)
    qend = parsed[2] if parsed else 12
    flags = 0x8080 | (struct.unpack_from("!H", query, 2)[0] & 0x0100) | rcode
    return query[:2] + struct.pack("!HHHHH", flags, 1 if parsed else 0, 0, 0, 0) + query[12:qend]


class DnsServer:
    def __init__(self, resolve: Resolver, upstreams: Upstreams, *, timeout: float = 2.0) -> None:
        self._resolve = resolve
        self._upstreams = upstreams
        self._timeout = timeout
        self._lock = threading.Lock()
        self._socks: dict[int, tuple[str, socket.socket]] = {}
        self._by_container: dict[str, socket.socket] = {}
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="cove-dns-fwd")
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="cove-dns", daemon=True)
        self._thread.start()

    def listen(self, container_id: str, netns_fd: int) -> None:
        """Open 127.0.0.11:53 in the container's namespace (idempotent)."""
        with self._lock:
            if container_id in self._by_container:
                return
        with in_netns(netns_fd):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind((ADDRESS, 53))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        with self._lock:
            self._socks[sock.fileno()] = (container_id, sock)
            self._by_container[container_id] = sock
            self._epoll.register(sock.fileno(), select.EPOLLIN)

    def unlisten(self, container_id: str) -> None:
        with self._lock:
            sock = self._by_container.pop(container_id, None)
            if sock is None:
                return
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
            for _cid, sock in self._socks.values():
                sock.close()
            self._socks.clear()
            self._by_container.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._epoll.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

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
                if entry is not None:
                    self._drain(*entry)

    def _drain(self, container_id: str, sock: socket.socket) -> None:
        while True:
            try:
                packet, client = sock.recvfrom(4096)
            except (BlockingIOError, OSError):
                return
            try:
                self._handle(container_id, sock, packet, client)
            except Exception:
                log.exception("dns: query from %s failed", container_id[:12])

    def _handle(self, container_id: str, sock: socket.socket, packet: bytes,
                client: tuple[str, int]) -> None:
        parsed = parse_question(packet)
        if parsed is None:
            return
        name, qtype, qend = parsed
        if qtype in (TYPE_A, TYPE_AAAA):
            ips = self._resolve(container_id, name)
            if ips is not None:
                sock.sendto(answer(packet, qend, qtype, ips), client)
                return
        self._pool.submit(self._forward, container_id, sock, packet, client)

    def _forward(self, container_id: str, sock: socket.socket, packet: bytes,
                 client: tuple[str, int]) -> None:
        for server in self._upstreams(container_id):
            up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                up.settimeout(self._timeout)
                up.connect(server)
                up.send(packet)
                while True:
                    reply = up.recv(65535)
                    if reply[:2] == packet[:2]:
                        break
            except OSError:
                continue
            finally:
                up.close()
            try:
                sock.sendto(reply, client)
            except OSError:
                pass
            return
        try:
            sock.sendto(failure(packet, RCODE_SERVFAIL), client)
        except OSError:
            pass
