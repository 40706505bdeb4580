"""moby's JSON progress messages (pkg/jsonmessage) for pull and push streams."""

from __future__ import annotations

import time
from typing import Any

Message = dict[str, Any]
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(n: float) -> str:
    """go-units HumanSize: decimal units, 4 significant digits ("1.049MB")."""
    i = 0
    while n >= 1000 and i < len(_UNITS) - 1:
        n /= 1000
        i += 1
    return f"{n:.4g}{_UNITS[i]}"


def bar(current: int, total: int) -> str:
    """The progress text moby's daemon renders (its width is 200 without a terminal)."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    pct = min(int(current / total * 100) // 2, 50)
    return (f"[{'=' * pct}>{' ' * (50 - pct)}] "
            f"{human_size(current):>8}/{human_size(total)}")


def status(text: str, layer_id: str = "") -> Message:
    msg: Message = {"status": text}
    if layer_id:
        msg["progressDetail"] = {}
        msg["id"] = layer_id
    return msg


def progress(text: str, layer_id: str, current: int, total: int) -> Message:
    return {"status": text, "progressDetail": {"current": current, "total": total},
            "progress": bar(current, total), "id": layer_id}


class Throttle:
    """At most one progress message per *interval* seconds (the CLI redraws anyway)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self._last = 0.0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False
