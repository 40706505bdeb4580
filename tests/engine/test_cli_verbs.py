"""Every verb and flag of the engine-core issue through the ``cove`` CLI (and docker CLI 28).

-t/-it paths run under a real pty (python's pty module). Errors must be one readable
line on stderr with docker's exit codes (125 engine, 126 cannot invoke, 127 not found).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, EngineProcess, in_pty

pytestmark = pytest.mark.root
COVE = str(ROOT / ".venv" / "bin" / "cove")
DOCKER = shutil.which("docker") or "/usr/bin/docker"


def cove(engine: EngineProcess, *args: str, stdin: bytes | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COVE, "-H", engine.url, *args], input=stdin.decode() if stdin
                          is not None else None, capture_output=True, text=True,
                          timeout=timeout, stdin=None if stdin is not None else subprocess.DEVNULL)


def ok(engine: EngineProcess, *args: str, stdin: bytes | None = None) -> str:
    res = cove(engine, *args, stdin=stdin)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    return res.stdout


def inspect(engine: EngineProcess, ref: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(ok(engine, "inspect", ref))
    return data[0]




@pytest.fixture()
def name(request: pytest.FixtureRequest, engine: EngineProcess) -> Iterator[str]:
    """A container name for this test; the container is removed afterwards."""
    n = "cli-" + request.node.name.replace("_", "-").replace("[", "-").strip("]")[:40]
    yield n
    cove(engine, "rm", "-f", n)


def test_version_info_images(engine: EngineProcess) -> None:
    out = ok(engine, "version")
    assert "Client:" in out and "Server:" in out and "API version" in out
    assert "Containers:" in ok(engine, "info")
    assert "busybox" in ok(engine, "images")
    assert ok(engine, "version", "--format", "{{.Server.APIVersion}}").strip() >= "1.44"


def test_run_flags_reach_the_container(engine: EngineProcess, name: str,
                                       tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\nEMPTY=\n")
    script = ("echo $A $FROM_FILE; pwd; id -u; hostname; grep CapEff /proc/self/status;"
              " ulimit -n; touch /x 2>/dev/null || echo ro; cat /sys/fs/cgroup/pids/pids.max")
    res = cove(engine, "run", "--name", name, "-e", "A=1", "--env-file", str(env_file),
               "-w", "/tmp", "-u", "nobody", "--hostname", "clihost", "--cap-drop", "ALL",
               "--cap-add", "NET_RAW", "--read-only", "--memory", "32m", "--cpus", "0.5",
               "--pids-limit", "50", "--ulimit", "nofile=512:1024", "--stop-signal",
               "SIGUSR1", "--label", "k=v", "--restart", "on-failure:2", "--network", "none",
               "busybox", "sh", "-c", script)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:8] == [
        "1 yes", "/tmp", "65534", "clihost", "CapEff:\t0000000000000000", "512", "ro", "50"]
    info = inspect(engine, name)
    assert info["Config"]["Labels"] == {"k": "v"}
    assert info["Config"]["StopSignal"] == "SIGUSR1"
    assert "EMPTY=" in info["Config"]["Env"]
    hc = info["HostConfig"]
    assert hc["Memory"] == 32 << 20 and hc["NanoCpus"] == 500_000_000
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 512, "Hard": 1024}]


def test_run_rm_entrypoint_init_privileged(engine: EngineProcess) -> None:
    before = ok(engine, "ps", "-aq")
    out = ok(engine, "run", "--rm", "--network", "none", "--entrypoint", "echo", "busybox",
             "from", "entrypoint")
    assert out == "from entrypoint\n"
    out = ok(engine, "run", "--rm", "--init", "--network", "none", "busybox", "ps", "-o",
             "pid,comm")
    assert "cove-init" in out.splitlines()[1]
    out = ok(engine, "run", "--rm", "--privileged", "--network", "none", "busybox", "sh",
             "-c", "grep CapEff /proc/self/status")
    assert out.split()[1] != "00000000a80425fb"
    assert ok(engine, "ps", "-aq") == before


def test_run_detached_and_interactive(engine: EngineProcess, name: str) -> None:
    cid = ok(engine, "run", "-d", "--name", name, "--network", "none", "busybox",
             "sleep", "300").strip()
    assert len(cid) == 64
    assert inspect(engine, name)["State"]["Running"] is True
    out = ok(engine, "run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c",
             "tr a-z A-Z", stdin=b"piped stdin\n")
    assert out == "PIPED STDIN\n"


def test_run_tty_and_interactive_tty_in_a_pty(engine: EngineProcess) -> None:
    code, out = in_pty([COVE, "-H", engine.url, "run", "--rm", "-t", "--network", "none",
                        "busybox", "sh", "-c", "tty; echo $TERM; exit 3"])
    assert code == 3
    # Without -i docker leaves the local terminal cooked, so its ONLCR doubles the \r.
    assert out.replace(b"\r", b"").split() == [b"/dev/pts/0", b"xterm"]
    code, out = in_pty([COVE, "-H", engine.url, "run", "--rm", "-it", "--network", "none",
                        "busybox", "sh"], send=b"echo typed-$((6*7)); exit 4\r", until=b"# ")
    assert code == 4
    assert b"typed-42" in out


def test_create_start_attach_interactive(engine: EngineProcess, name: str) -> None:
    ok(engine, "create", "--name", name, "-i", "--network", "none", "busybox", "sh", "-c",
       "read line; echo got:$line; exit 5")
    assert inspect(engine, name)["State"]["Status"] == "created"
    res = cove(engine, "start", "-a", "-i", name, stdin=b"hello\n")
    assert res.stdout == "got:hello\n" and res.returncode == 5


def test_stop_kill_restart_pause_wait_rename_rm(engine: EngineProcess, name: str) -> None:
    trap = "trap 'echo usr2' USR2; trap 'exit 7' TERM; while :; do sleep 0.1; done"
    ok(engine, "run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c", trap)
    time.sleep(0.3)
    ok(engine, "kill", "-s", "USR2", name)
    ok(engine, "pause", name)
    assert inspect(engine, name)["State"]["Status"] == "paused"
    ok(engine, "unpause", name)
    deadline = time.monotonic() + 10
    while "usr2" not in ok(engine, "logs", name) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ok(engine, "logs", name) == "usr2\n"
    ok(engine, "stop", "-t", "5", name)
    assert ok(engine, "wait", name).strip() == "7"
    ok(engine, "restart", "-t", "1", name)
    assert inspect(engine, name)["State"]["Running"] is True
    ok(engine, "rename", name, name + "-2")
    assert inspect(engine, name + "-2")["Name"] == "/" + name + "-2"
    res = cove(engine, "rm", name + "-2")
    assert res.returncode != 0
    assert "stop the container before" in res.stderr.lower() or \
        "cannot remove" in res.stderr.lower()
    ok(engine, "rm", "-f", name + "-2")
    assert cove(engine, "inspect", name + "-2").returncode != 0


def test_ps_flags(engine: EngineProcess, name: str) -> None:
    ok(engine, "run", "-d", "--name", name, "--label", "suite=ps", "--network", "none",
       "busybox", "sleep", "300")
    done = ok(engine, "run", "-d", "--name", name + "-done", "--label", "suite=ps",
              "--network", "none", "busybox", "true").strip()
    try:
        ok(engine, "wait", done)
        running = ok(engine, "ps", "-q", "--filter", "label=suite=ps").split()
        assert len(running) == 1 and len(running[0]) == 12
        both = ok(engine, "ps", "-aq", "--filter", "label=suite=ps").split()
        assert len(both) == 2 and done[:12] in both
        assert ok(engine, "ps", "-a", "-n", "1", "-q", "--filter", "label=suite=ps").split() \
            == [done[:12]]
        full = ok(engine, "ps", "-a", "--no-trunc", "-q", "--filter", "label=suite=ps").split()
        assert done in full
        fmt = ok(engine, "ps", "-a", "--filter", "label=suite=ps", "--filter",
                 "status=exited", "--format", "{{.Names}} {{.Status}}")
        assert fmt.startswith(name + "-done Exited (0)")
        table = ok(engine, "ps", "--filter", "label=suite=ps")
        assert table.splitlines()[0].split()[:2] == ["CONTAINER", "ID"]
    finally:
        cove(engine, "rm", "-f", name + "-done")


def test_logs_flags(engine: EngineProcess, name: str) -> None:
    ok(engine, "run", "-d", "--name", name, "--network", "none", "busybox", "sh", "-c",
       "echo one; echo two >&2; sleep 1.2; echo three; sleep 0.5")
    res = cove(engine, "logs", "-f", name)
    assert res.stdout == "one\nthree\n" and res.stderr == "two\n"
    stamped = ok(engine, "logs", "-t", name).splitlines()
    assert stamped[0].endswith(" one") and stamped[0][:4].isdigit() and "T" in stamped[0]
    assert ok(engine, "logs", "--tail", "1", name) == "three\n"
    first, third = stamped[0].split()[0], stamped[-1].split()[0]
    assert ok(engine, "logs", "--since", third, name) == "three\n"
    assert ok(engine, "logs", "--until", first, name) == "one\n"  # inclusive, as moby


def test_exec_flags(engine: EngineProcess, name: str) -> None:
    ok(engine, "run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300")
    out = ok(engine, "exec", "-u", "www-data", "-w", "/tmp", "-e", "X=y", name, "sh", "-c",
             "id -u; pwd; echo $X")
    assert out.split() == ["33", "/tmp", "y"]
    assert ok(engine, "exec", "-i", name, "cat", stdin=b"via stdin\n") == "via stdin\n"
    assert ok(engine, "exec", "-d", name, "sh", "-c", "echo bg > /tmp/bg") == ""
    deadline = time.monotonic() + 10
    while cove(engine, "exec", name, "cat", "/tmp/bg").stdout != "bg\n" and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    assert ok(engine, "exec", name, "cat", "/tmp/bg") == "bg\n"
    code, raw = in_pty([COVE, "-H", engine.url, "exec", "-it", name, "sh"],
                       send=b"tty; exit 6\r", until=b"# ")
    assert code == 6 and b"/dev/pts/" in raw
    assert cove(engine, "exec", name, "sh", "-c", "exit 9").returncode == 9


def test_inspect_top_stats(engine: EngineProcess, name: str) -> None:
    ok(engine, "run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300")
    assert ok(engine, "inspect", "--format", "{{.State.Status}} {{.Name}}", name) == \
        f"running /{name}\n"
    top = ok(engine, "top", name).splitlines()
    assert "PID" in top[0] and "sleep 300" in top[1]
    stats = ok(engine, "stats", "--no-stream", name).splitlines()
    assert "CPU %" in stats[0] and "MEM USAGE / LIMIT" in stats[0] and "PIDS" in stats[0]
    assert stats[1].split()[1] == name


def test_import_file_and_stdin(engine: EngineProcess, busybox_tar: Path) -> None:
    ok(engine, "import", str(busybox_tar), "imported:file")
    with open(busybox_tar, "rb") as tar:
        res = subprocess.run([COVE, "-H", engine.url, "import", "-", "imported:stdin"],
                             stdin=tar, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().strip().startswith("sha256:")
    images = ok(engine, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert {"imported:file", "imported:stdin"} <= set(images)
    assert ok(engine, "run", "--rm", "--network", "none", "imported:stdin", "echo", "hi") \
        == "hi\n"
    ok(engine, "rmi", "imported:file", "imported:stdin")


@pytest.mark.parametrize("args, code, message", [
    (["run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 13"], 13, None),
    (["run", "--rm", "--network", "none", "busybox", "/no/such/binary"], 127,
     "no such file or directory"),
    (["run", "--rm", "--network", "none", "busybox", "/etc/passwd"], 126,
     "permission denied"),
    (["run", "--rm", "no-such-image:9"], 125, "no-such-image"),
    (["run", "--rm", "--memory", "lots", "busybox"], 125, "invalid"),
    (["start", "no-such-container"], 1, "no-such-container"),
    (["run", "--no-such-flag", "busybox"], 125, "no-such-flag"),
])
def test_error_lines_and_exit_codes(engine: EngineProcess, args: list[str], code: int,
                                    message: str | None) -> None:
    res = cove(engine, *args)
    assert res.returncode == code, res.stderr
    if message is not None:
        # one line, after docker's own notes ("Unable to find image", "Error: failed to")
        notes = ("Unable to find image", "Error: failed to start", "See ")
        lines = [line for line in res.stderr.splitlines()
                 if line.strip() and not line.startswith(notes)]
        assert len(lines) == 1, res.stderr
        assert message in res.stderr.lower()
        assert "Traceback" not in res.stderr


def test_docker_cli_seccomp_profile_file(engine: EngineProcess, tmp_path: Path) -> None:
    """docker CLI 28 reads the profile file itself and sends the JSON in SecurityOpt."""
    if not shutil.which(DOCKER):
        pytest.skip("docker CLI not installed")
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    env = {**os.environ, "DOCKER_HOST": engine.url, "DOCKER_CONFIG": str(tmp_path)}
    res = subprocess.run([DOCKER, "run", "--rm", "--network", "none", "--security-opt",
                          f"seccomp={profile}", "busybox", "sh", "-c", "mkdir /d; echo rc=$?"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert "rc=1" in res.stdout and "Operation not permitted" in res.stderr
    res = subprocess.run([DOCKER, "run", "--rm", "--network", "none", "--security-opt",
                          "seccomp=unconfined", "--security-opt", "no-new-privileges",
                          "busybox", "grep", "NoNewPrivs", "/proc/self/status"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.stdout.split() == ["NoNewPrivs:", "1"]
    res = subprocess.run([DOCKER, "run", "--rm", "busybox", "/no/such"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert res.returncode == 127
