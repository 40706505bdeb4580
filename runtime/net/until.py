"""The ``until`` prune filter as dockerd reads it (moby's timetypes.GetTimestamp).

Clients send it raw (the CLI converts durations only for ``logs --since``), so the
daemon takes a Go duration (``10m``, ``1h30m``: that long before now), an RFC 3339
date or time (no zone: UTC, this engine's zone), or Unix seconds with a fraction.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from runtime.api.errors import InvalidArgument

_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")


def duration_ns(text: str) -> int | None:
    """A Go duration in nanoseconds, or None if *text* is not one."""
    if not _DURATION.fullmatch(text):
        return None
    total = sum(int(float(n) * _UNIT_NS[u]) for n, u in _PART.findall(text))
    return -total if text.startswith("-") else total


def until_ns(value: str, now_ns: int | None = None) -> int:
    """The instant *value* names, in nanoseconds since the epoch."""
    now = time.time_ns() if now_ns is None else now_ns
    d = duration_ns(value)
    if d is not None:
        return now - d
    if re.fullmatch(r"\d+(\.\d+)?", value):
        secs, _, frac = value.partition(".")
        return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f'failed to parse value as time or duration: "{value}"') from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1_000
