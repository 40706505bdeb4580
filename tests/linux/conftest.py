"""Fixtures for real containers: a LinuxRuntime on tmp dirs and a busybox spec factory."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.linux.cgroups import CGROUP_ROOT, cgroup_version, v1_mounts
from runtime.linux.runtime import LinuxRuntime
from runtime.spec import (
    DEFAULT_CAPABILITIES,
    ContainerSpec,
    LogConfig,
    Mount,
    Namespace,
    ProcessSpec,
)

SpecFactory = Callable[..., ContainerSpec]
DEFAULT_NAMESPACES = tuple(
    Namespace(type=t) for t in ("pid", "mount", "uts", "ipc", "network", "cgroup")
)
ROOT = Path(__file__).resolve().parents[2]
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _cgroup_parent_dirs(parent: str) -> list[Path]:
    if cgroup_version() == 2:
        return [CGROUP_ROOT / parent]
    return sorted({point / parent for point in v1_mounts().values()})


@pytest.fixture
def cgroup_parent() -> Iterator[str]:
    parent = f"cove-test-{secrets.token_hex(4)}"
    yield parent
    for d in _cgroup_parent_dirs(parent):
        if d.is_dir():
            for child in sorted(d.iterdir()):
                if child.is_dir():
                    child.rmdir()
            d.rmdir()


@pytest.fixture
def runtime(tmp_path: Path, cgroup_parent: str) -> Iterator[LinuxRuntime]:
    rt = LinuxRuntime(tmp_path / "state", cgroup_parent=cgroup_parent)
    yield rt
    for cid in rt.list_ids():
        rt.delete(cid)


@pytest.fixture
def make_spec(tmp_path: Path, busybox_rootfs: Path, cgroup_parent: str) -> SpecFactory:
    """``make_spec(["echo", "hi"], hostname=..., process={...})`` -> a busybox ContainerSpec."""

    def make(args: list[str], *, process: dict[str, Any] | None = None,
             **fields: Any) -> ContainerSpec:
        cid = secrets.token_hex(32)
        base = tmp_path / cid[:12]
        for sub in ("upper", "work", "rootfs"):
            (base / sub).mkdir(parents=True)
        overlay = Mount(
            destination="/", type="overlay", source="overlay",
            options=(f"lowerdir={busybox_rootfs},upperdir={base / 'upper'},"
                     f"workdir={base / 'work'}",),
        )
        proc: dict[str, Any] = {
            "args": tuple(args), "env": (PATH_ENV,), "capabilities": DEFAULT_CAPABILITIES,
        }
        proc.update(process or {})
        values: dict[str, Any] = {
            "id": cid,
            "hostname": cid[:12],
            "rootfs": str(base / "rootfs"),
            "rootfs_mounts": (overlay,),
            "process": ProcessSpec(**proc),
            "namespaces": DEFAULT_NAMESPACES,
            "cgroup_path": f"{cgroup_parent}/{cid}",
            "log": LogConfig(path=str(base / "json.log")),
        }
        values.update(fields)
        return ContainerSpec(**values)

    return make


def read_log(spec: ContainerSpec) -> list[dict[str, str]]:
    import json

    with open(spec.log.path) as f:
        return [json.loads(line) for line in f]


def log_text(spec: ContainerSpec, stream: str | None = None) -> str:
    return "".join(e["log"] for e in read_log(spec) if stream is None or e["stream"] == stream)


def run(runtime: LinuxRuntime, spec: ContainerSpec, timeout: float = 20) -> int:
    """Start *spec*, wait for it and return its exit code."""
    runtime.start(spec)
    status = runtime.wait(spec.id, timeout=timeout)
    assert status is not None, "container did not exit in time"
    return status.code


__all__ = ["SpecFactory", "log_text", "read_log", "run", "shutil"]
