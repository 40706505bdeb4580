"""Shared fixtures: a busybox root filesystem built from Debian's busybox-static."""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUSYBOX_SCRIPT = ROOT / "packaging" / "busybox-rootfs.sh"


def is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_root = pytest.mark.skip(reason="needs root to create namespaces, mounts and cgroups")
    for item in items:
        if "root" in item.keywords and not is_root():
            item.add_marker(skip_root)


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tarball of a minimal busybox rootfs (packaging/busybox-rootfs.sh)."""
    out = tmp_path_factory.mktemp("busybox") / "rootfs.tar"
    with open(out, "wb") as f:
        subprocess.run(["bash", str(BUSYBOX_SCRIPT)], stdout=f, check=True)
    return out


@pytest.fixture(scope="session")
def busybox_rootfs(busybox_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The busybox rootfs unpacked into a directory (read-only use: tests overlay it)."""
    root = tmp_path_factory.mktemp("busybox-rootfs")
    with tarfile.open(busybox_tar) as tar:
        tar.extractall(root, filter="fully_trusted")
    yield root


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path) -> Iterator[Any]:
    """One real engine for the session, with busybox:latest imported."""
    from tests.harness import EngineProcess

    if not is_root():
        pytest.skip("the engine needs root")
    proc = EngineProcess(tmp_path_factory.mktemp("engine"))
    try:
        proc.start()
        proc.import_image(busybox_tar, "busybox")
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture()
def docker(engine: Any) -> Iterator[Any]:
    """docker-py against the session engine (a real, unmodified Docker client)."""
    import docker as docker_py

    client = docker_py.DockerClient(base_url=engine.url, timeout=60)
    try:
        yield client
    finally:
        client.close()
