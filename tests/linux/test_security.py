"""What the process sees inside: namespaces, /dev, masks, caps, seccomp, users, mounts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.api.errors import InvalidArgument
from runtime.linux.caps import all_capabilities, cap_mask
from runtime.linux.runtime import LinuxRuntime
from runtime.linux.syscalls import SYSCALLS
from runtime.spec import Mount, Rlimit
from tests.linux.conftest import SpecFactory, log_text, run

pytestmark = pytest.mark.root


def output(runtime: LinuxRuntime, make_spec: SpecFactory, script: str, **kw: object) -> str:
    spec = make_spec(["sh", "-c", script], **kw)
    run(runtime, spec)
    return log_text(spec)


def test_pid1_hostname_and_dev(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    out = output(runtime, make_spec, "echo $$; hostname; ls -A /dev; ls -A /dev/pts",
                 hostname="box1")
    lines = out.split()
    assert lines[:2] == ["1", "box1"]
    assert lines[2:] == ["core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
                         "stderr", "stdin", "stdout", "tty", "urandom", "zero", "ptmx"]


def test_masked_and_readonly_paths(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    script = ("wc -c < /proc/timer_list; ls /sys/firmware | wc -l; "
              "echo 1 > /proc/sys/vm/drop_caches; "
              "grep -c ' /proc/sys ro' /proc/self/mountinfo")
    spec = make_spec(["sh", "-c", script])
    run(runtime, spec)
    # stdout and stderr are separate pipes: their relative order is not kept.
    assert log_text(spec, "stdout").split() == ["0", "0", "1"]
    assert "Read-only file system" in log_text(spec, "stderr")


def test_default_capabilities(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    out = output(runtime, make_spec, "grep -E '^Cap(Eff|Bnd|Inh)|^Seccomp:|^NoNewPrivs' "
                 "/proc/self/status")
    assert "CapEff:\t00000000a80425fb" in out
    assert "CapBnd:\t00000000a80425fb" in out
    assert "CapInh:\t0000000000000000" in out
    assert "Seccomp:\t2" in out
    assert "NoNewPrivs:\t0" in out


def test_non_root_user_has_no_effective_caps(runtime: LinuxRuntime,
                                             make_spec: SpecFactory) -> None:
    out = output(runtime, make_spec, "id; grep -E '^Cap(Eff|Bnd)|^NoNew' /proc/self/status",
                 process={"user": "www-data", "no_new_privileges": True})
    assert out.startswith("uid=33(www-data) gid=33(www-data)")
    assert "CapEff:\t0000000000000000" in out
    assert "CapBnd:\t00000000a80425fb" in out
    assert "NoNewPrivs:\t1" in out


@pytest.mark.parametrize(("user", "expected"), [
    ("", "uid=0(root) gid=0(root) groups=0(root),10(wheel)"),
    ("nobody:users", "uid=65534(nobody) gid=100(users)"),
    ("1234", "uid=1234 gid=0(root)"),
    ("operator:5", "uid=37(operator) gid=5(tty)"),
])
def test_user_resolution(runtime: LinuxRuntime, make_spec: SpecFactory, user: str,
                         expected: str) -> None:
    out = output(runtime, make_spec, "id", process={"user": user})
    assert out.strip().startswith(expected), out


def test_unknown_user_fails_start(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["id"], process={"user": "nosuchuser"})
    with pytest.raises(InvalidArgument, match="unable to find user nosuchuser"):
        runtime.start(spec)
    assert runtime.list_ids() == []


def test_seccomp_default_denies_unshare(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    spec = make_spec(["unshare", "-U", "true"])
    assert run(runtime, spec) != 0
    assert "Operation not permitted" in log_text(spec)
    assert run(runtime, make_spec(["unshare", "-U", "true"],
                                  process={"seccomp_profile": "unconfined"})) == 0


def test_custom_seccomp_profile(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    out = output(runtime, make_spec, "mkdir /x; echo rc=$?",
                 process={"seccomp_profile": json.dumps(profile)})
    assert "Permission denied" in out and "rc=1" in out


def test_privileged(runtime: LinuxRuntime, make_spec: SpecFactory) -> None:
    out = output(runtime, make_spec, "grep -E '^CapEff|^Seccomp:' /proc/self/status; "
                 "ls /dev | wc -l",
                 privileged=True)
    # "All" is what the engine has itself (sandboxes may lack a few).
    full = cap_mask(all_capabilities()) & SYSCALLS.capget()[1]
    assert f"CapEff:\t{full:016x}" in out
    assert "Seccomp:\t0" in out
    assert int(out.split()[-1]) > 16


def test_readonly_rootfs_mounts_sysctl_rlimit(runtime: LinuxRuntime, make_spec: SpecFactory,
                                              tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("from-host\n")
    host_file = tmp_path / "hosts"
    host_file.write_text("1.2.3.4 x\n")
    mounts = (
        Mount(destination="/data", type="bind", source=str(vol), options=("rbind", "ro")),
        Mount(destination="/rw", type="bind", source=str(vol), options=("rbind",)),
        Mount(destination="/etc/hosts", type="bind", source=str(host_file), options=("rbind",)),
        Mount(destination="/scratch", type="tmpfs", source="tmpfs",
              options=("nosuid", "size=1m", "mode=1777")),
    )
    script = ("touch /x; cat /data/f; touch /data/y; echo new > /rw/z; cat /etc/hosts; "
              "touch /scratch/ok && echo tmpfs-ok; cat /proc/sys/net/ipv4/ip_forward; ulimit -n")
    spec = make_spec(["sh", "-c", script], readonly_rootfs=True, mounts=mounts,
                     sysctls=(("net.ipv4.ip_forward", "1"),),
                     process={"rlimits": (Rlimit(type="RLIMIT_NOFILE", soft=321, hard=654),)})
    run(runtime, spec)
    # stdout and stderr are separate pipes: their relative order is not kept.
    assert log_text(spec, "stderr").count("Read-only file system") == 2
    out = log_text(spec, "stdout")
    assert out == "from-host\n1.2.3.4 x\ntmpfs-ok\n1\n321\n"
    assert (vol / "z").read_text() == "new\n"
