"""Images with many layers: short ``l/`` links keep overlay's lowerdir under the one-page
mount data limit (absolute while it fits, relative to the snapshot root beyond)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runtime.images.store import ImageStore
from tests.images.layers import file, tar_bytes
from tests.images.registry import docker_archive

LAYERS = 60


def _stack(store: ImageStore, n: int) -> Any:
    image = None
    for i in range(n):
        layer = tar_bytes([file(f"l/{i}", f"layer {i}\n".encode())])
        image = store.add_layer(image, io.BytesIO(layer), {"Cmd": ["sh"]},
                                {"created_by": f"layer {i}"})
    return image


def test_links_keep_mount_data_small(store: ImageStore) -> None:
    image = _stack(store, 130)
    mount = store.prepare_rootfs("c1", image)[0]
    data = ",".join(mount.options)
    assert len(data) < 4096
    lowers = data.split(",")[0].removeprefix("lowerdir=").split(":")
    assert len(lowers) == 130
    assert mount.source == str(store.snapshots.root)  # relative: mounted from there
    assert all(lower.startswith("l/") for lower in lowers)
    top = store.snapshots.root / lowers[0]
    assert (top / "l" / "129").read_bytes() == b"layer 129\n"
    store.remove_rootfs("c1")


@pytest.mark.root
def test_view_of_many_layers_mounts(store: ImageStore) -> None:
    image = _stack(store, LAYERS)
    store.prepare_rootfs("c1", image)
    with store.rootfs_view("c1") as root:
        assert (root / "l" / "0").read_bytes() == b"layer 0\n"
        assert len(os.listdir(root / "l")) == LAYERS
    store.remove_rootfs("c1")


def test_gc_removes_links(store: ImageStore) -> None:
    image = _stack(store, 3)
    store.prepare_rootfs("c1", image)
    assert len(os.listdir(store.snapshots.root / "l")) == 3
    store.remove_rootfs("c1")
    store.drop_record(image.id)
    for parent in store.list():
        store.drop_record(parent.id)
    store.gc()
    assert os.listdir(store.snapshots.root / "l") == []


def test_60_layer_image_runs_a_container(engine: Any, busybox_tar: Path, tmp_path: Path) -> None:
    layers = [busybox_tar.read_bytes()] + [
        tar_bytes([file(f"many/{i}", f"{i}\n".encode())]) for i in range(1, LAYERS)]
    archive = tmp_path / "many.tar"
    docker_archive(archive, layers, tag="many:60", Cmd=["sh"])
    env = {**os.environ, "DOCKER_HOST": engine.url}
    subprocess.run(["docker", "load", "-q", "-i", str(archive)], env=env, check=True,
                   capture_output=True, timeout=120)
    try:
        out = subprocess.run(["docker", "run", "--rm", "many:60", "sh", "-c",
                              "cat /many/1 /many/59; ls /many | wc -l"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["1", "59", str(LAYERS - 1)]
    finally:
        subprocess.run(["docker", "rmi", "many:60"], env=env, capture_output=True, timeout=60,
                       check=False)
