"""Published ports as the engine reports them (``GET /containers/json``).

Cove's engine publishes ports with kernel DNAT, which holds no listening socket, so
/proc/net/tcp alone never sees them; the events stream takes the union of both sources.
"""

from __future__ import annotations

import http.client
import json
import socket

from guestagent.protocol import Port


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("engine", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def parse_containers(body: bytes) -> set[Port]:
    found: set[Port] = set()
    for container in json.loads(body) or []:
        for p in container.get("Ports") or []:
            public = p.get("PublicPort")
            if public and p.get("Type", "tcp") == "tcp":
                found.add(Port(proto="tcp", port=int(public)))
    return found


def published_ports(engine_socket: str, timeout: float = 3.0) -> set[Port]:
    """Host ports of running containers; empty when the engine does not answer."""
    conn = _UnixConnection(engine_socket, timeout)
    try:
        conn.request("GET", "/containers/json")
        resp = conn.getresponse()
        body = resp.read()
        return parse_containers(body) if resp.status == 200 else set()
    except (OSError, ValueError, http.client.HTTPException):
        return set()
    finally:
        conn.close()
