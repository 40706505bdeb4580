from __future__ import annotations

from itertools import islice

import pytest

from guestagent.clock import FakeClock
from guestagent.events import watch
from guestagent.protocol import Event, Port
from runtime.api.errors import InvalidArgument


def P(n: int) -> Port:
    return Port(proto="tcp", port=n)


def test_snapshot_then_diffs_and_engine_changes() -> None:
    observations = iter([{P(22), P(80)}, {P(80), P(8080)}, {P(8080)}, {P(8080)}])
    engine = iter([False, True, True, False])
    clock = FakeClock()
    events = list(
        islice(watch(clock, lambda: next(observations), lambda: next(engine), heartbeat=2.5), 7)
    )
    kinds = [(e.type, e.action or e.state, e.port.port if e.port else None) for e in events]
    assert events[0].ports == (P(80),)  # port 22 (sshd) is never forwarded
    assert kinds[1:] == [
        ("engine", "down", None),
        ("port", "open", 8080),
        ("engine", "up", None),
        ("port", "close", 80),
        ("engine", "down", None),
        ("heartbeat", "", None),
    ]
    assert clock.now == 1_700_000_003.0


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
