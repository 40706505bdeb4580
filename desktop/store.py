"""Store: the app's live picture of the engine, and the only place that talks to it.

It owns the table models, the EventPump and the TaskRunner, and turns:

- the pump's ``connected`` into one full listing (the only re-list besides a slow
  reconcile timer that heals anything missed),
- each event into an incremental model update plus, at most, a re-fetch of that
  one object (coalesced: one in flight per id),
- the pump's ``disconnected`` into an engine state with a reason for the banner.

Views and the tray read models and call the action methods; none blocks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from desktop import formatting as fmt
from desktop.connection import call_client
from desktop.events import EventPump
from desktop.models.containers import ContainersModel
from desktop.models.resources import (
    ImagesModel,
    NetworksModel,
    VolumesModel,
    users_by_image,
    users_by_network,
    users_by_volume,
)
from desktop.qt import QObject, QTimer, Signal
from desktop.tasks import TaskRunner
from runtime.api.client import Client

log = logging.getLogger(__name__)

RECONCILE_MS = 20_000
STATS_MS = 3_000
STATS_MAX = 40  # one-shot stats calls per round; beyond that only the table's first rows
DEBOUNCE_MS = 150


class EngineState(StrEnum):
    RUNNING = "running"
    STARTING = "starting"
    STOPPED = "stopped"
    ERROR = "error"


class Store(QObject):
    state_changed = Signal(str, str)  # (EngineState, reason)
    containers_changed = Signal()  # for the tray and usage columns (debounced)
    notice = Signal(str)  # short messages for the status bar

    def __init__(self, host: str, runner: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.runner = runner
        self.client: Client = call_client(host)
        self.containers = ContainersModel(self)
        self.images = ImagesModel(self)
        self.volumes = VolumesModel(self)
        self.networks = NetworksModel(self)
        self.state, self.reason = EngineState.STARTING, "connecting"
        self.info: dict[str, Any] = {}
        # Optional: (state, reason) from elsewhere when the socket is unreachable (the VM).
        self.explain: Callable[[], tuple[str, str]] | None = None
        self._inflight: set[str] = set()
        self._pump = EventPump(host, self)
        self._pump.connected.connect(self._on_connected)
        self._pump.disconnected.connect(self._on_disconnected)
        self._pump.received.connect(self.apply_event)
        self._timers: dict[str, QTimer] = {}
        self._every(RECONCILE_MS, self.refresh_containers)
        self._every(STATS_MS, self.poll_stats)
        self._usage = self._debounced(self._recompute_usage)
        self._relist = {k: self._debounced(f) for k, f in (
            ("image", self.refresh_images), ("volume", self.refresh_volumes),
            ("network", self.refresh_networks))}

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._pump.start()

    def close(self) -> None:
        for t in self._timers.values():
            t.stop()
        self._pump.stop()

    def retry_now(self) -> None:
        self._pump.retry_now()

    def set_state(self, state: EngineState, reason: str = "") -> None:
        if (state, reason) != (self.state, self.reason):
            self.state, self.reason = state, reason
            self.state_changed.emit(state.value, reason)

    def _on_connected(self) -> None:
        self.set_state(EngineState.RUNNING)
        self.refresh_all()

    def _on_disconnected(self, reason: str) -> None:
        if self.state == EngineState.STARTING and self.reason.startswith("starting"):
            return  # the user pressed Start; keep saying so until it connects or fails
        if self.explain is not None:
            # The VM knows better than a refused socket (booting, engine down, supervisor gone).
            state, words = self.explain()
            if state != EngineState.RUNNING.value:
                self.set_state(EngineState(state), words)
                return
        self.set_state(EngineState.STOPPED, f"cannot reach {self.host}: {reason}")

    # --- listing -------------------------------------------------------------

    def refresh_all(self) -> None:
        self.refresh_containers()
        self.refresh_images()
        self.refresh_volumes()
        self.refresh_networks()
        self.runner.submit(self.client.info, self._got_info, self._ignore, what="info")

    def refresh_containers(self) -> None:
        if self.state != EngineState.RUNNING:
            return
        self.runner.submit(lambda: self.client.containers(all=True), self._got_containers,
                           self._list_failed, what="list containers")

    def refresh_images(self) -> None:
        self.runner.submit(self.client.images, self.images.replace_all, self._list_failed,
                           what="list images")

    def refresh_volumes(self) -> None:
        self.runner.submit(lambda: list(self.client.volumes().get("Volumes") or []),
                           self._got_volumes, self._list_failed, what="list volumes")

    def refresh_networks(self) -> None:
        self.runner.submit(self.client.networks, self._got_networks, self._list_failed,
                           what="list networks")

    def refresh_container(self, key: str) -> None:
        """Re-fetch one container's summary; at most one request in flight per id."""
        if key in self._inflight:
            return
        self._inflight.add(key)

        def done(rows: list[dict[str, Any]]) -> None:
            self._inflight.discard(key)
            # Match the id ourselves: an id filter is a prefix match on the engine side.
            for r in rows:
                if str(r.get("Id", "")) == key:
                    self.containers.upsert(r)
            self._usage()

        def failed(exc: BaseException) -> None:
            self._inflight.discard(key)

        self.runner.submit(lambda: self.client.containers(all=True, filters={"id": [key]}),
                           done, failed, what="refresh container")

    def _got_containers(self, rows: list[dict[str, Any]]) -> None:
        self.containers.replace_all(rows)
        self._usage()

    def _got_volumes(self, rows: list[dict[str, Any]]) -> None:
        self.volumes.replace_all(rows)
        self._usage()

    def _got_networks(self, rows: list[dict[str, Any]]) -> None:
        self.networks.replace_all(rows)
        self._usage()

    def _got_info(self, info: dict[str, Any]) -> None:
        self.info = info

    def _list_failed(self, exc: BaseException) -> None:
        log.debug("listing failed: %s", exc)  # the pump reports the engine state

    def _ignore(self, exc: BaseException) -> None:
        log.debug("ignored: %s", exc)

    def _recompute_usage(self) -> None:
        rows = self.containers.rows()
        self.images.set_users(users_by_image(rows))
        self.volumes.set_users(users_by_volume(rows))
        self.networks.set_users(users_by_network(rows, self.networks.rows()))
        self.containers_changed.emit()

    # --- events --------------------------------------------------------------

    def apply_event(self, event: dict[str, Any]) -> None:
        kind = str(event.get("Type", ""))
        if kind == "container":
            if self.containers.apply(event):
                self.refresh_container(str((event.get("Actor") or {}).get("ID", "")))
            self._usage()
        elif kind in self._relist:
            self._relist[kind]()

    # --- stats ---------------------------------------------------------------

    def poll_stats(self) -> None:
        if self.state != EngineState.RUNNING:
            return
        for row in self.containers.running()[:STATS_MAX]:
            key = str(row["Id"])
            self.runner.submit(functools.partial(one_stats, self.client, key),
                               functools.partial(self._got_stats, key), self._ignore)

    def _got_stats(self, key: str, stats: dict[str, Any]) -> None:
        mem = fmt.memory_usage(stats)
        self.containers.set_stats(key, fmt.cpu_percent(stats), mem[0] if mem else None)

    # --- actions (every one off the UI thread) -------------------------------

    def act(self, what: str, fn: Callable[[Client], object],
            done: Callable[[], None] | None = None) -> None:
        """Run one engine call; failures become a notice, successes optionally ``done``."""
        def ok(_: object) -> None:
            if done is not None:
                done()

        def failed(exc: BaseException) -> None:
            self.notice.emit(f"{what} failed: {exc}")

        self.runner.submit(lambda: fn(self.client), ok, failed, what=what)

    # --- helpers -------------------------------------------------------------

    def _every(self, ms: int, fn: Callable[[], None]) -> None:
        t = QTimer(self)
        t.setInterval(ms)
        t.timeout.connect(fn)
        t.start()
        self._timers[f"every{len(self._timers)}"] = t

    def _debounced(self, fn: Callable[[], None]) -> Callable[[], None]:
        t = QTimer(self)
        t.setSingleShot(True)
        t.setInterval(DEBOUNCE_MS)
        t.timeout.connect(fn)
        return t.start


def one_stats(client: Client, key: str) -> dict[str, Any]:
    """One stats sample (with precpu filled in), closing the connection right after."""
    stream = client.stats(key, stream=False)
    try:
        return next(stream, {})
    finally:
        stream.close()  # type: ignore[attr-defined]
