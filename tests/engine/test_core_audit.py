"""The engine-core checklist, item by item, with real containers (docker-py and raw API).

What tests/engine/test_lifecycle.py already covers is not repeated here. Probes that
busybox cannot do (raw syscalls, setuid) are a tiny static C program compiled once per
session and bind-mounted into the container read-only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import EngineProcess, leaked_cgroups, leaked_mounts

pytestmark = pytest.mark.root
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(const char *what, long rc) {
    printf("%s=%s\n", what, rc < 0 ? strerrorname_np(errno) : "ok");
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "unshare")) report(a, unshare(CLONE_NEWUSER));
        else if (!strcmp(a, "mount")) report(a, mount("none", "/tmp", "tmpfs", 0, NULL));
        else if (!strcmp(a, "keyctl"))
            report(a, syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1));
        /* Invalid flags: with CAP_SYS_BOOT and no filter the kernel says EINVAL and
           changes nothing; a seccomp filter answers EPERM before the kernel looks. */
        else if (!strcmp(a, "kexec_load")) report(a, syscall(SYS_kexec_load, 0, 0, NULL, 0xff00));
        else if (!strcmp(a, "euid")) printf("euid=%d\n", (int)geteuid());
        else if (!strcmp(a, "nnp")) {
            FILE *f = fopen("/proc/self/status", "r");
            char line[256];
            while (f && fgets(line, sizeof line, f))
                if (!strncmp(line, "NoNewPrivs:", 11)) printf("nnp=%d\n", atoi(line + 11));
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/probe in containers: ``probe`` and a setuid-root copy ``probe-suid``."""
    d = tmp_path_factory.mktemp("probe")
    d.chmod(0o755)
    (d / "probe.c").write_text(PROBE_C.replace("<unistd.h>", "<unistd.h>\n#include <stdlib.h>"))
    subprocess.run(["gcc", "-static", "-O1", "-o", str(d / "probe"), str(d / "probe.c")],
                   check=True, capture_output=True)
    shutil.copy(d / "probe", d / "probe-suid")
    os.chown(d / "probe-suid", 0, 0)
    (d / "probe-suid").chmod(0o4755)
    return d


def output(docker: Any, *cmd: str, **kw: Any) -> str:
    """Run to completion, remove, and return stdout+stderr."""
    kw.setdefault("network_mode", "none")
    c = docker.containers.run("busybox", list(cmd), detach=True, **kw)
    try:
        c.wait(timeout=60)
        return str(c.logs().decode())
    finally:
        c.remove(force=True)


def probe(docker: Any, probe_dir: Path, *args: str, **kw: Any) -> dict[str, str]:
    kw["volumes"] = {str(probe_dir): {"bind": "/probe", "mode": "ro"}}
    binary = kw.pop("binary", "/probe/probe")
    out = output(docker, binary, *args, **kw)
    return dict(line.split("=", 1) for line in out.split())


# ---- runtime: namespaces, root filesystem, /dev, masked paths ----

def test_namespaces_are_new(docker: Any) -> None:
    c = docker.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none")
    try:
        c.reload()
        pid = c.attrs["State"]["Pid"]
        for ns in ("pid", "mnt", "uts", "ipc", "net", "cgroup"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        # user namespaces are an option (not the default), as in Docker
        assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")
    finally:
        c.remove(force=True)


def test_pivot_root_proc_sys_and_dev(docker: Any, engine: EngineProcess) -> None:
    out = output(docker, "sh", "-c",
                 "cat /proc/self/mountinfo; echo ===; ls -A /dev | tr '\\n' ' '; echo;"
                 " touch /sys/x 2>/dev/null || echo sys-ro")
    mountinfo, _, rest = out.partition("===\n")
    lines = [m.split() for m in mountinfo.splitlines()]
    # pivot_root (not chroot): the root is the container's own overlay and no host path
    # (the old root, the data root) is mounted or visible anywhere.
    root = next(m for m in lines if m[4] == "/")
    assert root[m_fstype(root)] == "overlay"
    assert not [m for m in lines if str(engine.base) in m[4] or m[4].startswith("/.")]
    points = {m[4]: m for m in lines}
    assert points["/proc"][m_fstype(points["/proc"])] == "proc"
    assert "ro" in points["/sys"][5].split(",")
    assert points["/dev"][m_fstype(points["/dev"])] == "tmpfs"
    devs, sysro = rest.splitlines()[:2]
    assert set(devs.split()) == {"null", "zero", "full", "random", "urandom", "tty", "pts",
                                 "ptmx", "shm", "mqueue", "fd", "stdin", "stdout", "stderr",
                                 "core"}
    assert sysro == "sys-ro"


def m_fstype(fields: list[str]) -> int:
    """Index of the filesystem type in a mountinfo line (after the ``-`` separator)."""
    return fields.index("-") + 1


def test_tty_container_has_dev_console(docker: Any) -> None:
    out = output(docker, "sh", "-c", "ls /dev/console && tty", tty=True)
    assert "/dev/console" in out and "/dev/pts/0" in out


def test_masked_and_readonly_paths(docker: Any) -> None:
    # Masked files are /dev/null binds (empty), masked directories empty read-only tmpfs.
    # This kernel may lack /proc/kcore (CONFIG_PROC_KCORE); runc skips such paths too.
    files = [p for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list") if Path(p).exists()]
    out = output(docker, "sh", "-c",
                 f"for f in {' '.join(files)}; do wc -c < $f; done; ls -A /sys/firmware | wc -l;"
                 " (echo x > /sys/firmware/x) 2>/dev/null || echo firmware-ro;"
                 " (echo x > /proc/sys/kernel/domainname) 2>/dev/null || echo sys-ro;"
                 " grep ' /proc/sys ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1")
    assert files and out.split() == ["0"] * len(files) + ["0", "firmware-ro", "sys-ro", "ro"]
    assert output(docker, "sh", "-c", "cat /proc/keys | wc -c", privileged=True).strip() != "0"


# ---- privileges ----

def test_seccomp_default_denies_and_unconfined_allows(docker: Any, probe_dir: Path) -> None:
    calls = ("mount", "keyctl", "kexec_load", "unshare")  # unshare last: it drops our caps
    # CAP_SYS_BOOT so that kexec_load's EPERM can only come from the filter
    denied = probe(docker, probe_dir, *calls, cap_add=["SYS_BOOT"])
    assert denied == dict.fromkeys(calls, "EPERM")
    allowed = probe(docker, probe_dir, *calls, cap_add=["SYS_BOOT", "SYS_ADMIN"],
                    security_opt=["seccomp=unconfined"])
    assert allowed["unshare"] == "ok" and allowed["mount"] == "ok"
    assert allowed["keyctl"] != "EPERM"
    kexec = Path("/proc/sys/kernel/kexec_load_disabled")
    if not kexec.exists():  # a kernel built without kexec
        assert allowed["kexec_load"] == "ENOSYS"
    elif kexec.read_text().strip() == "0":
        assert allowed["kexec_load"] == "EINVAL"


def test_seccomp_profile_json(docker: Any) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    out = output(docker, "sh", "-c", "mkdir /newdir 2>&1; echo rc=$?",
                 security_opt=["seccomp=" + json.dumps(profile)])
    assert "rc=1" in out and "Operation not permitted" in out


def test_no_new_privileges(docker: Any, probe_dir: Path) -> None:
    suid = {"binary": "/probe/probe-suid", "user": "nobody"}
    assert probe(docker, probe_dir, "euid", "nnp", **suid) == {"euid": "0", "nnp": "0"}
    assert probe(docker, probe_dir, "euid", "nnp", security_opt=["no-new-privileges"],
                 **suid) == {"euid": "65534", "nnp": "1"}


def test_privileged_sees_host_devices_and_rw_sys(docker: Any) -> None:
    out = output(docker, "sh", "-c", "ls /dev | wc -l; grep ' /sys ' /proc/self/mounts",
                 privileged=True)
    count, mount = out.splitlines()[:2]
    assert int(count) > 20
    assert mount.split()[3].startswith("rw")


@pytest.mark.parametrize("user, expect", [
    ("www-data", "uid=33(www-data) gid=33(www-data) groups=33(www-data)"),
    ("operator:users", "uid=37(operator) gid=100(users) groups=100(users)"),
    ("1234:5678", "uid=1234 gid=5678 groups=5678"),
    ("root", "uid=0(root) gid=0(root) groups=0(root),10(wheel)"),
])
def test_user_resolution(docker: Any, user: str, expect: str) -> None:
    assert output(docker, "id", user=user).strip() == expect


def test_supplementary_groups_by_name_and_number(docker: Any) -> None:
    out = output(docker, "id", "-G", user="nobody", group_add=["mail", "4242"])
    assert out.split() == ["65534", "12", "4242"]


def test_unknown_user_fails_start(docker: Any) -> None:
    import docker as docker_py

    c = docker.containers.create("busybox", ["true"], user="nosuchuser", network_mode="none")
    try:
        with pytest.raises(docker_py.errors.APIError) as err:
            c.start()
        assert "nosuchuser" in str(err.value)
    finally:
        c.remove(force=True)


# ---- cgroups ----

def _cgroup_file(engine: EngineProcess, controller: str, cid: str, name: str) -> str:
    return (Path("/sys/fs/cgroup") / controller / engine.cgroup_parent / cid / name).read_text()


def test_pids_limit_stops_a_fork_bomb(docker: Any, engine: EngineProcess) -> None:
    # The bomb runs in a child shell (busybox sh exits when fork fails); PID 1 survives it.
    bomb = "while :; do sleep 60 & done"
    c = docker.containers.run(
        "busybox", ["sh", "-c", f"sh -c '{bomb}'; echo bomb-stopped; exec sleep 60"],
        detach=True, network_mode="none", pids_limit=10)
    try:
        deadline = time.monotonic() + 20
        while b"bomb-stopped" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"can't fork" in c.logs() and b"bomb-stopped" in c.logs()
        assert int(_cgroup_file(engine, "pids", c.id, "pids.current")) <= 10
        assert int(_cgroup_file(engine, "pids", c.id, "pids.events").split()[1]) > 0
        c.reload()
        assert c.status == "running"
    finally:
        c.remove(force=True)


def test_memory_swap_reaches_the_cgroup(docker: Any, engine: EngineProcess) -> None:
    c = docker.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none",
                              mem_limit="32m", memswap_limit="96m")
    try:
        assert int(_cgroup_file(engine, "memory", c.id, "memory.limit_in_bytes")) == 32 << 20
        memsw = Path(f"/sys/fs/cgroup/memory/{engine.cgroup_parent}/{c.id}/"
                     "memory.memsw.limit_in_bytes")
        if memsw.exists():  # swap accounting may be off in the kernel
            assert int(memsw.read_text()) == 96 << 20
    finally:
        c.remove(force=True)


def test_update_changes_limits_of_a_running_container(docker: Any,
                                                      engine: EngineProcess) -> None:
    c = docker.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none",
                              mem_limit="32m", memswap_limit="64m")
    try:
        status, body = engine.request("POST", f"/containers/{c.id}/update", {
            "Memory": 48 << 20, "MemorySwap": 96 << 20, "NanoCpus": 250_000_000,
            "CpuShares": 300, "PidsLimit": 33, "CpusetCpus": "0"})
        assert status == 200, body
        assert int(_cgroup_file(engine, "memory", c.id, "memory.limit_in_bytes")) == 48 << 20
        assert _cgroup_file(engine, "cpu", c.id, "cpu.cfs_quota_us").strip() == "25000"
        assert _cgroup_file(engine, "cpu", c.id, "cpu.shares").strip() == "300"
        assert _cgroup_file(engine, "pids", c.id, "pids.max").strip() == "33"
        assert _cgroup_file(engine, "cpuset", c.id, "cpuset.cpus").strip() == "0"
        c.reload()
        hc = c.attrs["HostConfig"]
        assert hc["Memory"] == 48 << 20 and hc["NanoCpus"] == 250_000_000
        assert hc["PidsLimit"] == 33
    finally:
        c.remove(force=True)


def test_stats_block_io_and_freezer(docker: Any, engine: EngineProcess) -> None:
    c = docker.containers.run(
        "busybox", ["sh", "-c", "dd if=/dev/zero of=/data/f bs=64k count=64 oflag=direct"
                    " 2>/dev/null || dd if=/dev/zero of=/data/f bs=64k count=64 conv=fsync;"
                    " echo written; sleep 60"],
        detach=True, network_mode="none", mounts=[_volume("/data")])
    try:
        deadline = time.monotonic() + 20
        while b"written" not in c.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = c.stats(stream=False)
        rows = stats["blkio_stats"]["io_service_bytes_recursive"]
        written = sum(r["value"] for r in rows if r["op"].lower() == "write")
        assert written >= 64 * 65536
        assert stats["pids_stats"]["current"] >= 1
        c.pause()
        assert _cgroup_file(engine, "freezer", c.id, "freezer.state").strip() == "FROZEN"
        c.unpause()
        assert _cgroup_file(engine, "freezer", c.id, "freezer.state").strip() == "THAWED"
    finally:
        c.remove(force=True, v=True)


def _volume(target: str) -> Any:
    from docker.types import Mount

    return Mount(target, None, type="volume")


# ---- process: logs, exit codes ----

def test_json_file_on_disk_and_rotation(docker: Any, engine: EngineProcess) -> None:
    c = docker.containers.run(
        "busybox", ["sh", "-c", "i=0; while [ $i -lt 300 ]; do"
                    " echo line-$i-0123456789012345678901234567890123456789; i=$((i+1)); done"],
        detach=True, network_mode="none",
        log_config={"Type": "json-file", "Config": {"max-size": "4k", "max-file": "3"}})
    try:
        c.wait(timeout=30)
        d = engine.data_root / "containers" / c.id
        files = sorted(p.name for p in d.iterdir() if "-json.log" in p.name)
        assert files == [f"{c.id}-json.log", f"{c.id}-json.log.1", f"{c.id}-json.log.2"]
        for name in files:
            assert (d / name).stat().st_size <= 4096 + 200
            for line in (d / name).read_text().splitlines():
                entry = json.loads(line)
                assert set(entry) == {"log", "stream", "time"}
                assert RFC3339_NANO.match(entry["time"])
        # logs reads the rotated files oldest first, then the current one
        lines = c.logs().decode().splitlines()
        assert lines[-1].startswith("line-299-") and len(lines) > 60
        numbers = [int(x.split("-")[1]) for x in lines if x.startswith("line-")]
        assert numbers == list(range(numbers[0], 300))
    finally:
        c.remove(force=True)
    first = docker.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2"],
                                  detach=True, network_mode="none")
    try:
        first.wait(timeout=30)
        log = (engine.data_root / "containers" / first.id / f"{first.id}-json.log")
        entries = [json.loads(x) for x in log.read_text().splitlines()]
        assert sorted((e["stream"], e["log"]) for e in entries) == [
            ("stderr", "err\n"), ("stdout", "out\n")]
    finally:
        first.remove()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGUSR1", "SIGHUP"])
def test_exit_code_is_128_plus_signal(docker: Any, sig: str) -> None:
    # PID 1 has no default signal actions, so the command runs under --init.
    c = docker.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none",
                              init=True)
    try:
        c.kill(signal=sig)
        assert c.wait(timeout=30)["StatusCode"] == 128 + signal.Signals[sig]
    finally:
        c.remove(force=True)


# ---- lifecycle ----

def test_stop_uses_stop_signal_then_kill(docker: Any) -> None:
    trap = "trap 'echo got-usr1; exit 5' USR1; while :; do sleep 0.1; done"
    c = docker.containers.run("busybox", ["sh", "-c", trap], detach=True,
                              network_mode="none", stop_signal="SIGUSR1")
    try:
        time.sleep(0.3)
        c.stop(timeout=5)
        assert c.wait(timeout=10)["StatusCode"] == 5
        assert b"got-usr1" in c.logs()
    finally:
        c.remove(force=True)
    # A signal the process ignores: SIGKILL after the timeout, exit 137.
    c = docker.containers.run("busybox", ["sh", "-c", "trap '' TERM; while :; do sleep 0.1;"
                              " done"], detach=True, network_mode="none")
    try:
        time.sleep(0.3)
        started = time.monotonic()
        c.stop(timeout=2)
        took = time.monotonic() - started
        assert 1.5 < took < 8
        assert c.wait(timeout=10)["StatusCode"] == 137
    finally:
        c.remove(force=True)


def test_image_stop_signal_is_used(engine: EngineProcess, busybox_tar: Path,
                                   docker: Any) -> None:
    engine.import_image(busybox_tar, "busybox", "stopsig",
                        changes=('CMD ["sh"]', "STOPSIGNAL SIGUSR2"))
    c = docker.containers.run("busybox:stopsig", ["sh", "-c", "trap 'exit 6' USR2; while :;"
                              " do sleep 0.1; done"], detach=True, network_mode="none")
    try:
        time.sleep(0.3)
        c.stop(timeout=5)
        assert c.wait(timeout=10)["StatusCode"] == 6
    finally:
        c.remove(force=True)
        docker.images.remove("busybox:stopsig")


def test_kill_delivers_any_signal(docker: Any) -> None:
    c = docker.containers.run("busybox", ["sh", "-c", "trap 'echo usr1' USR1;"
                              " trap 'echo hup' HUP; while :; do sleep 0.1; done"],
                              detach=True, network_mode="none")
    try:
        time.sleep(0.3)
        c.kill(signal="SIGUSR1")
        c.kill(signal=1)
        deadline = time.monotonic() + 10
        while len(c.logs().split()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sorted(c.logs().split()) == [b"hup", b"usr1"]
        c.reload()
        assert c.status == "running"
    finally:
        c.remove(force=True)


def _wait_status(c: Any, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c.reload()
        if c.status == status:
            return
        time.sleep(0.1)
    assert c.status == status


def test_restart_policy_always_restarts_after_exit(docker: Any) -> None:
    c = docker.containers.run("busybox", ["sh", "-c", "sleep 0.2; exit 0"], detach=True,
                              network_mode="none", restart_policy={"Name": "always"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            c.reload()
            if c.attrs["RestartCount"] >= 2:
                break
            time.sleep(0.1)
        assert c.attrs["RestartCount"] >= 2
        c.stop(timeout=1)
        _wait_status(c, "exited")
        time.sleep(1)
        c.reload()
        assert c.status == "exited"  # a user's stop wins over "always"
    finally:
        c.remove(force=True)


def test_restart_policy_no_stays_exited(docker: Any) -> None:
    c = docker.containers.run("busybox", ["sh", "-c", "exit 1"], detach=True,
                              network_mode="none", restart_policy={"Name": "no"})
    try:
        c.wait(timeout=10)
        time.sleep(0.5)
        c.reload()
        assert c.status == "exited" and c.attrs["RestartCount"] == 0
    finally:
        c.remove(force=True)


def test_restart_policies_across_engine_restart(tmp_path: Path, busybox_tar: Path) -> None:
    """always/unless-stopped come back when the engine starts again; a user's stop holds."""
    import docker as docker_py

    eng = EngineProcess(tmp_path / "e")
    try:
        eng.start()
        eng.import_image(busybox_tar, "busybox")
        client = docker_py.DockerClient(base_url=eng.url, timeout=60)
        run = {"detach": True, "network_mode": "none"}
        always = client.containers.run("busybox", ["sleep", "300"],
                                       restart_policy={"Name": "always"}, **run)
        unless = client.containers.run("busybox", ["sleep", "300"],
                                       restart_policy={"Name": "unless-stopped"}, **run)
        stopped = client.containers.run("busybox", ["sleep", "300"],
                                        restart_policy={"Name": "unless-stopped"}, **run)
        never = client.containers.run("busybox", ["sleep", "300"], **run)
        stopped.stop(timeout=0)
        pids = {c.id: client.containers.get(c.id).attrs["State"]["Pid"]
                for c in (always, unless, never)}
        client.close()
        eng.stop(signal.SIGKILL)
        # The host "rebooted": every container process is gone while no engine runs.
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        time.sleep(1)
        eng.start()
        client = docker_py.DockerClient(base_url=eng.url, timeout=60)
        for c, status in ((always, "running"), (unless, "running"), (stopped, "exited"),
                          (never, "exited")):
            _wait_status(client.containers.get(c.id), status)
        assert client.containers.get(never.id).attrs["State"]["ExitCode"] == 137
        assert client.containers.get(always.id).attrs["State"]["Pid"] != pids[always.id]
        client.close()
    finally:
        eng.cleanup()


def test_containers_survive_engine_sigterm(tmp_path: Path, busybox_tar: Path) -> None:
    import docker as docker_py

    eng = EngineProcess(tmp_path / "e")
    try:
        eng.start()
        eng.import_image(busybox_tar, "busybox")
        client = docker_py.DockerClient(base_url=eng.url, timeout=60)
        keep = client.containers.run("busybox", ["sleep", "300"], detach=True,
                                     network_mode="none")
        pid = client.containers.get(keep.id).attrs["State"]["Pid"]
        client.close()
        eng.stop(signal.SIGTERM)
        assert Path(f"/proc/{pid}").exists()
        eng.start()
        client = docker_py.DockerClient(base_url=eng.url, timeout=60)
        got = client.containers.get(keep.id)
        assert got.status == "running" and got.attrs["State"]["Pid"] == pid
        got.remove(force=True)
        assert not Path(f"/proc/{pid}").exists()
        client.close()
    finally:
        eng.cleanup()


def test_state_is_whole_after_engine_sigkill_mid_burst(tmp_path: Path,
                                                        busybox_tar: Path) -> None:
    import threading

    eng = EngineProcess(tmp_path / "e")
    try:
        eng.start()
        eng.import_image(busybox_tar, "busybox")

        def burst() -> None:
            for _ in range(40):
                try:
                    status, body = eng.request("POST", "/containers/create", {
                        "Image": "busybox", "Cmd": ["true"],
                        "HostConfig": {"NetworkMode": "none"}})
                    if status == 201:
                        eng.request("POST", f"/containers/{body['Id']}/start")
                except OSError:
                    return

        threads = [threading.Thread(target=burst) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        eng.stop(signal.SIGKILL)
        for t in threads:
            t.join(30)
        records = list((eng.data_root / "containers").glob("*/*.json"))
        assert records
        for path in records:
            json.loads(path.read_text())  # whole JSON, never a torn write
        eng.start()
        status, items = eng.request("GET", "/containers/json?all=1")
        assert status == 200 and items
    finally:
        eng.cleanup()


def test_exec_tty_and_detached(docker: Any) -> None:
    c = docker.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none")
    try:
        res = c.exec_run(["sh", "-c", "tty; echo $TERM"], tty=True)
        assert res.exit_code == 0
        out = res.output.decode().split()
        assert out[0].startswith("/dev/pts/") and out[1] == "xterm"
        c.exec_run(["sh", "-c", "echo bg > /tmp/bg"], detach=True)
        deadline = time.monotonic() + 10
        while c.exec_run(["cat", "/tmp/bg"]).output != b"bg\n" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.exec_run(["cat", "/tmp/bg"]).output == b"bg\n"
    finally:
        c.remove(force=True)


# ---- clean-up after a failed start ----

def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _assert_nothing_left(engine: EngineProcess, cid: str, links_before: set[str]) -> None:
    assert not [m for m in leaked_mounts(engine.base) if cid in m]
    assert not [p for p in leaked_cgroups(engine.cgroup_parent) if cid in p]
    assert not list(Path(engine.exec_root).rglob(f"*{cid}*"))
    assert not (_host_links() - links_before)


@pytest.fixture()
def busy_port() -> Iterator[int]:
    import socket

    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen()
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_failed_start_port_in_use_leaves_nothing(docker: Any, engine: EngineProcess,
                                                 busy_port: int) -> None:
    import docker as docker_py

    links = _host_links()
    c = docker.containers.create("busybox", ["sleep", "60"], ports={"80/tcp": busy_port})
    try:
        with pytest.raises(docker_py.errors.APIError) as err:
            c.start()
        assert "address already in use" in str(err.value).lower()
        _assert_nothing_left(engine, c.id, links)
        c.reload()
        assert c.status == "created"
    finally:
        c.remove(force=True)


def test_failed_start_bad_mount_leaves_nothing(docker: Any, engine: EngineProcess,
                                               tmp_path: Path) -> None:
    """The mount fails in the runtime, after network, cgroup and rootfs were set up."""
    import docker as docker_py

    links = _host_links()
    (tmp_path / "file").write_text("a file over a directory cannot be mounted")
    c = docker.containers.create("busybox", ["sleep", "60"], ports={"80/tcp": None},
                                 volumes=[f"{tmp_path / 'file'}:/bin"])
    try:
        with pytest.raises(docker_py.errors.APIError) as err:
            c.start()
        assert "not a directory" in str(err.value).lower()
        _assert_nothing_left(engine, c.id, links)
        c.reload()
        assert c.status == "created"
    finally:
        c.remove(force=True)


def test_daemon_environment(docker: Any) -> None:
    """moby's CreateDaemonEnvironment: PATH, HOSTNAME, and TERM=xterm with a TTY."""
    out = output(docker, "env", hostname="envbox", environment={"A": "1"})
    assert sorted(out.split()) == sorted([
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOSTNAME=envbox", "A=1", "HOME=/root"])
    assert "TERM=xterm" in output(docker, "env", tty=True).split()


# ---- API ----

def test_api_paths_versions_ping_and_errors(engine: EngineProcess) -> None:
    status, version = engine.request("GET", "/version")
    assert status == 200
    assert tuple(map(int, version["ApiVersion"].split("."))) >= (1, 44)
    assert engine.request("GET", "/v1.44/version")[0] == 200
    assert engine.request("GET", f"/v{version['ApiVersion']}/info")[0] == 200
    assert engine.request("GET", "/_ping") == (200, b"OK")
    assert engine.request("HEAD", "/_ping")[0] == 200
    assert engine.request("HEAD", "/v1.44/_ping")[0] == 200
    status, body = engine.request("GET", "/containers/nope/json")
    assert status == 404 and body == {"message": "No such container: nope"}
    status, body = engine.request("POST", "/containers/create?name=bad/name",
                                  {"Image": "busybox"})
    assert status == 400 and set(body) == {"message"}
    status, body = engine.request("GET", "/no/such/endpoint")
    assert status == 404 and "message" in body
    for raw in (b"{", b"[1,2", b"\xff\xfe", b'{"Image": "busybox", "Cmd": ["true"]'):
        before = engine.request("GET", "/containers/json?all=1")[1]
        status, body = engine.request("POST", "/containers/create", raw=raw)
        assert status == 400 and isinstance(body, dict) and "Traceback" not in body["message"]
        assert engine.request("GET", "/containers/json?all=1")[1] == before


def test_stat_mode_of_socket_and_state_files(engine: EngineProcess) -> None:
    assert stat.S_IMODE(os.stat(engine.socket).st_mode) == 0o660
