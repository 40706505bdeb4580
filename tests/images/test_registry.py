"""Pull and push against Debian's docker-registry (plain, htpasswd); skopeo seeds and checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.api.errors import CoveError, NotFound
from runtime.api.reference import parse
from runtime.images.registry.auth import Credentials, Unauthorized, login
from runtime.images.registry.pull import pull_messages
from runtime.images.registry.push import push_messages
from runtime.images.store import ImageStore
from tests.images.layers import dir_, file, hardlink, symlink, tar_bytes
from tests.images.registry import Registry, docker_archive, start_auth_registry, start_registry

pytestmark = pytest.mark.registry

BASE = tar_bytes([dir_("etc"), file("etc/os", b"base"), file("etc/gone", b"x"), dir_("opq"),
                  file("opq/old", b"o"), file("bin/sh", b"sh", 0o755)])
TOP = tar_bytes([file("etc/.wh.gone"), file("opq/.wh..wh..opq"), file("opq/new", b"n"),
                 file("bin/sh", b"sh2", 0o755), hardlink("bin/sh2", "bin/sh"),
                 symlink("etc/link", "/etc/os"), file("big", os.urandom(300_000))])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    archive = tmp_path_factory.mktemp("archives") / "two.tar"
    docker_archive(archive, [BASE, TOP], Cmd=["sh"])
    reg.push_archive(archive, "test/two:1")
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("authreg")
    reg = start_auth_registry(tmp, "alice", "s3cret")
    archive = tmp / "one.tar"
    docker_archive(archive, [BASE])
    reg.push_archive(archive, "private/one:1")
    yield reg
    reg.stop()


def pull(store: ImageStore, ref: str, creds: Credentials | None = None) -> list[dict[str, Any]]:
    return list(pull_messages(store, parse(ref, default_tag=True), creds))


def statuses(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["status"] for m in msgs if "status" in m]


def test_pull_multi_layer(store: ImageStore, registry: Registry) -> None:
    ref = f"{registry.host}/test/two:1"
    msgs = pull(store, ref)
    st = statuses(msgs)
    assert st[0] == "Pulling from test/two" and msgs[0]["id"] == "1"
    assert st.count("Pulling fs layer") == 2 and st.count("Pull complete") == 2
    assert "Download complete" in st and "Verifying Checksum" in st
    assert st[-2].startswith("Digest: sha256:")
    assert st[-1] == f"Status: Downloaded newer image for {ref}"
    downloading = [m for m in msgs if m.get("status") == "Downloading"]
    assert downloading and downloading[-1]["progressDetail"]["total"] > 0
    assert "[" in downloading[-1]["progress"]
    image = store.get(ref)
    assert image.repo_digests == (f"{registry.host}/test/two@{st[-2][8:]}",)
    store.prepare_rootfs("c", image)
    with store.rootfs_view("c") as root:
        assert not (root / "etc/gone").exists() and os.listdir(root / "opq") == ["new"]
        assert (root / "bin/sh2").read_bytes() == b"sh2"
    store.remove_rootfs("c")
    again = statuses(pull(store, ref))
    assert again[-1] == f"Status: Image is up to date for {ref}"
    assert "Already exists" in again
    by_digest = statuses(pull(store, f"{registry.host}/test/two@{st[-2][8:]}"))
    assert by_digest[-1].startswith("Status: Image is up to date")


def test_pull_missing(store: ImageStore, registry: Registry) -> None:
    with pytest.raises(NotFound, match="not found"):
        pull(store, f"{registry.host}/test/two:nosuch")
    with pytest.raises(NotFound):
        pull(store, f"{registry.host}/nobody/here:1")
    assert store.list() == []


def test_push_round_trip(store: ImageStore, registry: Registry, busybox_tar: Path) -> None:
    pull(store, f"{registry.host}/test/two:1")
    store.tag(f"{registry.host}/test/two:1", f"{registry.host}/copy/two:v2")
    msgs = list(push_messages(store, parse(f"{registry.host}/copy/two:v2"), None))
    st = statuses(msgs)
    assert st[0] == f"The push refers to repository [{registry.host}/copy/two]"
    assert st.count("Mounted from test/two") == 2
    aux = msgs[-1]["aux"]
    assert aux["Tag"] == "v2" and aux["Digest"].startswith("sha256:")
    info = registry.inspect("copy/two:v2")
    assert info["Digest"] == aux["Digest"]
    # An imported (uncompressed) image is gzipped on its way out.
    with open(busybox_tar, "rb") as f:
        img = store.import_tar(f, f"{registry.host}/bb/imported:1", [], "")
    st = statuses(list(push_messages(store, parse(f"{registry.host}/bb/imported:1"), None)))
    assert "Pushed" in st
    info = registry.inspect("bb/imported:1")
    assert len(info["Layers"]) == 1  # type: ignore[arg-type]
    again = statuses(list(push_messages(store, parse(f"{registry.host}/bb/imported:1"), None)))
    assert "Layer already exists" in again
    assert store.record(img.id).layers[0].media_type.endswith("gzip")


def test_push_chunked(store: ImageStore, registry: Registry, monkeypatch: pytest.MonkeyPatch
                      ) -> None:
    from runtime.images.registry import push

    monkeypatch.setattr(push, "CHUNK", 64 * 1024)
    pull(store, f"{registry.host}/test/two:1")
    store.tag(f"{registry.host}/test/two:1", f"{registry.host}/chunked/two:1")
    store.delete(f"{registry.host}/test/two:1")  # no other repo here: no cross-repo mount
    st = statuses(list(push_messages(store, parse(f"{registry.host}/chunked/two:1"), None)))
    assert "Pushed" in st
    assert registry.inspect("chunked/two:1")["Digest"]


def test_basic_auth(store: ImageStore, auth_registry: Registry) -> None:
    ref = f"{auth_registry.host}/private/one:1"
    with pytest.raises((NotFound, Unauthorized)):
        pull(store, ref)
    with pytest.raises((NotFound, Unauthorized)):
        pull(store, ref, Credentials("alice", "wrong"))
    good = Credentials("alice", "s3cret")
    assert statuses(pull(store, ref, good))[-1].startswith("Status: Downloaded")
    store.tag(ref, f"{auth_registry.host}/private/pushed:1")
    st = statuses(list(push_messages(store, parse(f"{auth_registry.host}/private/pushed:1"),
                                     good)))
    assert st[-1].startswith("1: digest:")
    login(store, Credentials("alice", "s3cret", auth_registry.host))
    with pytest.raises(Unauthorized) as err:
        login(store, Credentials("alice", "wrong", auth_registry.host))
    assert "wrong" not in str(err.value) and "s3cret" not in repr(good)


def test_push_missing_image(store: ImageStore, registry: Registry) -> None:
    with pytest.raises(NotFound, match="An image does not exist locally with the tag"):
        list(push_messages(store, parse(f"{registry.host}/none:1"), None))


def test_unreachable_registry(store: ImageStore) -> None:
    with pytest.raises(CoveError, match=r"127\.0\.0\.1:1"):
        pull(store, "127.0.0.1:1/x:1")
