"""--userns-remap against a real engine: container root is a subordinate host uid, and the
image's files still look root-owned inside because the layers are idmapped, not chowned."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import stat
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.api.errors import CoveError, InvalidArgument
from runtime.engine import userns
from runtime.images.difftar import write_tree
from runtime.images.idshift import OVERFLOW_ID, IdShift
from runtime.spec import IdMapping
from tests.compat.clients import docker_cli
from tests.compat.clients import run as cli_run
from tests.harness import EngineProcess, leaked_mounts

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def host_ids() -> Iterator[None]:
    """Whatever --userns-remap default adds (user cove-remap, its ranges) is undone."""
    saved = {p: p.read_bytes() if p.exists() else None for p in (userns.SUBUID, userns.SUBGID)}
    try:
        pwd.getpwnam(userns.DEFAULT_USER)
        had_user = True
    except KeyError:
        had_user = False
    try:
        yield
    finally:
        if not had_user:
            subprocess.run(["userdel", userns.DEFAULT_USER], capture_output=True, check=False)
        for path, content in saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            elif path.read_bytes() != content:
                path.write_bytes(content)


@pytest.fixture(scope="module")
def remap_engine(tmp_path_factory: pytest.TempPathFactory, busybox_tar: Path,
                 host_ids: None) -> Iterator[EngineProcess]:
    proc = EngineProcess(tmp_path_factory.mktemp("userns-engine"),
                         extra_args=("--userns-remap", "default"))
    try:
        proc.start()
        proc.import_image(busybox_tar, "busybox")
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture(scope="module")
def root_ids(remap_engine: EngineProcess) -> tuple[int, int]:
    """The host uid and gid of container root: cove-remap's first subordinate ids."""
    remap = userns.resolve(userns.DEFAULT_USER)
    return remap.uid_mappings[0].host_id, remap.gid_mappings[0].host_id


@pytest.fixture()
def dk(remap_engine: EngineProcess) -> Iterator[Any]:
    import docker as docker_py

    client = docker_py.DockerClient(base_url=remap_engine.url, timeout=60)
    try:
        yield client
    finally:
        for c in client.containers.list(all=True):
            with contextlib.suppress(Exception):
                c.remove(force=True, v=True)
        client.close()


def run(dk: Any, cmd: str, **kw: Any) -> Any:
    kw.setdefault("network_mode", "none")
    image = kw.pop("image", "busybox")
    return dk.containers.run(image, ["sh", "-c", cmd], detach=True, **kw)


def output(dk: Any, cmd: str, **kw: Any) -> list[str]:
    c = run(dk, cmd, **kw)
    code = c.wait(timeout=30)["StatusCode"]
    out: str = c.logs().decode()
    c.remove(v=True)
    assert code == 0, out
    return out.splitlines()


def wait_for_log(c: Any, lines: int) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out: list[str] = c.logs().decode().splitlines()
        if len(out) >= lines:
            return out
        time.sleep(0.05)
    raise AssertionError(f"no output from {c.id}: {c.logs()!r}")


def upper_dir(engine: EngineProcess, cid: str) -> Path:
    return engine.data_root / "snapshots" / "containers" / cid / "upper"


def test_info_lists_userns(remap_engine: EngineProcess) -> None:
    _, info = remap_engine.request("GET", "/info")
    assert "name=userns" in info["SecurityOptions"]


def test_root_inside_is_the_subordinate_uid_outside(dk: Any, root_ids: tuple[int, int]) -> None:
    c = run(dk, "id -u; id -g; cat /proc/self/uid_map; exec sleep 60")
    lines = wait_for_log(c, 3)
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", str(root_ids[0]), str(userns.RANGE_SIZE)]
    c.reload()
    ps = subprocess.run(["ps", "-o", "uid=", "-p", str(c.attrs["State"]["Pid"])],
                        capture_output=True, text=True, check=True)
    assert int(ps.stdout) == root_ids[0]


def test_image_files_are_root_inside_and_new_files_remapped_on_disk(
        dk: Any, remap_engine: EngineProcess, root_ids: tuple[int, int]) -> None:
    c = run(dk, "stat -c '%u:%g' /bin/busybox /etc; echo x > /created; mkdir /made;"
                " echo more >> /etc/passwd; stat -c '%u' /etc/passwd")
    assert c.wait(timeout=30)["StatusCode"] == 0, c.logs()
    assert c.logs().decode().split() == ["0:0", "0:0", "0"]
    upper = upper_dir(remap_engine, c.id)
    for name in ("created", "made", "etc/passwd"):  # a new file, a dir and a copy-up
        st = (upper / name).stat()
        assert (st.st_uid, st.st_gid) == root_ids, name
    c.remove()


def test_named_volume_is_writable_by_container_root(dk: Any) -> None:
    vol = {"userns-vol": {"bind": "/data", "mode": "rw"}}
    assert output(dk, "echo hi > /data/f; stat -c %u /data /data/f", volumes=vol) == ["0", "0"]
    # A second container sees the same owner: the volume is idmapped, never chowned.
    assert output(dk, "cat /data/f; stat -c %u /data/f", volumes=vol) == ["hi", "0"]
    dk.volumes.get("userns-vol").remove()


def test_volume_copy_up_keeps_image_owners(dk: Any) -> None:
    lines = output(dk, "stat -c %u /etc/passwd; touch /etc/new", volumes=["/etc"])
    assert lines == ["0"]


def test_per_container_files_and_tmpfs_belong_to_root(dk: Any) -> None:
    lines = output(dk, "stat -c %u /etc/hosts /etc/hostname /etc/resolv.conf;"
                       " echo '10.9.9.9 x' >> /etc/hosts; touch /scratch/f; stat -c %u /scratch",
                   network_mode="bridge", tmpfs={"/scratch": ""})
    assert lines == ["0", "0", "0", "0"]


def test_exec_runs_in_the_user_namespace(dk: Any) -> None:
    c = run(dk, "exec sleep 60")
    code, out = c.exec_run(["sh", "-c", "id -u; readlink /proc/1/ns/user; readlink"
                                         " /proc/self/ns/user"])
    assert code == 0, out
    uid, ns1, ns_self = out.decode().split()
    assert uid == "0" and ns1 == ns_self
    c.remove(force=True)


def test_mounts_stay_in_the_container(dk: Any, remap_engine: EngineProcess) -> None:
    c = run(dk, "exec sleep 60", volumes={"userns-vol2": {"bind": "/data", "mode": "rw"}})
    with open("/proc/self/mountinfo") as f:
        assert [line for line in f if "idmapped" in line] == []
    c.reload()
    with open(f"/proc/{c.attrs['State']['Pid']}/mountinfo") as f:
        assert sum("idmapped" in line for line in f) >= 2  # a layer and the volume
    c.remove(force=True, v=True)
    dk.volumes.get("userns-vol2").remove()
    # Only the engine's own netns dir stays mounted on the host; nothing of the container.
    assert leaked_mounts(remap_engine.data_root) == []


def test_privileged_needs_userns_host(dk: Any) -> None:
    import docker as docker_py

    with pytest.raises(docker_py.errors.APIError) as err:
        run(dk, "true", privileged=True)
    assert "privileged mode is incompatible with user namespaces" in str(err.value)
    lines = output(dk, "id -u; cat /proc/self/uid_map", privileged=True, userns_mode="host")
    assert lines[0] == "0" and lines[1].split() == ["0", "0", "4294967295"]


def test_userns_host_opts_out(dk: Any, remap_engine: EngineProcess) -> None:
    c = run(dk, "touch /mine", userns_mode="host")
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert (upper_dir(remap_engine, c.id) / "mine").stat().st_uid == 0
    c.remove()


def test_resolve_reads_a_users_ranges(tmp_path: Path) -> None:
    sub = tmp_path / "subuid"
    sub.write_text("other:300000:10\nroot:200000:1000\n0:400000:5\n")
    remap = userns.resolve("root", subuid=sub, subgid=sub)
    assert [(m.container_id, m.host_id, m.size) for m in remap.uid_mappings] == [
        (0, 200000, 1000), (1000, 400000, 5)]
    with pytest.raises(CoveError, match="no subgid ranges"):
        userns.resolve("root:daemon", subuid=sub, subgid=sub)


def test_restart_remounts_the_same_layers(dk: Any) -> None:
    c = run(dk, "echo $(stat -c %u /bin/busybox) >> /runs; cat /runs")
    assert c.wait(timeout=30)["StatusCode"] == 0
    c.start()
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert c.logs().decode().split()[-2:] == ["0", "0"]
    c.remove()


# ---- host-side views: cp, export, commit, diff translate owners through the maps ----
# (moby's IdentityMapping). Container root writes host uid 100000 on disk, uid 1000
# writes 101000; the API must still say 0 and 1000, and take 0 and 1000 in.

MAKE_FILES = ("touch /by-root /by-user; chown 1000:1001 /by-user;"
              " mkdir /home/u; chown 1000:1000 /home/u; rm /etc/group; echo done")


def tar_owners(data: bytes) -> dict[str, tuple[int, int]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("./").rstrip("/"): (m.uid, m.gid) for m in tar}


def archive(c: Any, path: str) -> dict[str, tuple[int, int]]:
    stream, _ = c.get_archive(path)
    return tar_owners(b"".join(stream))


def files_container(dk: Any, *, keep_running: bool) -> Any:
    c = run(dk, MAKE_FILES + ("; exec sleep 120" if keep_running else ""))
    if keep_running:
        wait_for_log(c, 1)
    else:
        assert c.wait(timeout=30)["StatusCode"] == 0, c.logs()
    return c


def one_file_tar(name: str, uid: int, gid: int, data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.uid, info.gid, info.mode = len(data), uid, gid, 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put(engine: EngineProcess, cid: str, path: str, tar: bytes, *, copy_ids: bool) -> int:
    query = f"path={path}" + ("&copyUIDGID=1" if copy_ids else "")
    status, body = engine.request("PUT", f"/containers/{cid}/archive?{query}", raw=tar)
    if status >= 500:
        print(body, engine.log_tail(30))
    return status


@pytest.mark.parametrize("keep_running", [True, False], ids=["running", "stopped"])
def test_cp_out_shows_container_ids(dk: Any, remap_engine: EngineProcess,
                                    root_ids: tuple[int, int], keep_running: bool) -> None:
    c = files_container(dk, keep_running=keep_running)
    upper = upper_dir(remap_engine, c.id)
    # On disk the writable layer holds the shifted ids ...
    assert (upper / "by-user").stat().st_uid == root_ids[0] + 1000
    assert (upper / "by-root").stat().st_uid == root_ids[0]
    # ... the archive the ids the container sees; the image's files are still root's.
    assert archive(c, "/by-user") == {"by-user": (1000, 1001)}
    assert archive(c, "/by-root") == {"by-root": (0, 0)}
    assert archive(c, "/bin/busybox") == {"busybox": (0, 0)}
    home = archive(c, "/home")
    assert home["home"] == (0, 0) and home["home/u"] == (1000, 1000)
    c.remove(force=True)


def test_cp_out_of_an_unmapped_owner_shows_overflow(dk: Any, remap_engine: EngineProcess
                                                    ) -> None:
    """A file the container cannot own (host uid 5, put there from the host) shows as
    nobody, as the kernel shows it inside, where moby would fail the whole copy."""
    c = run(dk, "exec sleep 120")
    outside = upper_dir(remap_engine, c.id) / "host-owned"
    outside.write_text("x")
    os.chown(outside, 5, 5)
    code, out = c.exec_run(["stat", "-c", "%u:%g", "/host-owned"])
    assert (code, out.decode().strip()) == (0, "65534:65534")
    assert archive(c, "/host-owned") == {"host-owned": (65534, 65534)}
    c.remove(force=True)


@pytest.mark.parametrize("keep_running", [True, False], ids=["running", "stopped"])
def test_cp_in_stores_what_the_container_sees(dk: Any, remap_engine: EngineProcess,
                                              root_ids: tuple[int, int],
                                              keep_running: bool) -> None:
    vol = {"userns-cp-vol": {"bind": "/vol", "mode": "rw"}}
    c = run(dk, "echo up; exec sleep 120", volumes=vol)
    wait_for_log(c, 1)
    if not keep_running:
        c.stop(timeout=0)  # the worker then mounts (and idmaps) the rootfs and volume itself
    assert put(remap_engine, c.id, "/", one_file_tar("kept", 1000, 1001), copy_ids=True) == 200
    assert put(remap_engine, c.id, "/", one_file_tar("rooted", 1000, 1001),
               copy_ids=False) == 200
    # A directory the tar implies but does not list belongs to container root.
    assert put(remap_engine, c.id, "/", one_file_tar("implied/f", 7, 7), copy_ids=True) == 200
    # Into a volume (idmapped: stores container ids on disk).
    assert put(remap_engine, c.id, "/vol", one_file_tar("v", 1000, 1000), copy_ids=True) == 200
    upper = upper_dir(remap_engine, c.id)
    st = (upper / "kept").stat()
    assert (st.st_uid, st.st_gid) == (root_ids[0] + 1000, root_ids[1] + 1001)
    assert (upper / "rooted").stat().st_uid == root_ids[0]
    if not keep_running:
        c.start()
    check = "stat -c '%n %u:%g' /kept /rooted /implied /implied/f /vol/v"
    code, out = c.exec_run(["sh", "-c", check])
    assert code == 0, out
    assert out.decode().splitlines() == [
        "/kept 1000:1001", "/rooted 0:0", "/implied 0:0", "/implied/f 7:7", "/vol/v 1000:1000"]
    c.remove(force=True, v=True)
    dk.volumes.get("userns-cp-vol").remove()


def test_cp_in_refuses_ids_outside_the_maps_and_paths_outside_the_root(
        dk: Any, remap_engine: EngineProcess) -> None:
    c = run(dk, "ln -s ../../../../../../../tmp /esc; echo up; exec sleep 120")
    wait_for_log(c, 1)
    status = put(remap_engine, c.id, "/", one_file_tar("too-high", 70000, 0), copy_ids=True)
    assert status == 400
    marker = f"cove-userns-escape-{c.id[:12]}"
    # A symlinked destination resolves inside the container; '..' members are dropped.
    assert put(remap_engine, c.id, "/esc/", one_file_tar(marker, 0, 0), copy_ids=True) == 200
    assert put(remap_engine, c.id, "/", one_file_tar(f"../../{marker}-dots", 0, 0),
               copy_ids=True) == 200
    assert not Path("/tmp", marker).exists() and not Path("/", f"{marker}-dots").exists()
    code, out = c.exec_run(["stat", "-c", "%u", f"/tmp/{marker}"])
    assert (code, out.decode().strip()) == (0, "0")
    assert put(remap_engine, c.id, "/no/such/dir", one_file_tar("f", 0, 0),
               copy_ids=True) == 404
    c.remove(force=True)


@pytest.mark.skipif(docker_cli() is None, reason="the docker CLI is not installed")
def test_docker_cli_cp_both_ways(dk: Any, remap_engine: EngineProcess, tmp_path: Path) -> None:
    """The real client: ``docker cp`` out as a tar on stdout, ``docker cp -a`` in."""
    cli = docker_cli()
    assert cli is not None
    c = files_container(dk, keep_running=True)
    out = cli_run(remap_engine, [cli, "cp", f"{c.id}:/home", "-"]).stdout
    assert tar_owners(out) == {"home": (0, 0), "home/u": (1000, 1000)}
    local = tmp_path / "from-host"
    local.write_text("x")
    os.chown(local, 1000, 1001)
    cli_run(remap_engine, [cli, "cp", "-a", str(local), f"{c.id}:/from-host"])
    code, got = c.exec_run(["stat", "-c", "%u:%g", "/from-host"])
    assert (code, got.decode().strip()) == (0, "1000:1001")
    c.remove(force=True)


@pytest.mark.parametrize("keep_running", [True, False], ids=["running", "stopped"])
def test_export_records_container_ids(dk: Any, keep_running: bool) -> None:
    c = files_container(dk, keep_running=keep_running)
    owners = tar_owners(b"".join(c.export()))
    assert owners["by-user"] == (1000, 1001) and owners["home/u"] == (1000, 1000)
    assert owners["by-root"] == (0, 0) and owners["bin/busybox"] == (0, 0)
    assert owners["etc"] == (0, 0)  # a copied-up directory (etc/group was removed)
    assert "etc/group" not in owners
    c.remove(force=True)


def test_diff_lists_the_changes(dk: Any) -> None:
    c = files_container(dk, keep_running=False)
    changes = {(d["Path"], d["Kind"]) for d in c.diff()}
    assert {("/by-root", 1), ("/by-user", 1), ("/home/u", 1), ("/etc", 0),
            ("/etc/group", 2)} <= changes
    c.remove()


def test_commit_records_container_ids(dk: Any, root_ids: tuple[int, int]) -> None:
    c = files_container(dk, keep_running=True)
    image = c.commit(repository="userns-committed", tag="1")
    c.remove(force=True)
    check = "stat -c '%n %u:%g' /by-root /by-user /home/u /bin/busybox; test ! -e /etc/group"
    want = ["/by-root 0:0", "/by-user 1000:1001", "/home/u 1000:1000", "/bin/busybox 0:0"]
    try:
        # Remapped, and with the host's ids: the layer holds container ids, so both agree.
        assert output(dk, check, image="userns-committed:1") == want
        assert output(dk, check, image="userns-committed:1", userns_mode="host") == want
        # The layer itself: no shifted id anywhere in it.
        layer_owners = _last_layer_owners(dk, image.id)
        assert layer_owners["by-user"] == (1000, 1001) and layer_owners["by-root"] == (0, 0)
        assert all(uid < root_ids[0] for uid, _ in layer_owners.values())
    finally:
        dk.images.remove(image.id, force=True)


def test_build_run_layers_record_container_ids(dk: Any) -> None:
    """A RUN step is a commit of its container's writable layer: same translation (else
    the image holds 100000-owned files and /etc, and does not even start remapped)."""
    dockerfile = b"FROM busybox\nRUN touch /x && mkdir /y && chown 1000:1001 /y\n"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    context.seek(0)
    image, _ = dk.images.build(fileobj=context, custom_context=True, tag="userns-built:1",
                               rm=True)
    check = "stat -c '%n %u:%g' /x /y /etc"
    want = ["/x 0:0", "/y 1000:1001", "/etc 0:0"]
    try:
        assert output(dk, check, image="userns-built:1") == want
        assert output(dk, check, image="userns-built:1", userns_mode="host") == want
    finally:
        dk.images.remove(image.id, force=True)


def _last_layer_owners(dk: Any, image_id: str) -> dict[str, tuple[int, int]]:
    saved = b"".join(dk.images.get(image_id).save())
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = outer.extractfile(manifest[0]["Layers"][-1])
        assert layer is not None
        return tar_owners(layer.read())


# ---- the translation itself ----
SHIFT = IdShift((IdMapping(container_id=0, host_id=100000, size=1000),
                 IdMapping(container_id=1000, host_id=300000, size=10)),
                (IdMapping(container_id=0, host_id=200000, size=65536),))


def test_idshift_translates_through_every_range() -> None:
    assert SHIFT.root == (100000, 200000)
    assert SHIFT.to_container(100999, 265535) == (999, 65535)
    assert SHIFT.to_container(300009, 200000) == (1009, 0)
    # Unmapped host ids read as the kernel's overflow id; unmapped container ids refuse.
    assert SHIFT.to_container(0, 300000) == (OVERFLOW_ID, OVERFLOW_ID)
    assert SHIFT.to_container(101000, 0) == (OVERFLOW_ID, OVERFLOW_ID)
    assert SHIFT.to_host(1005, 7) == (300005, 200007)
    with pytest.raises(InvalidArgument, match="Container ID 1010 cannot be mapped"):
        SHIFT.to_host(1010, 0)
    with pytest.raises(InvalidArgument, match="Container ID 65536 cannot be mapped"):
        SHIFT.to_host(0, 65536)
    assert IdShift.from_json(SHIFT.to_json()) == SHIFT
    assert IdShift.from_json(None) is None


def test_layer_of_a_remapped_upper_dir_records_container_ids(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "f").write_text("x")
    os.chown(upper / "d", 100000, 200000)
    os.chown(upper / "d" / "f", 300001, 200010)
    os.mknod(upper / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
    buf = io.BytesIO()
    write_tree(upper, buf, shift=SHIFT)
    assert tar_owners(buf.getvalue()) == {"d": (0, 0), "d/f": (1001, 10), ".wh.gone": (0, 0)}
    buf = io.BytesIO()
    write_tree(upper, buf)  # no remapping: the ids on disk, as before
    assert tar_owners(buf.getvalue())["d/f"] == (300001, 200010)
