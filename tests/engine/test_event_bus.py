"""EventBus delivery: subscribers get exactly the events published after they woke."""

from __future__ import annotations

import threading

from runtime.engine.events import HISTORY, EventBus


def test_live_events_in_order_past_a_full_history() -> None:
    bus = EventBus()
    for i in range(HISTORY + 10):
        bus.publish("container", "old", str(i))
    stream = bus.subscribe(poll=0.05)
    ready = threading.Event()

    def publish() -> None:
        ready.wait(2)
        for i in range(50):
            bus.publish("container", "new", str(i))

    threading.Thread(target=publish, daemon=True).start()
    got: list[str] = []
    for event in stream:
        ready.set()
        if event is not None:
            got.append(f"{event.action}{event.actor_id}")
        if len(got) == 50:
            break
    assert got == [f"new{i}" for i in range(50)]
