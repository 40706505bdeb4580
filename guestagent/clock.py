"""The Clock seam: the event poller's time and sleeps go through it so tests run instantly."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds (for event timestamps)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for *seconds* (a fake clock just advances)."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def set_wall_clock(epoch: float) -> None:
    """Step the wall clock (after host sleep: TCG guests have no kvmclock to catch up)."""
    time.clock_settime(time.CLOCK_REALTIME, epoch)
