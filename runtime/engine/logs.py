"""Reads Docker's json-file logs (written by the container monitor) for ``GET .../logs``.

Each line of ``<id>-json.log`` (rotated to ``.1``, ``.2``, … oldest last) is
``{"log": "...", "stream": "stdout"|"stderr", "time": RFC3339Nano}``. The
reader yields the entries in order, honours ``tail``/``since``/``until``, and
with ``follow`` keeps reading new lines until the container stops.
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

STDOUT, STDERR = 1, 2
_POLL = 0.05


@dataclass(frozen=True, slots=True)
class LogEntry:
    stream: int
    data: bytes
    time: str  # RFC3339Nano as written
    time_ns: int


def parse_time_ns(text: str) -> int:
    """RFC3339Nano ``2026-11-28T07:30:00.123456789Z`` → unix ns."""
    main, _, frac = text.rstrip("Z").partition(".")
    secs = datetime.fromisoformat(main + "+00:00").timestamp()
    return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])


def parse_client_time(value: str) -> int | None:
    """``since``/``until`` as Docker clients send them: ``<unix>[.<nanos>]`` or RFC3339."""
    if not value:
        return None
    if value.replace(".", "", 1).isdigit():
        secs, _, nanos = value.partition(".")
        return int(secs) * 1_000_000_000 + int((nanos + "000000000")[:9])
    return parse_time_ns(value)


def _decode(line: bytes) -> LogEntry | None:
    try:
        obj = json.loads(line)
        t = obj["time"]
        return LogEntry(
            STDERR if obj.get("stream") == "stderr" else STDOUT,
            obj["log"].encode("utf-8", "surrogateescape"),
            t,
            parse_time_ns(t),
        )
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line while the writer is mid-write


def _files(path: Path) -> list[Path]:
    """Rotated files oldest first, the live file last."""
    rotated = []
    i = 1
    while (path.parent / f"{path.name}.{i}").exists():
        rotated.append(path.parent / f"{path.name}.{i}")
        i += 1
    return [*reversed(rotated), path]


def read(
    path: Path,
    *,
    tail: int | None,
    since_ns: int | None,
    until_ns: int | None,
    follow: bool,
    is_running: Callable[[], bool],
) -> Iterator[LogEntry]:
    entries: deque[LogEntry] | list[LogEntry] = deque(maxlen=tail) if tail is not None else []
    offset = 0
    for f in _files(path):
        try:
            with open(f, "rb") as fh:
                for line in fh:
                    entry = _decode(line)
                    if entry and _in_window(entry, since_ns, until_ns):
                        entries.append(entry)
                if f == path:
                    offset = fh.tell()
        except FileNotFoundError:
            continue
    if tail != 0:
        yield from entries
    if follow:
        yield from _follow(path, offset, since_ns, until_ns, is_running)


def _in_window(e: LogEntry, since_ns: int | None, until_ns: int | None) -> bool:
    if since_ns is not None and e.time_ns < since_ns:
        return False
    return not (until_ns is not None and e.time_ns > until_ns)


def _follow(
    path: Path, offset: int, since_ns: int | None, until_ns: int | None,
    is_running: Callable[[], bool],
) -> Iterator[LogEntry]:
    pending = b""
    inode = _inode(path)
    while True:
        running = is_running()
        current = _inode(path)
        if current != inode:  # rotated: the old file is now .1; start the new one
            inode, offset = current, 0
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset = fh.tell()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                entry = _decode(line)
                if entry is None or not _in_window(entry, since_ns, None):
                    continue
                if until_ns is not None and entry.time_ns > until_ns:
                    return
                yield entry
            continue
        if not running or (until_ns is not None and time.time_ns() > until_ns):
            return
        time.sleep(_POLL)


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return 0


def frame(stream: int, data: bytes) -> bytes:
    """Docker's 8-byte multiplexed stream header + payload."""
    return struct.pack(">BxxxI", stream, len(data)) + data
