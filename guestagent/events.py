"""``guestagent events``: a JSON-lines stream of port and engine changes, driven by a Clock.

The stream starts with a ``snapshot`` so the host can reconcile after a reconnect, then sends
diffs. Polling /proc/net/tcp every ``interval`` seconds is what Lima does; it needs no
cooperation from the engine and also catches ports of processes started by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from guestagent.clock import Clock
from guestagent.ports import diff
from guestagent.protocol import API_PORT, Event, Port

# sshd itself (the host reaches it through the VM's own forward) and the API relay listener
IGNORED_PORTS = frozenset({22, API_PORT})


def watch(
    clock: Clock,
    list_ports: Callable[[], set[Port]],
    engine_up: Callable[[], bool],
    *,
    interval: float = 1.0,
    heartbeat: float = 5.0,
) -> Iterator[Event]:
    """Yield events forever (the caller stops iterating); never raises on transient errors."""
    ports = {p for p in list_ports() if p.port not in IGNORED_PORTS}
    up = engine_up()
    yield Event(type="snapshot", ports=tuple(sorted(ports)), time=clock.time())
    yield Event(type="engine", state="up" if up else "down", time=clock.time())
    last_beat = clock.time()
    while True:
        clock.sleep(interval)
        now_ports = {p for p in list_ports() if p.port not in IGNORED_PORTS}
        opened, closed = diff(ports, now_ports)
        ports = now_ports
        for p in closed:
            yield Event(type="port", action="close", port=p, time=clock.time())
        for p in opened:
            yield Event(type="port", action="open", port=p, time=clock.time())
        now_up = engine_up()
        if now_up != up:
            up = now_up
            yield Event(type="engine", state="up" if up else "down", time=clock.time())
        if clock.time() - last_beat >= heartbeat:
            last_beat = clock.time()
            yield Event(type="heartbeat", time=last_beat)
