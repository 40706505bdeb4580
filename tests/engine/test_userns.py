"""--userns-remap against a real engine: container root is a subordinate host uid, and the
image's files still look root-owned inside because the layers are idmapped, not chowned."""

from __future__ import annotations

import contextlib
import pwd
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.api.errors import CoveError
from runtime.engine import userns
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
    return dk.containers.run("busybox", ["sh", "-c", cmd], detach=True, **kw)


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
