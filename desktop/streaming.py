"""Follow one long-lived engine stream (logs -f, stats, pull, exec) without blocking the UI.

A :class:`StreamFollower` runs ``produce(client)`` on a daemon thread with its
own cuttable connection. Items are queued and handed to the main thread in
batches on a timer, so a chatty container (thousands of lines a second) costs
one UI update per tick rather than one per line. ``stop()`` cuts the socket,
which ends the blocked read in the worker; nothing is left running.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from desktop.connection import stream_client
from desktop.qt import QObject, QTimer
from runtime.api.client import Client

T = TypeVar("T")
TICK_MS = 80
MAX_QUEUE = 20_000  # beyond this, drop the oldest: a view can only show so much


class StreamFollower(QObject, Generic[T]):
    def __init__(self, host: str, produce: Callable[[Client], Iterable[T]],
                 on_items: Callable[[list[T]], None],
                 on_end: Callable[[str], None] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._client, self._tracking = stream_client(host)
        self._produce, self._on_items, self._on_end = produce, on_items, on_end
        self._queue: collections.deque[T] = collections.deque(maxlen=MAX_QUEUE)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._end: str | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._drain)
        self._thread = threading.Thread(target=self._run, name="cove-stream", daemon=True)

    @property
    def client(self) -> Client:
        return self._client

    def start(self) -> StreamFollower[T]:
        self._timer.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._tracking.cut()
        self._timer.stop()

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        reason = ""
        try:
            for item in self._produce(self._client):
                if self._stopped.is_set():
                    break
                with self._lock:
                    self._queue.append(item)
        except Exception as e:  # reported to the view via on_end, never swallowed
            reason = str(e) or type(e).__name__
        with self._lock:
            self._end = reason

    def _drain(self) -> None:
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            end = self._end
        if items and not self._stopped.is_set():
            self._on_items(items)
        if end is not None:
            self._timer.stop()
            if self._on_end is not None and not self._stopped.is_set():
                self._on_end(end)
