"""``guestagent events``: a JSON-lines stream of port and engine changes, driven by the engine.

The stream starts with a ``snapshot`` (the host reconciles its forwards against it after each
reconnect) and the engine's state, then sends diffs. Nothing is polled at a fast rate: under
QEMU's TCG every wake-up of the agent, and every request it makes the engine answer, costs
guest CPU at idle.

- Published ports follow the engine's own ``GET /events``: each container start, die or
  destroy and each network connect or disconnect (an :class:`EngineFeed` wake) makes the
  agent re-read the whole port set and send the difference. The listing stays the one
  source of truth, so a lost or misread event can never leave a port behind.
- A slow resync (every ``resync`` seconds) heals whatever a missed event left.
- Listening sockets in /proc/net/tcp (``--network host`` containers, processes started by
  hand) have no engine event of their own. They are re-read with every engine change, a few
  times in the seconds after one (a server binds some time after its container's ``start``
  event) and at each resync; a listener that appears later than that waits for the resync.
- When the engine's event stream ends (the engine stopped or restarted), the agent says
  ``engine down`` and keeps the ports it last saw: Cove publishes ports with kernel DNAT,
  which keeps working while no engine runs. On reconnect it says ``engine up`` and resyncs.
- A ``heartbeat`` every ``heartbeat`` seconds lets the host notice a dead channel.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from guestagent.clock import Clock
from guestagent.ports import diff
from guestagent.protocol import API_PORT, Event, Port

# sshd itself (the host reaches it through the VM's own forward) and the API relay listener
IGNORED_PORTS = frozenset({22, API_PORT})


class Wake(enum.Enum):
    """Why :meth:`EngineFeed.wait` returned."""

    UP = "up"  # the engine's event stream is (again) connected
    DOWN = "down"  # it ended or could not be opened: the engine is gone or restarting
    CHANGED = "changed"  # the engine reported something that can change published ports
    QUIET = "quiet"  # the timeout ran out with nothing to report


class EngineFeed(Protocol):
    def wait(self, timeout: float) -> Wake:
        """Block for at most *timeout* seconds; the first thing that happened, else QUIET."""
        ...


@dataclass(frozen=True, slots=True)
class Timing:
    resync: float = 30.0  # full re-read even without an engine event
    heartbeat: float = 5.0
    first_state: float = 3.0  # how long to wait for the engine's first word before "down"
    settle: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)  # /proc re-reads after each change


class _PortView:
    """The port set the host should forward: guest listeners plus the engine's published
    ports, the latter kept from the last good answer while the engine does not answer."""

    def __init__(
        self,
        host_ports: Callable[[], set[Port]],
        engine_ports: Callable[[], set[Port] | None],
    ) -> None:
        self._host_ports, self._engine_ports = host_ports, engine_ports
        self._published: set[Port] = set()

    def read(self, ask_engine: bool) -> set[Port]:
        if ask_engine and (answer := self._engine_ports()) is not None:
            self._published = answer
        return {p for p in self._host_ports() | self._published if p.port not in IGNORED_PORTS}


class _Schedule:
    """When the next resync, heartbeat and /proc re-reads are due, on the clock's time."""

    def __init__(self, now: float, timing: Timing) -> None:
        self.timing = timing
        self.last = now
        self.resync = now + timing.resync
        self.beat = now + timing.heartbeat
        self.rereads: list[float] = []

    def until_next(self) -> float:
        return max(0.0, min(self.resync, self.beat, *self.rereads) - self.last)

    def advance(self, now: float) -> None:
        """Take *now* as the current time; a wall clock stepped back moves every deadline
        with it (else a ``set-clock`` after host sleep would stall heartbeats for hours)."""
        if now < self.last:
            shift = now - self.last
            self.resync += shift
            self.beat += shift
            self.rereads = [t + shift for t in self.rereads]
        self.last = now

    def changed(self) -> None:
        """A full read just happened: re-read /proc a few times while servers bind."""
        self.rereads = [self.last + s for s in self.timing.settle]

    def take_resync(self, now_anyway: bool) -> bool:
        """Whether to read everything now; a read caused by an engine event counts as one."""
        if not now_anyway and self.last < self.resync:
            return False
        self.resync = self.last + self.timing.resync
        return True

    def take_reread(self) -> bool:
        due = [t for t in self.rereads if t <= self.last]
        self.rereads = [t for t in self.rereads if t > self.last]
        return bool(due)

    def take_beat(self) -> bool:
        if self.last < self.beat:
            return False
        self.beat = self.last + self.timing.heartbeat
        return True


def _port_events(old: set[Port], new: set[Port], now: float) -> Iterator[Event]:
    opened, closed = diff(old, new)
    for p in closed:
        yield Event(type="port", action="close", port=p, time=now)
    for p in opened:
        yield Event(type="port", action="open", port=p, time=now)


def _engine_event(up: bool, now: float) -> Event:
    return Event(type="engine", state="up" if up else "down", time=now)


def watch(
    clock: Clock,
    feed: EngineFeed,
    host_ports: Callable[[], set[Port]],
    engine_ports: Callable[[], set[Port] | None],
    timing: Timing = Timing(),
) -> Iterator[Event]:
    """Yield events forever (the caller stops iterating); never raises on transient errors.

    *engine_ports* answers None when the engine does not (the last answer is kept).
    """
    view = _PortView(host_ports, engine_ports)
    up = feed.wait(timing.first_state) is Wake.UP
    ports = view.read(ask_engine=up)
    yield Event(type="snapshot", ports=tuple(sorted(ports)), time=clock.time())
    yield _engine_event(up, clock.time())
    due = _Schedule(clock.time(), timing)
    while True:
        wake = feed.wait(due.until_next())
        due.advance(clock.time())
        if wake in (Wake.UP, Wake.DOWN) and (wake is Wake.UP) != up:
            up = wake is Wake.UP
            yield _engine_event(up, due.last)
        engine_said = wake in (Wake.UP, Wake.CHANGED)
        full = due.take_resync(now_anyway=engine_said)
        if due.take_reread() or full:
            now_ports = view.read(ask_engine=full and up)
            yield from _port_events(ports, now_ports, due.last)
            ports = now_ports
        if engine_said:
            due.changed()
        if due.take_beat():
            yield Event(type="heartbeat", time=due.last)
