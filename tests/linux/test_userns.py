"""User namespaces: container root is an unprivileged host uid."""

from __future__ import annotations

import pytest

from runtime.linux.runtime import LinuxRuntime
from runtime.spec import IdMapping, Namespace
from tests.linux.conftest import DEFAULT_NAMESPACES, SpecFactory, log_text
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
