"""The engine core against a real engine with real containers, through docker-py."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import EngineProcess, leaked_cgroups

pytestmark = pytest.mark.root
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}Z$")


def run(docker: Any, *cmd: str, **kw: Any) -> Any:
    kw.setdefault("network_mode", "none")
    return docker.containers.run("busybox", list(cmd), detach=True, **kw)


def test_run_prints_and_exits_with_code(docker: Any) -> None:
    c = run(docker, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert c.wait(timeout=30)["StatusCode"] == 3
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"
    c.reload()
    state = c.attrs["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3
    assert RFC3339_NANO.match(state["StartedAt"]) and RFC3339_NANO.match(state["FinishedAt"])
    c.remove()


def test_killed_by_signal_exits_128_plus_n(docker: Any) -> None:
    c = run(docker, "sleep", "60")
    c.kill(signal="SIGKILL")
    assert c.wait(timeout=30)["StatusCode"] == 137
    c.remove()


def test_container_is_isolated(docker: Any) -> None:
    c = run(docker, "sh", "-c", "echo $$; hostname; ls /dev | sort | tr '\\n' ' '; echo;"
            " grep CapEff /proc/self/status", hostname="box1")
    c.wait(timeout=30)
    out = c.logs().decode().splitlines()
    assert out[0] == "1"
    assert out[1] == "box1"
    devices = set(out[2].split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm",
            "mqueue"} <= devices
    assert "sda" not in devices and "kmsg" not in devices
    assert out[3].split()[1] == "00000000a80425fb"
    c.remove()


def test_changes_never_reach_the_image(docker: Any) -> None:
    c = run(docker, "sh", "-c", "echo hi > /bin/newfile; rm /bin/ls")
    c.wait(timeout=30)
    c.remove()
    d = run(docker, "sh", "-c", "test -e /bin/newfile && echo bad; test -e /bin/ls && echo ok")
    d.wait(timeout=30)
    assert d.logs() == b"ok\n"
    d.remove()


def test_unknown_image_is_404(docker: Any) -> None:
    import docker as docker_py

    with pytest.raises(docker_py.errors.ImageNotFound):
        docker.containers.create("no-such-image:1")


def test_command_not_found_leaves_nothing(docker: Any, engine: EngineProcess) -> None:
    import docker as docker_py

    c = docker.containers.create("busybox", ["/no/such/cmd"], network_mode="none")
    with pytest.raises(docker_py.errors.APIError) as err:
        c.start()
    assert "executable file not found" in str(err.value) or "no such file" in str(
        err.value).lower()
    c.reload()
    assert c.attrs["State"]["ExitCode"] == 127
    assert c.attrs["State"]["Status"] == "created"
    assert not leaked_cgroups(engine.cgroup_parent)
    c.remove()


def test_name_in_use_is_409(docker: Any) -> None:
    import docker as docker_py

    c = docker.containers.create("busybox", ["true"], name="dup-name")
    with pytest.raises(docker_py.errors.APIError) as err:
        docker.containers.create("busybox", ["true"], name="dup-name")
    assert err.value.status_code == 409
    assert "already in use" in str(err.value)
    c.remove()


def test_bad_requests_are_400_and_create_nothing(engine: EngineProcess) -> None:
    before = engine.request("GET", "/containers/json?all=1")[1]
    status, body = engine.request("POST", "/containers/create", raw=b"{not json")
    assert status == 400 and "invalid JSON" in body["message"]
    status, body = engine.request(
        "POST", "/containers/create",
        {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": "lots"}})
    assert status == 400
    status, body = engine.request(
        "POST", "/containers/create",
        {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"RestartPolicy": {"Name": "x"}}})
    assert status == 400
    assert engine.request("GET", "/containers/json?all=1")[1] == before
    assert engine.request("GET", "/v1.99/version")[0] == 400


def test_stop_pause_restart_rename(docker: Any) -> None:
    c = run(docker, "sleep", "300", name="lifecycle")
    c.pause()
    c.reload()
    assert c.status == "paused"
    c.unpause()
    c.rename("lifecycle2")
    c.reload()
    assert c.name == "lifecycle2" and c.status == "running"
    started = time.monotonic()
    c.stop(timeout=1)  # sleep ignores SIGTERM as PID 1: SIGKILL after 1 s
    assert time.monotonic() - started < 10
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137
    c.restart(timeout=1)
    c.reload()
    assert c.status == "running"
    c.remove(force=True)


def test_restart_policy_on_failure(docker: Any) -> None:
    c = run(docker, "sh", "-c", "exit 1", restart_policy={"Name": "on-failure",
                                                           "MaximumRetryCount": 2})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        c.reload()
        if c.attrs["RestartCount"] == 2 and c.status == "exited":
            break
        time.sleep(0.1)
    assert c.attrs["RestartCount"] == 2 and c.status == "exited"
    c.remove()


def test_auto_remove(docker: Any) -> None:
    import docker as docker_py

    c = run(docker, "true", auto_remove=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            c.reload()
        except docker_py.errors.NotFound:
            return
        time.sleep(0.05)
    pytest.fail("container with AutoRemove was not removed")


def test_exec_env_user_workdir_and_exit_code(docker: Any) -> None:
    c = run(docker, "sleep", "300")
    res = c.exec_run(["sh", "-c", "echo $FOO; id -u; pwd; exit 4"], environment={"FOO": "bar"},
                     user="nobody", workdir="/tmp")
    assert res.exit_code == 4
    assert res.output.decode().split() == ["bar", "65534", "/tmp"]
    c.remove(force=True)


def test_attach_stdin_round_trip(docker: Any) -> None:
    c = docker.containers.create("busybox", ["cat"], stdin_open=True, network_mode="none")
    c.start()
    sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    raw = sock._sock
    raw.sendall(b"hello through attach\n")
    data = b""
    deadline = time.monotonic() + 10
    raw.settimeout(10)
    while b"hello through attach" not in data and time.monotonic() < deadline:
        data += raw.recv(4096)
    assert b"hello through attach" in data
    assert data[0] == 1  # multiplexed stdout frame
    raw.close()
    c.remove(force=True)


def test_logs_tail_timestamps_follow(docker: Any) -> None:
    c = run(docker, "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done")
    c.wait(timeout=30)
    assert c.logs(tail=2) == b"line4\nline5\n"
    stamped = c.logs(timestamps=True).decode().splitlines()
    assert len(stamped) == 5 and RFC3339_NANO.match(stamped[0].split()[0])
    f = run(docker, "sh", "-c", "echo a; sleep 1; echo b")
    assert b"".join(f.logs(stream=True, follow=True)) == b"a\nb\n"
    c.remove()
    f.remove()


def test_top_and_stats(docker: Any) -> None:
    c = run(docker, "sh", "-c", "while :; do :; done")
    top = c.top()
    assert "PID" in top["Titles"] and len(top["Processes"]) == 1
    stats = c.stats(stream=False)
    assert stats["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert stats["precpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert stats["memory_stats"]["usage"] > 0
    assert stats["pids_stats"]["current"] == 1
    c.remove(force=True)


def test_memory_limit_oom_kill(docker: Any) -> None:
    c = run(docker, "sh", "-c", "x=a; while :; do x=$x$x; done", mem_limit="16m",
            memswap_limit="16m")
    assert c.wait(timeout=60)["StatusCode"] == 137
    c.reload()
    assert c.attrs["State"]["OOMKilled"] is True
    c.remove()


def test_list_filters(docker: Any) -> None:
    a = run(docker, "sleep", "300", labels={"suite": "filters", "n": "1"})
    b = docker.containers.create("busybox", ["true"], labels={"suite": "filters"})
    names = {c.id for c in docker.containers.list(all=True, filters={"label": "suite=filters"})}
    assert names == {a.id, b.id}
    running = docker.containers.list(filters={"label": ["suite=filters", "n=1"]})
    assert [c.id for c in running] == [a.id]
    created = docker.containers.list(all=True, filters={"status": "created",
                                                       "label": "suite=filters"})
    assert [c.id for c in created] == [b.id]
    a.remove(force=True)
    b.remove()


def test_containers_survive_engine_sigkill(tmp_path: Path, busybox_tar: Path) -> None:
    import docker as docker_py

    eng = EngineProcess(tmp_path / "e")
    try:
        eng.start()
        eng.import_image(busybox_tar, "busybox")
        client = docker_py.DockerClient(base_url=eng.url, timeout=60)
        keep = run(client, "sleep", "300")
        ends = run(client, "sh", "-c", "sleep 1; exit 7")
        client.close()
        eng.stop(signal.SIGKILL)
        time.sleep(2)  # 'ends' exits while no engine runs
        eng.start()
        client = docker_py.DockerClient(base_url=eng.url, timeout=60)
        keep = client.containers.get(keep.id)
        assert keep.status == "running"
        assert keep.exec_run(["echo", "adopted"]).output == b"adopted\n"
        ended = client.containers.get(ends.id)
        assert ended.status == "exited" and ended.attrs["State"]["ExitCode"] == 7
        keep.stop(timeout=1)
        assert client.containers.get(keep.id).attrs["State"]["ExitCode"] == 137
        keep.remove()
        ended.remove()
        client.close()
        assert not leaked_cgroups(eng.cgroup_parent)
    finally:
        eng.cleanup()


def test_events_carry_docker_attributes(docker: Any) -> None:
    since = int(time.time()) - 1
    c = run(docker, "sh", "-c", "exit 2", labels={"app": "events"})
    c.wait(timeout=30)
    c.remove()
    events = docker.events(since=since, until=int(time.time()) + 1, decode=True,
                           filters={"container": c.id})
    actions = [(e["Action"], e["Actor"]["Attributes"]) for e in events]
    names = [a for a, _ in actions]
    assert names[:1] == ["create"] and "start" in names and names[-1] == "destroy"
    die = next(attrs for a, attrs in actions if a == "die")
    assert die["exitCode"] == "2" and die["app"] == "events"
    assert die["name"] == c.name and die["image"] == "busybox"


def test_wait_next_exit_registered_before_start(engine: EngineProcess) -> None:
    import threading

    status, body = engine.request("POST", "/containers/create",
                                  {"Image": "busybox", "Cmd": ["sh", "-c", "exit 9"],
                                   "HostConfig": {"NetworkMode": "none"}})
    assert status == 201
    cid = body["Id"]
    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(
        engine.request("POST", f"/containers/{cid}/wait?condition=next-exit")))
    waiter.start()
    time.sleep(0.2)
    assert engine.request("POST", f"/containers/{cid}/start")[0] == 204
    waiter.join(30)
    assert result and result[0][1]["StatusCode"] == 9
    assert engine.request("DELETE", f"/containers/{cid}")[0] == 204


def test_resource_limits_reach_the_cgroup(docker: Any) -> None:
    c = run(docker, "sh", "-c",
            "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares "
            "/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
            "/sys/fs/cgroup/cpuset/cpuset.cpus; ulimit -n",
            nano_cpus=500_000_000, cpu_shares=512, mem_limit="64m", pids_limit=20,
            cpuset_cpus="0", ulimits=[{"Name": "nofile", "Soft": 1000, "Hard": 2000}])
    c.wait(timeout=30)
    assert c.logs().decode().split() == ["50000", "512", str(64 << 20), "20", "0", "1000"]
    c.remove()


def test_security_options(docker: Any) -> None:
    c = run(docker, "sh", "-c", "grep CapEff /proc/self/status; touch /x || echo ro",
            cap_drop=["ALL"], cap_add=["NET_RAW"], read_only=True)
    c.wait(timeout=30)
    assert c.logs(stderr=False).decode().split() == ["CapEff:", "0000000000002000", "ro"]
    c.remove()
    denied = run(docker, "unshare", "-U", "true")
    assert denied.wait(timeout=30)["StatusCode"] != 0
    denied.remove()
    allowed = run(docker, "sh", "-c", "grep CapEff /proc/self/status", privileged=True,
                  security_opt=["seccomp=unconfined"])
    allowed.wait(timeout=30)
    assert allowed.logs().split()[1] != b"00000000a80425fb"
    allowed.remove()


def test_init_reaps_and_forwards_signals(docker: Any) -> None:
    c = run(docker, "sh", "-c", "trap 'exit 42' TERM; (sleep 0.1 &); ps -o pid,comm; "
            "while :; do sleep 0.1; done", init=True)
    time.sleep(1)
    c.stop(timeout=10)
    assert c.wait(timeout=30)["StatusCode"] == 42
    out = c.logs().decode()
    assert "cove-init" in out.splitlines()[1]
    c.remove()


@pytest.mark.parametrize("body", [
    {"Image": "busybox", "Cmd": 5},
    {"Image": "busybox", "Cmd": ["echo", 1]},
    {"Image": "busybox", "Env": "A=1"},
    {"Image": "busybox", "Tty": "yes"},
    {"Image": "busybox", "HostConfig": {"Privileged": 1}},
    {"Image": "busybox", "HostConfig": {"CapAdd": ["NOT_A_CAP"]}},
    {"Image": "busybox", "HostConfig": {"Binds": "/a:/b"}},
    {"Image": 7},
    [],
])
def test_wrong_types_are_400(engine: EngineProcess, body: Any) -> None:
    before = engine.request("GET", "/containers/json?all=1")[1]
    status, reply = engine.request("POST", "/containers/create", body)
    assert status == 400, reply
    assert reply["message"]
    assert engine.request("GET", "/containers/json?all=1")[1] == before


def test_rm_leaves_no_mount_cgroup_netns_or_process(docker: Any, engine: EngineProcess) -> None:
    import subprocess

    from tests.harness import leaked_mounts

    c = docker.containers.run("busybox", ["sleep", "300"], detach=True, ports={"80/tcp": None})
    c.reload()
    pid = c.attrs["State"]["Pid"]
    assert pid > 0 and Path(f"/proc/{pid}").exists()
    links_before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert any(c.id in line for line in leaked_mounts(engine.base))  # its netns file
    c.remove(force=True)
    assert not Path(f"/proc/{pid}").exists()
    assert not [line for line in leaked_mounts(engine.base) if c.id in line]
    assert not [p for p in leaked_cgroups(engine.cgroup_parent) if c.id in p]
    assert not list(Path(engine.exec_root).rglob(f"*{c.id}*"))
    links_after = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert links_after.count("veth") < links_before.count("veth") or "veth" not in links_after


def test_engine_stop_removes_its_unused_parent_cgroup(tmp_path: Path, busybox_tar: Path) -> None:
    eng = EngineProcess(tmp_path / "e")
    try:
        eng.start()
        eng.import_image(busybox_tar, "busybox")
        status, body = eng.request("POST", "/containers/create",
                                   {"Image": "busybox", "Cmd": ["true"],
                                    "HostConfig": {"NetworkMode": "none"}})
        assert status == 201
        assert eng.request("POST", f"/containers/{body['Id']}/start")[0] == 204
        eng.request("POST", f"/containers/{body['Id']}/wait")
        assert eng.request("DELETE", f"/containers/{body['Id']}")[0] == 204
        eng.stop()
        parents = [h / eng.cgroup_parent for h in Path("/sys/fs/cgroup").iterdir()]
        assert not [p for p in parents if p.exists()]
    finally:
        eng.cleanup()
