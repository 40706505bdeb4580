"""Blocking work off the UI thread, results back on it (Anki's ``TaskManager``).

Every API call the desktop makes goes through :class:`TaskRunner`: the call
runs on a ``ThreadPoolExecutor`` and its ``success``/``failure`` callbacks are
queued to the main thread through ONE Qt signal, so the window never blocks on
a slow or absent engine. Exceptions are never swallowed: without a failure
callback they surface through :attr:`TaskRunner.failed` (shown in the status
bar / a dialog by the app).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from desktop.qt import QObject, Signal

T = TypeVar("T")
log = logging.getLogger(__name__)

Success = Callable[[T], None]
Failure = Callable[[BaseException], None]


class TaskRunner(QObject):
    """A thread pool whose callbacks run on the thread that owns this object."""

    # Carries a zero-argument closure; emitted from workers, delivered queued.
    _deliver = Signal(object)
    failed = Signal(str, object)  # (what, exception) for tasks without a failure callback

    def __init__(self, workers: int = 8, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cove-task")
        self._deliver.connect(self._run_closure)
        self._closed = False

    def submit(
        self,
        fn: Callable[[], T],
        success: Success[T] | None = None,
        failure: Failure | None = None,
        *,
        what: str = "",
    ) -> Future[T] | None:
        """Run ``fn`` on the pool; call ``success(result)``/``failure(exc)`` on the main thread."""
        if self._closed:
            return None
        future = self._pool.submit(fn)
        future.add_done_callback(lambda f: self._finished(f, success, failure, what))
        return future

    def run_on_main(self, closure: Callable[[], Any]) -> None:
        """Queue ``closure`` to run on the main thread (safe from any thread)."""
        if not self._closed:
            self._deliver.emit(closure)

    def shutdown(self) -> None:
        """Stop accepting work; running calls finish in the background, results are dropped."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _finished(self, future: Future[T], success: Success[T] | None,
                  failure: Failure | None, what: str) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            if success is not None:
                result = future.result()
                self.run_on_main(lambda: success(result))
            return
        if failure is not None:
            self.run_on_main(lambda: failure(exc))
        else:
            self.run_on_main(lambda: self.failed.emit(what, exc))

    def _run_closure(self, closure: object) -> None:
        if self._closed or not callable(closure):
            return
        try:
            closure()
        except Exception:
            # A broken callback must not kill the event loop; log it loudly instead.
            log.exception("task callback failed")


class InlineTaskRunner(TaskRunner):
    """Runs tasks at once on the calling thread (deterministic unit tests of views)."""

    def submit(self, fn: Callable[[], T], success: Success[T] | None = None,
               failure: Failure | None = None, *, what: str = "") -> Future[T] | None:
        future: Future[T] = Future()
        try:
            future.set_result(fn())
        except Exception as e:
            future.set_exception(e)
        self._finished(future, success, failure, what)
        return future

    def run_on_main(self, closure: Callable[[], Any]) -> None:
        if threading.current_thread() is threading.main_thread():
            closure()
        else:
            super().run_on_main(closure)
