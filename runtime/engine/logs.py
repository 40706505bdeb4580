"""Reads Docker's json-file logs (written by the container monitor) for ``GET .../logs``.

Each line of ``<id>-json.log`` (rotated to ``.1``, ``.2``, … oldest last) is
``{"log": "...", "stream": "stdout"|"stderr", "time": RFC3339Nano}``. The
reader yields the entries in order, honours ``tail``/``since``/``until``, and
with ``follow`` keeps reading new lines until the container stops.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

STDOUT, STDERR = 1, 2
_POLL = 0.05
_BLOCK = 1 << 20  # bytes read (and lines decoded) at a time


class LogEntry(NamedTuple):
    """One log line. A tuple, not a frozen dataclass: a 10 MB log is 100 000 of them,
    and a frozen dataclass's ``__init__`` cost more than decoding their JSON."""

    stream: int
    data: bytes
    time: str  # RFC3339Nano as written

    @property
    def time_ns(self) -> int:
        # Parsed on demand: only since/until need it, and parsing every line of a
        # big log costs more than decoding it.
        return parse_time_ns(self.time)


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


# Builds a LogEntry from a (stream, data, time) tuple without a Python-level __new__.
_new_entry: Callable[[tuple[int, bytes, str]], LogEntry] = functools.partial(
    tuple.__new__, LogEntry)


def _entry(obj: Any) -> LogEntry:
    return _new_entry((
        STDERR if obj.get("stream") == "stderr" else STDOUT,
        obj["log"].encode("utf-8", "surrogateescape"),
        obj["time"],
    ))


def _entries(objs: list[Any]) -> list[LogEntry]:
    """``_entry`` of each, inlined: this loop runs once per line of the log."""
    new, err = _new_entry, STDERR
    return [new((err if o.get("stream") == "stderr" else STDOUT,
                 o["log"].encode("utf-8", "surrogateescape"), o["time"])) for o in objs]


def _decode(line: bytes) -> LogEntry | None:
    try:
        return _entry(json.loads(line))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a torn last line while the writer is mid-write


def decode_lines(lines: list[bytes]) -> list[LogEntry]:
    """Many lines at once: one ``json.loads`` of them as an array is several times
    faster than one call per line; any bad line sends the batch down the slow path."""
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        return []
    try:
        return _entries(json.loads(b"[" + b",".join(lines) + b"]"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return [e for e in map(_decode, lines) if e is not None]


def _files(path: Path) -> list[Path]:
    """Rotated files oldest first, the live file last."""
    rotated = []
    i = 1
    while (path.parent / f"{path.name}.{i}").exists():
        rotated.append(path.parent / f"{path.name}.{i}")
        i += 1
    return [*reversed(rotated), path]


def _file_blocks(path: Path, end: list[int]) -> Iterator[list[bytes]]:
    """The complete lines of the rotated files and the live one, in blocks of about
    _BLOCK bytes. ``end[0]`` becomes the offset in the live file just after its last
    complete line: a line the writer is still writing is left for ``follow``."""
    for f in _files(path):
        try:
            with open(f, "rb") as fh:
                pending = b""
                while block := fh.read(_BLOCK):
                    *lines, pending = (pending + block).split(b"\n")
                    if lines:
                        yield lines
                if f == path:
                    end[0] = fh.tell() - len(pending)
        except FileNotFoundError:
            continue


def read_batches(
    path: Path,
    *,
    tail: int | None,
    since_ns: int | None,
    until_ns: int | None,
    follow: bool,
    is_running: Callable[[], bool],
) -> Iterator[list[LogEntry]]:
    """The log as lists of entries: each list is what there was to read at once, so a
    caller can send one list in one write without holding back a followed live line."""
    end = [0]
    if tail is not None and since_ns is None and until_ns is None:
        kept: deque[bytes] = deque(maxlen=tail)  # only the last *tail* lines get decoded
        for lines in _file_blocks(path, end):
            kept.extend(lines)
        if kept:
            yield decode_lines(list(kept))
    elif tail is None:
        for lines in _file_blocks(path, end):
            if batch := _window(decode_lines(lines), since_ns, until_ns):
                yield batch
    else:
        entries: deque[LogEntry] = deque(maxlen=tail)
        for lines in _file_blocks(path, end):
            entries.extend(_window(decode_lines(lines), since_ns, until_ns))
        if entries:
            yield list(entries)
    if follow:
        yield from _follow(path, end[0], since_ns, until_ns, is_running)


def read(
    path: Path,
    *,
    tail: int | None,
    since_ns: int | None,
    until_ns: int | None,
    follow: bool,
    is_running: Callable[[], bool],
) -> Iterator[LogEntry]:
    for batch in read_batches(path, tail=tail, since_ns=since_ns, until_ns=until_ns,
                              follow=follow, is_running=is_running):
        yield from batch


def _window(entries: list[LogEntry], since_ns: int | None,
            until_ns: int | None) -> list[LogEntry]:
    if since_ns is None and until_ns is None:
        return entries
    return [e for e in entries if _in_window(e, since_ns, until_ns)]


def _in_window(e: LogEntry, since_ns: int | None, until_ns: int | None) -> bool:
    if since_ns is None and until_ns is None:
        return True
    t = e.time_ns
    if since_ns is not None and t < since_ns:
        return False
    return not (until_ns is not None and t > until_ns)


def _follow(
    path: Path, offset: int, since_ns: int | None, until_ns: int | None,
    is_running: Callable[[], bool],
) -> Iterator[list[LogEntry]]:
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
            batch = _window(decode_lines(lines), since_ns, None)
            if until_ns is not None:
                late = next((i for i, e in enumerate(batch) if e.time_ns > until_ns), None)
                if late is not None:
                    yield batch[:late]
                    return
            if batch:
                yield batch
            continue
        if not running or (until_ns is not None and time.time_ns() > until_ns):
            return
        time.sleep(_POLL)


def _inode(path: Path) -> int:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return 0


_HEADER = struct.Struct(">BxxxI")
CHUNK = 64 * 1024  # bytes of frames gathered into one HTTP chunk


def frame(stream: int, data: bytes) -> bytes:
    """Docker's 8-byte multiplexed stream header + payload."""
    return _HEADER.pack(stream, len(data)) + data


def chunks(batches: Iterable[list[LogEntry]], *, streams: frozenset[int], tty: bool,
           timestamps: bool) -> Iterator[bytes]:
    """The body of ``GET /logs``: frames (raw data with a TTY) of the wanted *streams*,
    gathered up to CHUNK bytes. One write per line made a 10 MB log 100 000 writes;
    a batch is never held back waiting for the next, so ``follow`` stays live."""
    pack = _HEADER.pack
    for batch in batches:
        parts: list[bytes] = []
        size = 0
        for e in batch:
            if e.stream not in streams:
                continue
            data = e.time.encode() + b" " + e.data if timestamps else e.data
            if not tty:
                parts.append(pack(e.stream, len(data)))
            parts.append(data)
            size += len(data) + 8
            if size >= CHUNK:
                yield b"".join(parts)
                parts, size = [], 0
        if parts:
            yield b"".join(parts)
