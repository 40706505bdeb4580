"""EventPump: the engine's ``GET /events`` stream as Qt signals, on its own connection.

The pump owns a dedicated client connection (maestral-qt's "own proxy so the
main one never blocks") on a plain thread. It reports:

- ``connected``     the stream is open (the engine is up): the app re-lists once
- ``received(dict)`` one Docker event message, in order
- ``disconnected``  the engine went away or cannot be reached, with the reason

and reconnects by itself with a capped backoff, which is what makes the whole
app recover when the engine comes back.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from desktop.connection import TrackingTransport, stream_client
from desktop.qt import QObject, Signal
from runtime.api.errors import CoveError
from runtime.api.http11 import Response
from runtime.api.transport import EngineUnreachable

log = logging.getLogger(__name__)

BACKOFF_START = 0.25
BACKOFF_MAX = 3.0


class EventPump(QObject):
    connected = Signal()
    disconnected = Signal(str)
    received = Signal(dict)

    def __init__(self, host: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._host = host
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._tracking: TrackingTransport | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="cove-events", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._tracking is not None:
            self._tracking.cut()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def retry_now(self) -> None:
        """Skip the rest of the backoff (the user pressed Start, or the engine was started)."""
        self._wake.set()

    def _loop(self) -> None:
        delay = BACKOFF_START
        while not self._stop.is_set():
            reason = self._follow_once()
            if self._stop.is_set():
                return
            if reason is None:  # a clean session that ended: reconnect at once
                delay = BACKOFF_START
                continue
            self._emit(self.disconnected, reason)
            self._wake.wait(delay)
            self._wake.clear()
            delay = min(delay * 2, BACKOFF_MAX)

    def _emit(self, signal: Any, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the app is gone (the QObject was deleted): stop quietly
            self._stop.set()

    def _follow_once(self) -> str | None:
        """One connection: returns the reason it failed, or None after a session that ran."""
        client, self._tracking = stream_client(self._host)
        try:
            resp = client.open("GET", "/events")
        except EngineUnreachable as e:
            return e.reason
        except CoveError as e:
            return str(e)
        try:
            self._emit(self.connected)
            self._pump(resp)
        finally:
            resp.close()
        if not self._stop.is_set():
            self._emit(self.disconnected, "the engine closed the event stream")
        return None if not self._stop.is_set() else "stopped"

    def _pump(self, resp: Response) -> None:
        while not self._stop.is_set():
            try:
                line = resp.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            msg = _decode(line)
            if msg is not None:
                self._emit(self.received, msg)


def _decode(line: bytes) -> dict[str, Any] | None:
    line = line.strip()
    if not line:
        return None
    try:
        msg = json.loads(line)
    except ValueError:
        log.warning("undecodable event line: %r", line[:200])
        return None
    return msg if isinstance(msg, dict) else None
