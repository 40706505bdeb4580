"""VM events: JSON lines appended to ``events.jsonl`` by the supervisor (Lima's events).

Kinds: ``starting``, ``vm-started``, ``ssh-ready``, ``engine-ready``, ``ready``,
``port-forward-open``, ``port-forward-close``, ``port-forward-failed``, ``ssh-reconnect``,
``engine-down``, ``engine-up``, ``stopping``, ``stopped``, ``error``. The CLI tails the file
with :func:`watch` until ``ready`` or ``error``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class VMEvent:
    kind: str
    time: float = field(default_factory=time.time)
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"

    @classmethod
    def from_line(cls, line: str) -> VMEvent:
        obj = json.loads(line)
        return cls(
            kind=str(obj["kind"]),
            time=float(obj.get("time", 0)),
            message=str(obj.get("message", "")),
            data=dict(obj.get("data", {})),
        )


class EventLog:
    """Append-only writer; each event is one write() of one line (O_APPEND: no tearing)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def emit(self, kind: str, message: str = "", **data: Any) -> VMEvent:
        ev = VMEvent(kind=kind, message=message, data=data)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, ev.to_line().encode())
        finally:
            os.close(fd)
        return ev


def watch(
    path: Path, *, offset: int = 0, poll: float = 0.1, timeout: float | None = None
) -> Iterator[VMEvent]:
    """Yield events appended after byte *offset*; stops after *timeout* seconds if given."""
    deadline = None if timeout is None else time.monotonic() + timeout
    buf = b""
    while deadline is None or time.monotonic() < deadline:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                yield VMEvent.from_line(line.decode())
        if not chunk:
            time.sleep(poll)


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
