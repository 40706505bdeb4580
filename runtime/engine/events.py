"""The engine's event bus: Docker's ``/events`` messages, kept apart from logs.

Publishers call :meth:`EventBus.publish`; ``GET /events`` subscribers get every
event from ``since`` on (from a bounded in-memory history, as dockerd keeps)
and then live ones until ``until`` or disconnect.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

HISTORY = 1024


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # container, image, network, volume, daemon, builder
    action: str  # create, start, die, destroy, pull, tag, connect, ...
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0
    scope: str = "local"

    def to_json(self) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
            "scope": self.scope,
            "time": self.time_nano // 1_000_000_000,
            "timeNano": self.time_nano,
        }
        if self.type == "container":
            # Deprecated top-level fields that older clients (and compose) still read.
            msg["status"] = self.action
            msg["id"] = self.actor_id
            msg["from"] = self.attributes.get("image", "")
        return msg


class EventBus:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._history: collections.deque[tuple[int, Event]] = collections.deque(maxlen=HISTORY)
        self._seq = 0

    def publish(self, type: str, action: str, actor_id: str, /, **attributes: str) -> Event:
        event = Event(type, action, actor_id, dict(attributes), time.time_ns())
        with self._cond:
            self._seq += 1
            self._history.append((self._seq, event))
            self._cond.notify_all()
        return event

    def _since(self, seq: int) -> list[Event]:
        """Events published after *seq* (lock held). Sequence numbers have no gaps, so
        they are the history's last ``_seq - seq`` entries: no scan of the whole deque
        at every wake-up of every subscriber."""
        newest_first = itertools.islice(reversed(self._history), self._seq - seq)
        return [e for _, e in newest_first][::-1]

    def subscribe(
        self, since_ns: int | None = None, until_ns: int | None = None, poll: float = 5.0
    ) -> Iterator[Event | None]:
        """Past events from *since_ns*, then live ones; stops at *until_ns* (if given).

        Yields ``None`` after each quiet *poll* interval so a streaming caller can
        check whether its client is still there. The interval is long because every
        idle subscriber (a VM's guest agent, the desktop) wakes at that rate; an *until_ns*
        nearer than that shortens the wait so the stream still ends on time.
        """
        with self._cond:
            if since_ns is not None:
                backlog = [(s, e) for s, e in self._history if e.time_nano >= since_ns]
            else:
                backlog = []
            last = self._seq
        for _, event in backlog:
            if until_ns is not None and event.time_nano > until_ns:
                return
            yield event
        while True:
            if until_ns is not None and time.time_ns() > until_ns:
                return
            with self._cond:
                if self._seq == last:
                    self._cond.wait(_wait_for(poll, until_ns))
                fresh = self._since(last)
                last = self._seq
            if not fresh:
                yield None
            for event in fresh:
                if until_ns is not None and event.time_nano > until_ns:
                    return
                yield event


def _wait_for(poll: float, until_ns: int | None) -> float:
    """Seconds to sleep: *poll*, or less when *until_ns* comes sooner."""
    if until_ns is None:
        return poll
    return max(0.0, min(poll, (until_ns - time.time_ns()) / 1e9))
