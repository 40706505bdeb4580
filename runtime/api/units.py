"""Sizes, durations and timestamps the way docker prints and parses them (go-units).

Output must match docker byte for byte in tables ("4.26MB", "2 minutes ago"),
so these follow go-units' rules, including its odd corners (3 vs 4 significant
digits, "About an hour").
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _custom_size(size: float, precision: int, base: float, names: tuple[str, ...]) -> str:
    i = 0
    while size >= base and i < len(names) - 1:
        size /= base
        i += 1
    return f"{size:.{precision}g}{names[i]}"


def human_size(size: float, precision: int = 4) -> str:
    """Decimal units: ``human_size(4_260_000, 3) == "4.26MB"`` (go-units HumanSize)."""
    return _custom_size(float(size), precision, 1000.0, _DECIMAL)


def bytes_size(size: float) -> str:
    """Binary units: ``bytes_size(1536) == "1.5KiB"`` (go-units BytesSize)."""
    return _custom_size(float(size), 4, 1024.0, _BINARY)


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtpezy]?)(i?b?)$", re.IGNORECASE)


def _parse_size(text: str, base: int) -> int:
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid size: {text!r}")
    power = "kmgtpezy".find(m.group(2).lower()) + 1 if m.group(2) else 0
    return int(float(m.group(1)) * base**power)


def ram_in_bytes(text: str) -> int:
    """``-m 512m`` style: binary multiples, suffix case-insensitive (go-units RAMInBytes)."""
    return _parse_size(text, 1024)


def from_human_size(text: str) -> int:
    """Decimal multiples ("10MB" = 10_000_000; go-units FromHumanSize)."""
    return _parse_size(text, 1000)


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "Less than a second", "About a minute", "3 weeks"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def time_ago(unix: float, now: float | None = None) -> str:
    """``CREATED`` columns: "2 minutes ago"."""
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - unix)) + " ago"


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration ("1h30m", "10s", "250ms") in seconds."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(body):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not body or pos != len(body):
        raise ValueError(f"invalid duration: {text!r}")
    return sign * total


def parse_timestamp(text: str) -> float:
    """RFC 3339 (with or without nanoseconds, Z or offset) or a date, as unix seconds."""
    return timestamp_ns(text) / 1e9


def timestamp_ns(text: str) -> int:
    """RFC 3339 as exact unix nanoseconds (floats lose the last digits)."""
    s = text.strip()
    nanos = 0
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", s)
    if m:  # Python parses at most microseconds; keep nanoseconds aside
        s, nanos = m.group(1) + m.group(3), int(m.group(2)[:9].ljust(9, "0"))
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000 + nanos


def api_time(value: str, now: float | None = None) -> str:
    """--since/--until as the engine wants them: "<unix>.<nanos>".

    Accepts what docker does: a Go duration relative to now ("10m"), a unix
    timestamp ("1700000000[.123]") or an RFC 3339 time/date.
    """
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        sec, _, frac = value.partition(".")
        return f"{sec}.{(frac or '0').ljust(9, '0')[:9]}"
    now = time.time() if now is None else now
    try:
        nanos = round((now - parse_go_duration(value)) * 1e9)
    except ValueError:
        try:
            nanos = timestamp_ns(value)
        except ValueError:
            raise ValueError(f"invalid time value {value!r}") from None
    return f"{nanos // 1_000_000_000}.{nanos % 1_000_000_000:09d}"


def rfc3339_to_unix(text: str) -> float | None:
    """Inspect timestamps; None for Go's zero time or garbage."""
    if not text or text.startswith("0001-01-01"):
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        return None
