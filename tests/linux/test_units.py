"""Pure pieces of runtime.linux that need no container: log format, users, seccomp, options."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from runtime.api.errors import InvalidArgument
from runtime.linux import rootfs, seccomp
from runtime.linux.cgroups import CgroupV1, CgroupV2, cgroup_layout, open_cgroup, open_cgroup_in
from runtime.linux.jsonlog import MAX_LINE, JsonLog, rfc3339nano
from runtime.linux.syscalls import MS_BIND, MS_NOSUID, MS_RDONLY, MS_REC, MS_SLAVE
from runtime.linux.users import resolve_user


def test_rfc3339nano_trims_like_go() -> None:
    assert rfc3339nano(1_795_851_000_123_456_789) == "2026-11-28T07:30:00.123456789Z"
    assert rfc3339nano(1_795_851_000_120_000_000) == "2026-11-28T07:30:00.12Z"
    assert rfc3339nano(1_795_851_000_000_000_000) == "2026-11-28T07:30:00Z"


def _entries(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_log_splits_lines_and_partials(tmp_path: Path) -> None:
    log = JsonLog(str(tmp_path / "c.log"))
    log.write("stdout", b"a\nb")
    log.write("stderr", b"e\n")
    log.write("stdout", b"c\n" + b"x" * (MAX_LINE + 5))
    log.close()
    got = [(e["stream"], e["log"]) for e in _entries(tmp_path / "c.log")]
    assert got == [("stdout", "a\n"), ("stderr", "e\n"), ("stdout", "bc\n"),
                   ("stdout", "x" * MAX_LINE), ("stdout", "xxxxx")]


def test_json_log_rotates(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonLog(str(path), max_size=200, max_file=3)
    for i in range(40):
        log.write("stdout", f"line {i}\n".encode())
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.log", "c.log.1", "c.log.2"]
    assert all(p.stat().st_size <= 200 + 100 for p in tmp_path.iterdir())
    assert _entries(path)[-1]["log"] == "line 39\n"


def _etc(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                     "app:x:1000:1000::/home/app:/bin/sh\n")
    (tmp_path / "group").write_text("root:x:0:\nwheel:x:10:root,app\napp:x:1000:\n"
                                    "audio:x:29:app\n")
    return str(tmp_path / "passwd"), str(tmp_path / "group")


def test_resolve_user(tmp_path: Path) -> None:
    pw, gr = _etc(tmp_path)
    u = resolve_user("app", passwd_path=pw, group_path=gr)
    assert (u.uid, u.gid, u.groups, u.home) == (1000, 1000, (1000, 10, 29), "/home/app")
    u = resolve_user("app:wheel", ("audio", "4242"), passwd_path=pw, group_path=gr)
    assert (u.uid, u.gid, u.groups) == (1000, 10, (10, 29, 4242))
    u = resolve_user("4000:4001", passwd_path=pw, group_path=gr)
    assert (u.uid, u.gid, u.groups, u.home) == (4000, 4001, (4001,), "/")
    with pytest.raises(InvalidArgument, match="unable to find user bob"):
        resolve_user("bob", passwd_path=pw, group_path=gr)
    with pytest.raises(InvalidArgument, match="unable to find group nogroup"):
        resolve_user("app:nogroup", passwd_path=pw, group_path=gr)


def test_mount_options() -> None:
    o = rootfs.parse_options(("rbind", "ro", "nosuid", "rslave", "size=1m", "mode=755"))
    assert o.flags == MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID
    assert o.propagation == MS_SLAVE | MS_REC
    assert o.data == "size=1m,mode=755"
    with pytest.raises(ValueError):
        rootfs.inside("/r", "/a/../../etc")
    assert rootfs.inside("/r", "/a/./b/") == "/r/a/b"


def test_seccomp_profiles() -> None:
    default = seccomp.compile_profile(None, ("CAP_CHOWN",))
    assert default is not None and len(default) % 8 == 0
    assert seccomp.compile_profile("unconfined", ()) is None
    with_admin = seccomp.compile_profile(None, ("CAP_SYS_ADMIN",))
    assert with_admin != default
    profile = seccomp.parse_profile(json.dumps({
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [{"names": ["read", "nosuchcall"], "action": "SCMP_ACT_ALLOW",
                      "includes": {"caps": ["CAP_X"]}},
                     {"name": "personality", "action": "SCMP_ACT_ALLOW", "args": [
                         {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                         {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}],
    }))
    assert profile.arches in (("x86",), ("arm",))
    assert len(seccomp.compile_bpf(profile, set())) > 0
    with pytest.raises(InvalidArgument):
        seccomp.parse_profile("{not json")
    with pytest.raises(InvalidArgument):
        seccomp.compile_profile(json.dumps({"defaultAction": "SCMP_ACT_NOTIFY"}), ())


UNIFIED = Path("/sys/fs/cgroup/unified")


@pytest.mark.root
@pytest.mark.skipif(not (UNIFIED / "cgroup.procs").exists(), reason="no cgroup2 mount")
def test_cgroup_v2_freeze_kill_remove() -> None:
    """The v2 manager on the (controller-less) hybrid cgroup2 mount: procs, freeze, kill."""
    parent = f"cove-test-v2-{os.getpid()}"
    cg = CgroupV2(UNIFIED, f"{parent}/c1")
    cg.create()
    proc = subprocess.Popen(["sleep", "100"])
    try:
        cg.join(proc.pid)
        assert cg.pids() == [proc.pid]
        if (cg.dir / "cgroup.freeze").exists():
            cg.freeze()
            assert cg.frozen()
            cg.thaw()
            assert not cg.frozen()
        cg.remove()
        assert proc.wait(timeout=5) == -9
        assert not cg.exists()
    finally:
        proc.kill()
        proc.wait()
        cg.remove()
        (UNIFIED / parent).rmdir()


@pytest.mark.parametrize("path", ["cove/abc", "/one", ""])
def test_cgroup_layout_rebuilds_the_same_manager(path: str) -> None:
    """The monitor's helpers rebuild the engine's manager from its layout, no probe."""
    probed = open_cgroup(path)
    rebuilt = open_cgroup_in(json.loads(json.dumps(cgroup_layout(probed))), path)
    assert type(rebuilt) is type(probed) and rebuilt.path == probed.path
    if isinstance(probed, CgroupV1):
        assert isinstance(rebuilt, CgroupV1) and rebuilt.dirs == probed.dirs
    v2 = CgroupV2(UNIFIED, path)
    v2_rebuilt = open_cgroup_in(cgroup_layout(v2), path)
    assert isinstance(v2_rebuilt, CgroupV2) and v2_rebuilt.dir == v2.dir
