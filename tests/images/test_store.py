"""The store library: content store, multi-layer images over overlay, rmi/prune/gc, commit."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from runtime.api.errors import Conflict, InvalidArgument, NotFound
from runtime.engine.events import EventBus
from runtime.images import digest as dg
from runtime.images.content import ContentStore, DigestMismatch
from runtime.images.store import ImageStore
from runtime.layout import EngineLayout
from tests.images.layers import add_image, dir_, file, hardlink, symlink, tar_bytes

BASE = tar_bytes([dir_("etc"), file("etc/os", b"base"), file("etc/gone", b"x"),
                  dir_("opq"), file("opq/old", b"o"), file("bin/sh", b"sh", 0o755)])
TOP = tar_bytes([file("etc/.wh.gone"), file("opq/.wh..wh..opq"), file("opq/new", b"n"),
                 file("bin/sh", b"sh2", 0o755), hardlink("bin/sh2", "bin/sh"),
                 symlink("etc/link", "/etc/os")])


def test_content_ingest_commit_verify(tmp_path: Path) -> None:
    cs = ContentStore(tmp_path)
    good = dg.sha256(b"hello")
    with cs.ingest(good, 5) as ing:
        ing.write(b"hel")  # interrupted: no commit
    assert not cs.has(good)
    with cs.ingest(good, 5) as ing:
        assert ing.offset == 3  # resumable from what was verified-so-far
        ing.write(b"lo")
        assert ing.commit() == good
    assert cs.read(good) == b"hello"
    with pytest.raises(DigestMismatch), cs.ingest(dg.sha256(b"other"), 5) as ing:
        ing.write(b"hello")
        ing.commit()
    with pytest.raises(DigestMismatch), cs.ingest(None, 2) as ing:
        ing.write(b"abc")
    assert cs.digests() == {good}
    assert not any((tmp_path / "ingest").iterdir()) or all(
        len(d.name) == 64 for d in (tmp_path / "ingest").iterdir())


def test_multi_layer_view(store: ImageStore) -> None:
    img = add_image(store, [BASE, TOP], "example.com/ns/app:1", Cmd=["sh"])
    assert img.repo_tags == ("example.com/ns/app:1",)
    assert store.get("example.com/ns/app:1").id == img.id
    assert store.get(img.id[7:19]).id == img.id
    (mount,) = store.prepare_rootfs("c1", img)
    assert mount.type == "overlay" and mount.destination == "/"
    assert store.prepare_rootfs("c1", img) == (mount,)  # idempotent
    with store.rootfs_view("c1") as root:
        assert (root / "etc/os").read_bytes() == b"base"
        assert not (root / "etc/gone").exists()
        assert sorted(os.listdir(root / "opq")) == ["new"]
        assert (root / "bin/sh").read_bytes() == b"sh2"
        assert os.readlink(root / "etc/link") == "/etc/os"
    store.remove_rootfs("c1")
    store.remove_rootfs("c1")


def test_empty_image_rootfs(store: ImageStore) -> None:
    img = add_image(store, [], "empty")
    (mount,) = store.prepare_rootfs("c", img)
    with store.rootfs_view("c") as root:
        assert os.listdir(root) == []
    assert "lowerdir=" in mount.options[0]


def test_get_not_found_and_bad_refs(store: ImageStore) -> None:
    with pytest.raises(NotFound, match="No such image: nope"):
        store.get("nope")
    with pytest.raises(NotFound):
        store.get("UPPER")


def test_rmi_untag_then_delete_frees_everything(store: ImageStore, layout: EngineLayout) -> None:
    img = add_image(store, [BASE, TOP], "app:1")
    store.tag("app:1", "app:2")
    assert store.get("app:2").repo_tags == ("app:1", "app:2")
    assert store.delete("app:1") == [{"Untagged": "app:1"}]
    records = store.delete("app:2")
    assert records[0] == {"Untagged": "app:2"} and {"Deleted": img.id} in records
    assert store.list() == []
    assert store.content.digests() == set()
    assert store.snapshots.layers() == []


def test_rmi_conflicts(store: ImageStore) -> None:
    img = add_image(store, [BASE], "app:1")
    store.in_use = lambda image_id: ["c" * 64] if image_id == img.id else []
    with pytest.raises(Conflict, match=r"unable to remove repository reference \"app:1\" "
                       r"\(must force\) - container cccccccccccc is using its referenced image"):
        store.delete("app:1")
    with pytest.raises(Conflict, match=r"must be forced.*stopped container"):
        store.delete(img.id)
    store.tag("app:1", "other:1")
    with pytest.raises(Conflict, match="referenced in multiple repositories"):
        store.in_use = lambda image_id: []
        store.delete(img.id)
    store.is_running = lambda cid: True
    store.in_use = lambda image_id: ["c" * 64]
    with pytest.raises(Conflict, match="cannot be forced"):
        store.delete(img.id, force=True)
    store.is_running = lambda cid: False
    records = store.delete(img.id, force=True)
    assert {"Deleted": img.id} in records


def test_layers_shared_and_kept_for_containers(store: ImageStore) -> None:
    a = add_image(store, [BASE], "a")
    b = add_image(store, [BASE, TOP], "b")
    store.prepare_rootfs("c1", b)
    store.delete("a")
    assert store.snapshots.has_layer(a.chain_ids[0])
    store.delete("b", force=True)
    assert store.snapshots.has_layer(b.chain_ids[-1])  # the container still sits on it
    store.remove_rootfs("c1")
    store.gc()
    assert store.snapshots.layers() == []


def test_prune(store: ImageStore) -> None:
    add_image(store, [BASE], "keep", Labels={"x": "1"})
    dangling = add_image(store, [TOP])
    out = store.prune({})
    assert out["ImagesDeleted"][0] == {"Deleted": dangling.id}
    assert out["SpaceReclaimed"] > 0
    out = store.prune({"dangling": ["false"], "label": ["x=2"]})
    assert out["ImagesDeleted"] is None
    out = store.prune({"dangling": ["false"]})
    assert out["ImagesDeleted"][0] == {"Untagged": "keep:latest"}


def test_persisted_across_restart(store: ImageStore, layout: EngineLayout) -> None:
    img = add_image(store, [BASE], "registry.local:5000/x/y:z")
    again = ImageStore(layout, EventBus())
    assert again.get("registry.local:5000/x/y:z") == store.get(img.id)


def test_import_with_changes_and_commit(store: ImageStore, busybox_tar: Path) -> None:
    with open(busybox_tar, "rb") as f:
        img = store.import_tar(f, "bb:imported", ['CMD ["sh"]', "ENV A=1 B=two", "EXPOSE 80",
                                                  "WORKDIR /w", "LABEL k=v", "USER 1:1"], "msg")
    cfg = img.config["config"]
    assert cfg["Cmd"] == ["sh"] and cfg["Env"] == ["A=1", "B=two"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["Labels"] == {"k": "v"}
    assert img.config["history"][0]["comment"] == "msg"
    assert img.id == dg.sha256(store.content.read(img.id))
    with pytest.raises(InvalidArgument, match="not a valid change"):
        store.import_tar(io.BytesIO(b""), None, ["BOGUS x"], "")
    store.prepare_rootfs("c1", img)
    (store.rootfs_upper("c1") / "new").write_text("n")
    child = store.commit("c1", img, ref="bb:child", changes=["ENV C=3"], comment="c",
                         author="me", config_overrides={"Cmd": ["true"]})
    assert child.config["config"]["Cmd"] == ["true"]
    assert child.config["config"]["Env"] == ["A=1", "B=two", "C=3"]
    assert child.diff_ids[:1] == img.diff_ids and len(child.diff_ids) == 2
    assert child.record is not None and child.record.parent == img.id
    store.prepare_rootfs("c2", child)
    with store.rootfs_view("c2") as root:
        assert (root / "new").read_text() == "n" and (root / "bin/busybox").exists()
    store.remove_rootfs("c1")
    store.remove_rootfs("c2")


def test_failed_unpack_leaves_nothing(store: ImageStore) -> None:
    bad = tar_bytes([file("../x")])
    with pytest.raises(InvalidArgument):
        store.import_tar(io.BytesIO(bad), "bad", [], "")
    store.gc()
    assert store.list() == [] and store.snapshots.layers() == []
    assert list((store.layout.snapshots / "staging").iterdir()) == []
    assert store.content.digests() == set()
