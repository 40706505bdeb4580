"""What the container service needs from its collaborators, as Protocols (the seams).

The real implementations are ``runtime.linux.runtime.LinuxRuntime``,
``runtime.images.store.ImageStore``, ``runtime.net.manager.NetworkManager`` and
``runtime.volumes.manager.VolumeManager``; ``runtime/engine/engine.py`` wires them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

from runtime.spec import ContainerSpec, Mount, ProcessSpec, Resources


class ExitInfo(Protocol):
    code: int
    oom_killed: bool
    finished_at_ns: int
    error: str


class StatusInfo(Protocol):
    running: bool
    paused: bool
    pid: int

    @property
    def exit(self) -> ExitInfo | None: ...


class Runtime(Protocol):
    def start(self, spec: ContainerSpec) -> int: ...
    def status(self, container_id: str) -> StatusInfo: ...
    def wait(self, container_id: str, timeout: float | None = None) -> ExitInfo | None: ...
    def kill(self, container_id: str, signal: int) -> None: ...
    def pause(self, container_id: str) -> None: ...
    def resume(self, container_id: str) -> None: ...
    def stats(self, container_id: str) -> Any: ...
    def top(self, container_id: str) -> list[int]: ...
    def update(self, container_id: str, resources: Resources) -> None: ...
    def attach(
        self, container_id: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> socket.socket: ...
    def resize(self, container_id: str, rows: int, cols: int) -> None: ...
    def exec_start(
        self, container_id: str, exec_id: str, process: ProcessSpec, *, stdin: bool
    ) -> socket.socket: ...
    def exec_status(self, container_id: str, exec_id: str) -> tuple[bool, int, int | None]: ...
    def exec_resize(self, container_id: str, exec_id: str, rows: int, cols: int) -> None: ...
    def delete(self, container_id: str) -> None: ...
    def list_ids(self) -> list[str]: ...


class ImageInfo(Protocol):
    id: str
    config: dict[str, Any]
    repo_tags: tuple[str, ...]


class Images(Protocol):
    in_use: Callable[[str], list[str]]

    def get(self, ref_or_id: str) -> Any: ...
    def prepare_rootfs(self, container_id: str, image: Any) -> tuple[Mount, ...]: ...
    def remove_rootfs(self, container_id: str) -> None: ...


class NetworkSetup(Protocol):
    netns_path: str | None
    create_netns: bool
    mounts: tuple[Mount, ...]
    settings: dict[str, Any]


class Networks(Protocol):
    def setup(
        self,
        container_id: str,
        *,
        name: str,
        hostname: str,
        domainname: str,
        config: dict[str, Any],
        host_config: dict[str, Any],
        networking_config: dict[str, Any],
        resolve_container: Callable[[str], tuple[str, int]],
    ) -> NetworkSetup: ...
    def teardown(self, container_id: str) -> None: ...
    def settings(self, container_id: str) -> dict[str, Any]: ...


class Volumes(Protocol):
    def mounts_for(
        self,
        container_id: str,
        *,
        config: dict[str, Any],
        host_config: dict[str, Any],
        image_config: dict[str, Any],
        volumes_from: Callable[[str], list[dict[str, Any]]],
    ) -> tuple[tuple[Mount, ...], list[dict[str, Any]]]: ...
    def release(self, container_id: str, *, remove_anonymous: bool) -> None: ...
