"""Every engine-side file and directory name, in one place (Lima's filenames.go).

Engine data lives under the data root (``--data-root``, default ``/var/lib/cove``);
runtime state that must not survive a reboot lives under the exec root
(``/run/cove``). ``docs/internals.md`` describes each entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_ROOT = Path("/var/lib/cove")
DEFAULT_EXEC_ROOT = Path("/run/cove")
DEFAULT_SOCKET = DEFAULT_EXEC_ROOT / "engine.sock"
SOCKET_GROUP = "cove"

# Inside the data root.
CONTENT_DIR = "content"  # blobs/sha256/<hex>, ingest/<ref>
SNAPSHOTS_DIR = "snapshots"  # overlay/<id>/{fs,work}
IMAGES_DIR = "images"  # image records and tags
CONTAINERS_DIR = "containers"  # <id>/{config.json,state.json,spec.json,<id>-json.log}
VOLUMES_DIR = "volumes"  # <name>/_data
NETWORK_DIR = "network"  # networks and IPAM allocations
ENGINE_LOG = "engine.log"

# Per container, inside containers/<id>/.
CONTAINER_CONFIG = "config.json"  # the Docker-facing record (Config, HostConfig, Name, ...)
CONTAINER_STATE = "state.json"  # status, pid, times, exit code
CONTAINER_SPEC = "spec.json"  # the runtime spec last started
CONTAINER_ROOTFS = "rootfs"  # mount point of the assembled root filesystem
CONTAINER_HOSTS = "hosts"
CONTAINER_RESOLV = "resolv.conf"
CONTAINER_HOSTNAME = "hostname"

# Inside the exec root.
RUNTIME_DIR = "runtime"  # <id>/{monitor.sock,monitor.pid,exit.json}
NETNS_DIR = "netns"  # <id>: bind-mounted network namespaces
ENGINE_PID = "engine.pid"


def log_file_name(container_id: str) -> str:
    return f"{container_id}-json.log"


@dataclass(frozen=True, slots=True)
class EngineLayout:
    """Resolved paths for one engine instance."""

    data_root: Path = DEFAULT_DATA_ROOT
    exec_root: Path = DEFAULT_EXEC_ROOT

    @property
    def content(self) -> Path:
        return self.data_root / CONTENT_DIR

    @property
    def snapshots(self) -> Path:
        return self.data_root / SNAPSHOTS_DIR

    @property
    def images(self) -> Path:
        return self.data_root / IMAGES_DIR

    @property
    def containers(self) -> Path:
        return self.data_root / CONTAINERS_DIR

    @property
    def volumes(self) -> Path:
        return self.data_root / VOLUMES_DIR

    @property
    def network(self) -> Path:
        return self.data_root / NETWORK_DIR

    @property
    def runtime(self) -> Path:
        return self.exec_root / RUNTIME_DIR

    @property
    def netns(self) -> Path:
        return self.exec_root / NETNS_DIR

    def container_dir(self, container_id: str) -> Path:
        return self.containers / container_id
