"""Shared fixtures: a busybox root filesystem built from Debian's busybox-static."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
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


# The arm64 guest image (tests/vmhost/test_vm_arm64.py) takes minutes to cross-build cold,
# mostly one core running dpkg under qemu-user. When that test is collected, the build starts
# in the background at once and overlaps the rest of the run; the test's own build() call
# waits on the image's lock and finds it done. Its output: $TMPDIR/cove-arm64-prebuild.log.
_PREBUILDS: list[subprocess.Popen[bytes]] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    if not is_root() or session.config.option.collectonly:
        return
    if not any("test_vm_arm64.py::test_arm64" in item.nodeid for item in session.items):
        return
    from vmhost import guestimage

    if guestimage.host_arch() == "arm64" or not guestimage.can_build():
        return
    log = open(Path(tempfile.gettempdir(), "cove-arm64-prebuild.log"), "wb")  # noqa: SIM115
    _PREBUILDS.append(subprocess.Popen(
        [sys.executable, "-c", "from vmhost import guestimage; guestimage.build(arch='arm64')"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
    log.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Never leave it behind (it holds a binfmt_misc entry while it runs): wait for it.
    for proc in _PREBUILDS:
        proc.wait()


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
