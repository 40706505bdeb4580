from __future__ import annotations

from itertools import islice

import pytest

from guestagent.clock import FakeClock
from guestagent.events import Timing, Wake, watch
from guestagent.protocol import Event, Port
from runtime.api.errors import InvalidArgument

START = 1_700_000_000.0


def P(n: int) -> Port:
    return Port(proto="tcp", port=n)


class ScriptedFeed:
    """An EngineFeed on a FakeClock: each wake happens at its scripted time (seconds after
    START); wait() advances the clock to it, or by the whole timeout if it comes later."""

    def __init__(self, clock: FakeClock, script: list[tuple[float, Wake]]) -> None:
        self.clock, self.script = clock, list(script)

    def wait(self, timeout: float) -> Wake:
        if self.script and START + self.script[0][0] <= self.clock.now + timeout:
            at, wake = self.script.pop(0)
            self.clock.now = max(self.clock.now, START + at)
            return wake
        self.clock.now += timeout
        return Wake.QUIET


class EngineListing:
    """The engine's published ports over time; counts how often it is asked."""

    def __init__(self, clock: FakeClock, changes: dict[float, set[Port] | None]) -> None:
        self.clock, self.changes, self.calls = clock, changes, 0

    def __call__(self) -> set[Port] | None:
        self.calls += 1
        current: set[Port] | None = set()
        for at in sorted(self.changes):
            if START + at <= self.clock.now:
                current = self.changes[at]
        return current


def summary(events: list[Event]) -> list[tuple[float, str, str, int | None]]:
    return [
        (round(e.time - START, 3), e.type, e.action or e.state, e.port.port if e.port else None)
        for e in events
    ]


def test_ports_follow_engine_events_and_quiet_time_asks_nothing() -> None:
    clock = FakeClock(START)
    feed = ScriptedFeed(clock, [(0, Wake.UP), (12.5, Wake.CHANGED), (14, Wake.CHANGED)])
    engine = EngineListing(clock, {0: {P(22), P(80)}, 12: {P(80), P(8080)}, 13.5: {P(8080)}})
    timing = Timing(resync=1000, heartbeat=5, settle=())
    events = list(islice(watch(clock, feed, set, engine, timing), 7))
    assert events[0].ports == (P(80),)  # port 22 (sshd) is never forwarded
    assert summary(events)[1:] == [
        (0, "engine", "up", None),
        (5, "heartbeat", "", None),
        (10, "heartbeat", "", None),
        (12.5, "port", "open", 8080),
        (14, "port", "close", 80),
        (15, "heartbeat", "", None),
    ]
    # the snapshot and the two events: heartbeats alone never make the engine answer
    assert engine.calls == 3


def test_resync_heals_a_missed_event() -> None:
    clock = FakeClock(START)
    feed = ScriptedFeed(clock, [(0, Wake.UP)])
    engine = EngineListing(clock, {0: set(), 3: {P(5000)}})  # no CHANGED for it
    timing = Timing(resync=30, heartbeat=1000, settle=())
    (opened,) = islice(watch(clock, feed, set, engine, timing), 2, 3)
    assert summary([opened]) == [(30, "port", "open", 5000)]


def test_engine_down_keeps_ports_and_up_resyncs() -> None:
    clock = FakeClock(START)
    feed = ScriptedFeed(clock, [(0, Wake.UP), (2, Wake.DOWN), (9, Wake.UP)])
    # While the engine is down it answers nothing; containers (and their DNAT) live on.
    # It comes back without the container on 80, which died meanwhile.
    engine = EngineListing(clock, {0: {P(80)}, 2: None, 8: {P(443)}})
    timing = Timing(resync=5, heartbeat=1000, settle=())
    events = list(islice(watch(clock, feed, set, engine, timing), 6))
    assert summary(events)[1:] == [
        (0, "engine", "up", None),
        (2, "engine", "down", None),
        (9, "engine", "up", None),
        (9, "port", "close", 80),
        (9, "port", "open", 443),
    ]
    assert engine.calls == 2  # snapshot and reconnect: not at the resync while down (7 s)


def test_engine_down_at_start_then_up() -> None:
    clock = FakeClock(START)
    feed = ScriptedFeed(clock, [(0.4, Wake.DOWN), (6, Wake.UP)])
    engine = EngineListing(clock, {0: None, 5: {P(9000)}})
    events = list(islice(watch(clock, feed, set, engine, Timing(settle=())), 5))
    assert summary(events) == [
        (0.4, "snapshot", "", None),
        (0.4, "engine", "down", None),
        (5.4, "heartbeat", "", None),
        (6, "engine", "up", None),
        (6, "port", "open", 9000),
    ]


def test_guest_listeners_are_reread_while_a_new_container_settles() -> None:
    clock = FakeClock(START)
    feed = ScriptedFeed(clock, [(0, Wake.UP), (10, Wake.CHANGED)])
    # A --network host server binds 3 s after its container's start event.
    listening = EngineListing(clock, {0: {P(22)}, 13: {P(22), P(3000)}})

    def host_ports() -> set[Port]:
        return listening() or set()

    timing = Timing(resync=1000, heartbeat=1000, settle=(1, 2, 4, 8))
    (opened,) = islice(watch(clock, feed, host_ports, lambda: set(), timing), 2, 3)
    assert summary([opened]) == [(14, "port", "open", 3000)]


def test_wall_clock_stepped_back_keeps_heartbeats_coming() -> None:
    clock = FakeClock(START)
    feed = ScriptedFeed(clock, [(0, Wake.UP)])
    events = watch(clock, feed, set, lambda: set(), Timing(resync=1000, heartbeat=5, settle=()))
    assert [e.type for e in islice(events, 3)] == ["snapshot", "engine", "heartbeat"]
    clock.now -= 3600  # set-clock after the host slept with a fast guest clock
    beat = next(events)
    # The step is noticed at the next wake, so this beat is one period late, not an hour.
    assert beat.type == "heartbeat" and beat.time == START + 5 - 3600 + 10


def test_event_line_roundtrip() -> None:
    for ev in (
        Event(type="snapshot", ports=(P(1), P(2)), time=5.0),
        Event(type="port", action="open", port=P(80), time=1.5),
        Event(type="engine", state="up"),
    ):
        assert Event.from_line(ev.to_line()) == ev


def test_bad_line() -> None:
    with pytest.raises(InvalidArgument):
        Event.from_line(b"{not json")
