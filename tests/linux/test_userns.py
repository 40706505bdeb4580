"""User namespaces: container root is an unprivileged host uid."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.linux.runtime import LinuxRuntime
from runtime.spec import IdMapping, Mount, Namespace
from tests.linux.conftest import DEFAULT_NAMESPACES, SpecFactory, log_text, run
from tests.linux.streams import demux, read_all
from tests.linux.test_streams import _exec

pytestmark = pytest.mark.root

MAPS = (IdMapping(container_id=0, host_id=100000, size=65536),)


def test_userns_root_maps_to_host_uid(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(
        ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname; exec sleep 100"],
        namespaces=(*DEFAULT_NAMESPACES, Namespace(type="user")),
        uid_mappings=MAPS, gid_mappings=MAPS, hostname="userns",
    )
    pid = runtime.start(spec)
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == ["100000"] * 4
    out = demux(read_all(runtime.exec_start(
        spec.id, "x", _exec(runtime, spec.id, ["id", "-u"]), stdin=False)))
    assert out[1] == b"0\n"
    assert runtime.exec_status(spec.id, "x")[2] == 0
    lines = log_text(spec).split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "100000", "65536"]
    assert lines[2] == "userns"


def test_idmapped_layers_and_binds(runtime: LinuxRuntime, make_spec: SpecFactory,
                                   tmp_path: Path) -> None:
    """--userns-remap's mounts: the shared lower layer and an engine-owned bind are
    idmapped (root-owned on disk, root inside), the upper dir belongs to the remapped root."""
    base = make_spec(["true"])
    overlay = base.rootfs_mounts[0]
    data = tmp_path / "volume"
    data.mkdir()
    (data / "seed").write_text("x")
    spec = make_spec(
        ["sh", "-c", "stat -c '%u %n' /bin/sh /data/seed; touch /new /data/made; echo ok"],
        namespaces=(*DEFAULT_NAMESPACES, Namespace(type="user")),
        uid_mappings=MAPS, gid_mappings=MAPS,
        rootfs_mounts=(Mount(destination="/", type="overlay", source=overlay.source,
                             options=(*overlay.options, "idmap")),),
        mounts=(Mount(destination="/data", type="bind", source=str(data),
                      options=("rbind", "rw", "idmap")),),
    )
    assert run(runtime, spec) == 0, log_text(spec)
    assert log_text(spec).split("\n")[:3] == ["0 /bin/sh", "0 /data/seed", "ok"]
    upper = Path(base.rootfs).parent / "upper"  # the overlay is base's
    assert (upper.stat().st_uid, (upper / "new").stat().st_uid) == (100000, 100000)
    assert (data / "made").stat().st_uid == 0  # idmapped: container root is 0 on disk
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()
