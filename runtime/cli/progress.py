"""Rendering JSON-lines progress (pull, push, load, import, build) like docker's jsonmessage.

On a terminal each layer id owns a line that is redrawn in place with its
progress bar; otherwise progress updates are skipped and each status change is
one plain line, which keeps logs and pipes readable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TextIO

Aux = Callable[[dict[str, Any]], None]


def _text(msg: dict[str, Any], tty: bool) -> str:
    parts = []
    if msg.get("id"):
        parts.append(f"{msg['id']}: ")
    parts.append(str(msg.get("status") or ""))
    if tty and msg.get("progress"):
        parts.append(" " + str(msg["progress"]))
    return "".join(parts)


def _is_progress(msg: dict[str, Any]) -> bool:
    detail = msg.get("progressDetail") or {}
    return bool(msg.get("progress") or detail.get("current") or detail.get("total"))


def display(
    messages: Iterable[dict[str, Any]], out: TextIO, tty: bool, on_aux: Aux | None = None
) -> None:
    """Write messages to ``out``; ``aux`` payloads (image IDs, digests) go to ``on_aux``.

    An in-band error surfaces as the StreamError the iterator raises.
    """
    lines: dict[str, int] = {}  # layer id -> line number, counted from the first id line
    total = 0
    for msg in messages:
        if "aux" in msg:
            if on_aux is not None:
                on_aux(msg["aux"])
            continue
        if "stream" in msg:
            out.write(str(msg["stream"]))
            out.flush()
            continue
        if not tty:
            if not _is_progress(msg) and (msg.get("status") or msg.get("id")):
                out.write(_text(msg, False) + "\n")
            continue
        ident = msg.get("id")
        if ident and ident in lines:
            up = total - lines[ident]
            out.write(f"\x1b[{up}A\x1b[2K\r{_text(msg, True)}\r\x1b[{up}B")
        else:
            if ident:
                lines[ident] = total
            out.write("\x1b[2K\r" + _text(msg, True) + "\n")
            total += 1
        out.flush()
