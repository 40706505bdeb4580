"""The Engine facade: builds every service, wires them, and owns the HTTP routes."""

from __future__ import annotations

import importlib
import logging
import platform
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from runtime.engine.containers import ContainerService
from runtime.engine.events import EventBus
from runtime.engine.health import HealthMonitor
from runtime.engine.records import Container
from runtime.engine.router import Router
from runtime.fsutil import write_atomic
from runtime.layout import EngineLayout
from runtime.spec import IdMapping

if TYPE_CHECKING:
    from runtime.engine.routes_streams import ExecRecord
    from runtime.images.store import ImageStore
    from runtime.linux.runtime import LinuxRuntime
    from runtime.net.manager import NetworkManager
    from runtime.volumes.manager import VolumeManager

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """dockerd-like settings of one engine instance."""

    layout: EngineLayout = field(default_factory=EngineLayout)
    socket_path: str = "/run/cove/engine.sock"
    cgroup_parent: str = "cove"
    bridge_name: str = "cove0"
    bridge_cidr: str = "172.17.0.1/16"
    insecure_registries: tuple[str, ...] = ()
    registry_mirrors: tuple[str, ...] = ()
    debug: bool = False
    # --userns-remap: every container's user namespace maps (empty: no remapping).
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        from runtime.images.store import ImageStore
        from runtime.linux.runtime import LinuxRuntime
        from runtime.net.manager import NetworkManager
        from runtime.volumes.manager import VolumeManager

        self.config = config
        self.layout = layout = config.layout
        for d in (layout.data_root, layout.exec_root, layout.runtime):
            d.mkdir(parents=True, exist_ok=True)
        self.id = _engine_id(layout.data_root)
        self.name = platform.node()
        self.events = EventBus()
        self.runtime: LinuxRuntime = LinuxRuntime(layout.runtime, config.cgroup_parent)
        self.images: ImageStore = ImageStore(layout, self.events)
        self.networks: NetworkManager = NetworkManager(
            layout, self.events, bridge_name=config.bridge_name, bridge_cidr=config.bridge_cidr
        )
        self.volumes: VolumeManager = VolumeManager(layout, self.events)
        self.containers = ContainerService(
            containers_dir=layout.containers, runtime=self.runtime, images=self.images,
            networks=self.networks, volumes=self.volumes, events=self.events,
            cgroup_parent=config.cgroup_parent,
            userns=(config.uid_mappings, config.gid_mappings) if config.uid_mappings else None,
        )
        self.execs: dict[str, ExecRecord] = {}
        self.health = HealthMonitor(self)
        self.router = Router()
        self._register_routes()

    def _register_routes(self) -> None:
        for module in _route_modules():
            module.register(self.router, self)

    def restore(self) -> None:
        """Adopt containers that kept running while the engine was away; clean leftovers."""
        live = self.containers.restore()
        self.networks.restore(live)
        self.containers.start_restart_policies()
        self.health.start()
        log.info("engine restored: %d running containers adopted", len(live))

    def attach(self, c: Container, *, stdin: bool, stdout: bool, stderr: bool) -> socket.socket:
        """A socket to the container's stdio; before start it is held for the next start.

        Docker clients attach before they start (``docker run``), and the runtime
        hands the held socket to the container's monitor so no early output is lost.
        """
        sock: socket.socket = self.runtime.attach(c.id, stdin=stdin, stdout=stdout,
                                                  stderr=stderr)
        return sock

    def shutdown(self) -> None:
        """Stop serving; containers keep running (adopted by the next engine)."""
        self.health.stop()
        self.networks.shutdown()
        self.runtime.close()


ROUTE_MODULES = (
    "routes_system", "routes_containers", "routes_streams", "routes_images",
    "routes_networks", "routes_volumes", "routes_archive", "routes_build",
    "routes_rootfs",
)
SERVICE_MODULES = (
    "runtime.images.store", "runtime.linux.runtime", "runtime.net.manager",
    "runtime.volumes.manager",
)


def _route_modules() -> list[ModuleType]:
    """The route modules present, in registration order (the first matching route wins)."""
    modules = []
    for name in ROUTE_MODULES:
        try:
            modules.append(importlib.import_module(f"runtime.engine.{name}"))
        except ModuleNotFoundError as e:
            if e.name != f"runtime.engine.{name}":
                raise
            log.debug("route module %s not present", name)
    return modules


def preload() -> None:
    """Import everything Engine() imports, without touching any state or directory.

    Under TCG the imports are most of the engine's start-up; the guest's init starts the
    engine before the data disk is mounted and lets it do this part meanwhile
    (``--start-after``)."""
    for name in SERVICE_MODULES:
        importlib.import_module(name)
    _route_modules()


def _engine_id(data_root: Path) -> str:
    path = data_root / "engine-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        write_atomic(path, (value + "\n").encode())
        return value

