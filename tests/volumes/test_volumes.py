"""VolumeManager: lifecycle, mount parsing, copy-up tagging, in-use rules, tmpfs volumes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from runtime.api.errors import Conflict, InvalidArgument, NotFound
from runtime.engine.events import EventBus
from runtime.layout import EngineLayout
from runtime.volumes.manager import ANON_LABEL, VolumeManager


@pytest.fixture
def vm(tmp_path: Path) -> VolumeManager:
    return VolumeManager(EngineLayout(tmp_path / "data", tmp_path / "exec"), EventBus())


def mounts(vm: VolumeManager, cid: str = "c1", image: dict[str, Any] | None = None,
           **host_config: Any) -> tuple[Any, list[dict[str, Any]]]:
    return vm.mounts_for(cid, config={}, host_config=host_config, image_config=image or {},
                         volumes_from=lambda ref: [])


def test_create_inspect_list_remove(vm: VolumeManager) -> None:
    v = vm.create("data", labels={"a": "b"})
    assert v["Name"] == "data" and v["Scope"] == "local" and v["CreatedAt"].endswith("Z")
    assert Path(v["Mountpoint"]).is_dir()
    assert vm.create("data")["CreatedAt"] == v["CreatedAt"]  # idempotent
    assert [x["Name"] for x in vm.list_volumes({"label": ["a=b"]})] == ["data"]
    assert vm.list_volumes({"label": ["a=c"]}) == []
    vm.remove("data")
    with pytest.raises(NotFound, match="get data: no such volume"):
        vm.get("data")
    vm.remove("data", force=True)


def test_bad_name_and_driver(vm: VolumeManager) -> None:
    with pytest.raises(InvalidArgument, match="includes invalid characters"):
        vm.create("a/b")
    with pytest.raises(NotFound, match="plugin"):
        vm.create("x", driver="nfs-plugin")


def test_binds_volumes_and_copyup(vm: VolumeManager, tmp_path: Path) -> None:
    host = tmp_path / "host"
    rt, info = mounts(vm, Binds=[f"{host}:/h:ro", "named:/n", "/anon"],
                      Tmpfs={"/run": "size=1m"}, image={"Volumes": {"/img": {}}})
    by_dest = {m.destination: m for m in rt}
    assert host.is_dir()  # -v creates a missing host dir
    assert by_dest["/h"].options == ("rbind", "ro", "rprivate")
    assert "copyup" in by_dest["/n"].options and "copyup" in by_dest["/img"].options
    assert by_dest["/run"].type == "tmpfs" and "size=1m" in by_dest["/run"].options
    kinds = {i["Destination"]: i["Type"] for i in info}
    assert kinds == {"/h": "bind", "/n": "volume", "/anon": "volume", "/run": "tmpfs",
                     "/img": "volume"}
    anon = [i["Name"] for i in info if i["Type"] == "volume" and i["Name"] != "named"]
    assert all(ANON_LABEL in vm.get(n)["Labels"] for n in anon)
    # Restarting the container reuses the same anonymous volumes.
    _, again = mounts(vm, Binds=[f"{host}:/h:ro", "named:/n", "/anon"],
                      Tmpfs={"/run": "size=1m"}, image={"Volumes": {"/img": {}}})
    assert sorted(i.get("Name", "") for i in again) == sorted(i.get("Name", "") for i in info)
    with pytest.raises(Conflict, match="in use"):
        vm.remove("named")
    (Path(vm.get("named")["Mountpoint"]) / "f").write_text("x")
    rt2, _ = mounts(vm, "c2", Binds=["named:/n"])
    assert "copyup" not in rt2[0].options  # not empty any more
    vm.release("c1", remove_anonymous=True)
    assert all(n not in {v["Name"] for v in vm.list_volumes()} for n in anon)
    vm.release("c2", remove_anonymous=True)
    vm.remove("named")


def test_mount_api_errors(vm: VolumeManager, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        mounts(vm, Mounts=[{"Type": "bind", "Source": str(tmp_path / "nope"), "Target": "/x"}])
    with pytest.raises(InvalidArgument, match="Duplicate mount point"):
        mounts(vm, Binds=["aa:/x", "bb:/x"])
    with pytest.raises(InvalidArgument, match="invalid mode"):
        mounts(vm, Binds=["aa:/x:bogus"])
    rt, info = mounts(vm, Mounts=[
        {"Type": "bind", "Source": str(tmp_path), "Target": "/b",
         "BindOptions": {"Propagation": "rshared"}},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}},
        {"Type": "volume", "Target": "/v", "VolumeOptions": {"NoCopy": True}}])
    by_dest = {m.destination: m for m in rt}
    assert "rshared" in by_dest["/b"].options
    assert "size=1048576" in by_dest["/t"].options and "mode=700" in by_dest["/t"].options
    assert "copyup" not in by_dest["/v"].options
    assert info[0]["Propagation"] == "rshared"


def test_prune_only_anonymous_by_default(vm: VolumeManager) -> None:
    vm.create("keep")
    anon = vm.create(anonymous=True)["Name"]
    deleted, _ = vm.prune({})
    assert deleted == [anon]
    deleted, _ = vm.prune({"all": ["true"]})
    assert deleted == ["keep"]


@pytest.mark.root
def test_tmpfs_volume_is_mounted_while_used(vm: VolumeManager) -> None:
    v = vm.create("tv", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    mounts(vm, Binds=["tv:/t"])
    assert os.path.ismount(v["Mountpoint"])
    vm.release("c1", remove_anonymous=False)
    assert not os.path.ismount(v["Mountpoint"])
    vm.remove("tv")
