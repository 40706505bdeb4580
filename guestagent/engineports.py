"""Published ports as the engine reports them (``GET /containers/json``).

Cove's engine publishes ports with kernel DNAT, which holds no listening socket, so
/proc/net/tcp alone never sees them; the events stream takes the union of both sources.
"""

from __future__ import annotations

import json
from typing import Any

from guestagent.protocol import Port
from runtime.api.client import Client
from runtime.api.errors import CoveError
from runtime.api.transport import UnixSocketTransport


def parse_containers(listing: bytes | list[Any]) -> set[Port]:
    """TCP host ports in a ``/containers/json`` answer (raw body or decoded)."""
    containers = json.loads(listing) if isinstance(listing, bytes) else listing
    found: set[Port] = set()
    for container in containers or []:
        for p in container.get("Ports") or []:
            public = p.get("PublicPort")
            if public and p.get("Type", "tcp") == "tcp":
                found.add(Port(proto="tcp", port=int(public)))
    return found


def published_ports(engine_socket: str, timeout: float = 3.0) -> set[Port]:
    """Host ports of running containers; empty when the engine does not answer."""
    client = Client(UnixSocketTransport(engine_socket, timeout))
    try:
        return parse_containers(client.call("GET", "/containers/json"))
    except (OSError, ValueError, CoveError):
        return set()
