"""Published ports as the engine reports them, and the engine events that change them.

Cove's engine publishes ports with kernel DNAT, which holds no listening socket, so
/proc/net/tcp alone never sees them: ``GET /containers/json`` is the source of truth, and
``GET /events`` (:class:`EngineEvents`) says when to read it again.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

from guestagent.clock import Clock
from guestagent.events import Wake
from guestagent.protocol import Port
from runtime.api import streams
from runtime.api.client import Client, Filters
from runtime.api.errors import CoveError
from runtime.api.transport import UnixSocketTransport

# What can change the published ports: a container starting or going away (die; destroy for
# a forced rm, which kills without a die event), and a container joining or leaving a network
# (ports are published on its endpoint). stop, kill and restart always come with die/start.
PORT_EVENTS: Filters = {
    "type": ["container", "network"],
    "event": ["start", "die", "destroy", "connect", "disconnect"],
}


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


def published_ports(engine_socket: str, timeout: float = 3.0) -> set[Port] | None:
    """Host ports of running containers; None when the engine does not answer."""
    client = Client(UnixSocketTransport(engine_socket, timeout))
    try:
        return parse_containers(client.call("GET", "/containers/json"))
    except (OSError, ValueError, CoveError):
        return None


class EngineEvents:
    """The engine's ``/events`` stream, read on a daemon thread, as :class:`Wake` values.

    The thread posts UP when the stream opens, CHANGED for port-relevant events (at most one
    waiting at a time: a burst such as kill/die/destroy costs one re-read), and DOWN when
    the stream ends or cannot be opened; then it retries with backoff. Blocked in recv()
    between events, it costs no CPU at idle.
    """

    def __init__(
        self,
        engine_socket: str,
        clock: Clock,
        *,
        head_timeout: float = 10.0,
        backoff: tuple[float, float] = (0.2, 2.0),
    ) -> None:
        self.engine_socket = engine_socket
        self.clock = clock
        self.head_timeout = head_timeout
        self.backoff = backoff
        self._wakes: queue.SimpleQueue[Wake] = queue.SimpleQueue()
        self._change_queued = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="engine-events")

    def start(self) -> EngineEvents:
        self._thread.start()
        return self

    def wait(self, timeout: float) -> Wake:
        try:
            wake = self._wakes.get(timeout=timeout)
        except queue.Empty:
            return Wake.QUIET
        if wake is Wake.CHANGED:
            # Cleared before the caller re-reads, so an event landing after this is queued
            # again, and one landing before it is covered by that re-read.
            self._change_queued.clear()
        return wake

    def _run(self) -> None:
        delay = self.backoff[0]
        up: bool | None = None
        while True:
            if self._follow():
                up, delay = True, self.backoff[0]
            elif up is not False:
                delay = self.backoff[0]
            else:
                delay = min(delay * 2, self.backoff[1])
            if up is not False:
                up = False
                self._wakes.put(Wake.DOWN)
            self.clock.sleep(delay)

    def _follow(self) -> bool:
        """Stream events until the engine goes away; False if the stream never opened."""
        # since: events published between our request and the engine's subscription (it
        # sends its headers first) come as backlog, so the re-read after UP misses none.
        since = f"{self.clock.time():.9f}"
        client = Client(UnixSocketTransport(self.engine_socket, self.head_timeout))
        try:
            resp = client.open("GET", "/events", {"since": since, "filters": PORT_EVENTS})
        except (OSError, CoveError):
            return False
        try:
            resp.sock.settimeout(None)  # events may be hours apart
            self._wakes.put(Wake.UP)
            for _ in streams.json_messages(resp.readline):
                if not self._change_queued.is_set():
                    self._change_queued.set()
                    self._wakes.put(Wake.CHANGED)
        except (OSError, ValueError, CoveError):
            pass  # the engine went away mid-stream: the caller reports DOWN
        finally:
            resp.close()
        return True
