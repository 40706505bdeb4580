"""More docker CLI flows against Cove: ttys, ports, cp, diff/export/commit, events, images.

Runs with Docker's CLI 28 (/usr/local/bin/docker) and, for the basic flows,
Debian's docker.io 20.10 CLI (/usr/bin/docker) too.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.compat.clients import client_env, docker_cli, run
from tests.harness import EngineProcess, wait_http

CLI28 = docker_cli("/usr/local/bin/docker") or docker_cli("docker")
CLI20 = docker_cli("/usr/bin/docker")
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(CLI28 is None, reason="the docker CLI is not installed")]


def d(engine: EngineProcess, *args: str, cli: str | None = None, check: bool = True,
      input: bytes | None = None) -> str:
    binary = cli or CLI28
    assert binary is not None
    return run(engine, [binary, *args], check=check, input=input).stdout.decode()


def tty(engine: EngineProcess, command: str, keys: list[tuple[float, bytes]]
        ) -> subprocess.CompletedProcess[bytes]:
    """Run a docker command on a real pty (util-linux script), typing *keys* after delays."""
    proc = subprocess.Popen(["script", "-eqc", command, "/dev/null"], env=client_env(engine),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    for delay, data in keys:
        time.sleep(delay)
        proc.stdin.write(data)
        proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


@pytest.mark.parametrize("cli", [CLI28, CLI20], ids=["cli28", "cli20"])
def test_basic_flows_both_clis(engine: EngineProcess, cli: str | None) -> None:
    if cli is None:
        pytest.skip("this docker CLI is not installed")
    assert d(engine, "run", "--rm", "--network", "none", "busybox", "echo", "hi", cli=cli) \
        == "hi\n"
    assert d(engine, "run", "--rm", "-i", "--network", "none", "busybox", "cat", cli=cli,
             input=b"piped\n") == "piped\n"
    name = f"flows-{Path(cli).parent.name}"
    d(engine, "run", "-d", "--name", name, "busybox", "sh", "-c", "echo up; sleep 300", cli=cli)
    try:
        assert name in d(engine, "ps", "--format", "{{.Names}}", cli=cli)
        assert d(engine, "exec", name, "echo", "in", cli=cli) == "in\n"
        assert "up" in d(engine, "logs", name, cli=cli)
    finally:
        d(engine, "rm", "-f", name, cli=cli)


def test_run_it_on_a_pty_exit_code(engine: EngineProcess) -> None:
    out = tty(engine, f"{CLI28} run --rm -it --network none busybox sh",
              [(1.5, b"echo tty-$((6*7))\r"), (0.8, b"exit 3\r")])
    assert b"tty-42" in out.stdout
    assert out.returncode == 3


def test_attach_detach_keys_and_exec_it(engine: EngineProcess) -> None:
    d(engine, "run", "-d", "-it", "--name", "att", "--network", "none", "busybox", "sh")
    try:
        out = tty(engine, f"{CLI28} attach att",
                  [(1.0, b"echo attached-ok\r"), (0.5, b"\x10\x11"), (1.0, b"")])
        assert b"attached-ok" in out.stdout
        assert d(engine, "inspect", "-f", "{{.State.Running}}", "att").strip() == "true"
        ex = tty(engine, f"{CLI28} exec -it att sh",
                 [(1.0, b"echo exec-$((2+3))\r"), (0.5, b"exit\r")])
        assert b"exec-5" in ex.stdout
    finally:
        d(engine, "rm", "-f", "att")


def test_ports_volumes_networks(engine: EngineProcess, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("served\n")
    d(engine, "network", "create", "flows-net")
    try:
        d(engine, "run", "-d", "--name", "web", "--network", "flows-net", "-p", "127.0.0.1::80",
          "-v", f"{tmp_path}:/www:ro", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
        port = d(engine, "port", "web", "80/tcp").splitlines()[0].rsplit(":", 1)[1]
        body = wait_http(f"http://127.0.0.1:{port}/index.html", attempt_timeout=5)
        assert body == b"served\n"
        peer = d(engine, "run", "--rm", "--network", "flows-net", "busybox", "wget", "-qO-",
                 "http://web/index.html")
        assert peer == "served\n"
    finally:
        d(engine, "rm", "-f", "web", check=False)
        d(engine, "network", "rm", "flows-net", check=False)


def test_legacy_links_on_a_user_network_and_the_default_bridge(engine: EngineProcess) -> None:
    d(engine, "network", "create", "links-net")
    try:
        d(engine, "run", "-d", "--name", "lk-target", "--network", "links-net", "busybox",
          "sleep", "300")
        # On a user network the CLI puts --link into the endpoint: a DNS alias of this
        # container only (Docker's embedded DNS).
        out = d(engine, "run", "--rm", "--network", "links-net", "--link", "lk-target:db",
                "busybox", "sh", "-c", "nslookup db && nslookup db.links-net")
        assert out.count("Address") >= 2, out
        other = run(engine, [CLI28 or "docker", "run", "--rm", "--network", "links-net",
                             "busybox", "nslookup", "db"], check=False)
        assert b"NXDOMAIN" in other.stdout + other.stderr or other.returncode != 0
        d(engine, "run", "-d", "--name", "lk-bridged", "busybox", "sleep", "300")
        ip = d(engine, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "lk-bridged").strip()
        hosts = d(engine, "run", "--rm", "--link", "lk-bridged:cache", "busybox", "cat",
                  "/etc/hosts")
        assert f"{ip}\tcache " in hosts and hosts.rstrip().count("lk-bridged") == 1, hosts
    finally:
        d(engine, "rm", "-f", "lk-target", "lk-bridged", check=False)
        d(engine, "network", "rm", "links-net", check=False)


def test_cp_diff_export_commit_rename_update_wait(engine: EngineProcess, tmp_path: Path) -> None:
    d(engine, "run", "-d", "--name", "fs1", "--network", "none", "busybox", "sh", "-c",
      "echo new > /added; rm /etc/group; echo x >> /etc/passwd; sleep 300")
    try:
        time.sleep(0.5)
        (tmp_path / "in.txt").write_text("copied in\n")
        d(engine, "cp", str(tmp_path / "in.txt"), "fs1:/tmp/")
        d(engine, "cp", "fs1:/tmp/in.txt", str(tmp_path / "out.txt"))
        assert (tmp_path / "out.txt").read_text() == "copied in\n"
        diff = set(d(engine, "diff", "fs1").splitlines())
        assert {"A /added", "D /etc/group", "C /etc/passwd", "C /etc"} <= diff, diff
        d(engine, "export", "-o", str(tmp_path / "fs.tar"), "fs1")
        with tarfile.open(tmp_path / "fs.tar") as tar:
            names = set(tar.getnames())
        assert {"added", "bin/busybox", "tmp/in.txt"} <= names
        assert "etc/group" not in names and not any(n.startswith("proc/") for n in names)
        image = d(engine, "commit", "-c", "CMD [\"cat\", \"/added\"]", "fs1", "flows:snap")
        assert image.startswith("sha256:")
        assert d(engine, "run", "--rm", "--network", "none", "flows:snap") == "new\n"
        d(engine, "rename", "fs1", "fs2")
        d(engine, "update", "--memory", "64m", "--memory-swap", "128m", "fs2")
        assert d(engine, "inspect", "-f", "{{.HostConfig.Memory}}", "fs2").strip() == "67108864"
        d(engine, "kill", "fs2")
        assert d(engine, "wait", "fs2").strip() == "137"
    finally:
        d(engine, "rm", "-f", "fs1", "fs2", check=False)
        d(engine, "rmi", "flows:snap", check=False)


def test_logs_follow_timestamps_tail(engine: EngineProcess) -> None:
    d(engine, "run", "-d", "--name", "lg", "--network", "none", "busybox", "sh", "-c",
      "for i in 1 2 3; do echo line$i; done; sleep 1; echo last")
    try:
        assert d(engine, "wait", "lg").strip() == "0"
        assert d(engine, "logs", "--tail", "1", "lg") == "last\n"
        stamped = d(engine, "logs", "-t", "--tail", "2", "lg").splitlines()
        assert stamped[0].endswith(" line3") and stamped[0][:4].isdigit()
        # -f on an exited container dumps and ends.
        assert d(engine, "logs", "-f", "lg").splitlines() == ["line1", "line2", "line3", "last"]
    finally:
        d(engine, "rm", "-f", "lg")


def test_events_filters_since_until(engine: EngineProcess) -> None:
    since = str(int(time.time()) - 1)
    d(engine, "run", "--rm", "--network", "none", "-l", "flows=ev", "busybox", "sh", "-c",
      "exit 4", check=False)
    until = str(int(time.time()) + 1)
    out = d(engine, "events", "--since", since, "--until", until, "--filter", "event=die",
            "--filter", "label=flows=ev", "--format", "{{json .}}")
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 1
    attrs = events[0]["Actor"]["Attributes"]
    assert attrs["exitCode"] == "4" and attrs["flows"] == "ev" and attrs["image"] == "busybox"


def test_stats_cpu_from_precpu(engine: EngineProcess) -> None:
    d(engine, "run", "-d", "--name", "busy", "--network", "none", "busybox", "sh", "-c",
      "while :; do :; done")
    try:
        time.sleep(1)
        cpu = d(engine, "stats", "--no-stream", "--format", "{{.CPUPerc}}", "busy").strip()
        assert float(cpu.rstrip("%")) > 20.0, cpu
    finally:
        d(engine, "rm", "-f", "busy")


def test_images_build_save_load_import_history(engine: EngineProcess, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nRUN echo built > /b\nCMD ["cat", "/b"]\n')
    d(engine, "build", "-q", "-t", "flows:built", str(ctx))
    try:
        assert d(engine, "run", "--rm", "--network", "none", "flows:built") == "built\n"
        assert "echo built" in d(engine, "history", "--no-trunc", "flows:built")
        d(engine, "save", "-o", str(tmp_path / "img.tar"), "flows:built")
        d(engine, "rmi", "flows:built")
        assert "Loaded image: flows:built" in d(engine, "load", "-i", str(tmp_path / "img.tar"))
        d(engine, "tag", "flows:built", "flows:again")
        assert "flows" in d(engine, "images", "--format", "{{.Repository}}:{{.Tag}}")
        cid = d(engine, "create", "busybox").strip()
        d(engine, "export", "-o", str(tmp_path / "fs.tar"), cid)
        d(engine, "rm", cid)
        d(engine, "import", str(tmp_path / "fs.tar"), "flows:imported")
        assert d(engine, "run", "--rm", "--network", "none", "flows:imported", "echo",
                 "imp") == "imp\n"
    finally:
        d(engine, "rmi", "flows:built", "flows:again", "flows:imported", check=False)


def test_volumes_system_and_context(engine: EngineProcess) -> None:
    d(engine, "volume", "create", "flows-vol")
    assert d(engine, "volume", "inspect", "-f", "{{.Name}}", "flows-vol").strip() == "flows-vol"
    d(engine, "run", "--rm", "--network", "none", "-v", "flows-vol:/v", "busybox", "sh", "-c",
      "echo kept > /v/f")
    assert d(engine, "run", "--rm", "--network", "none", "-v", "flows-vol:/v", "busybox",
             "cat", "/v/f") == "kept\n"
    df = d(engine, "system", "df")
    assert "Images" in df and "Local Volumes" in df
    d(engine, "volume", "rm", "flows-vol")
    d(engine, "context", "create", "cove-test", "--docker", f"host={engine.url}")
    try:
        env = client_env(engine)
        env.pop("DOCKER_HOST")
        out = run(engine, [str(CLI28), "--context", "cove-test", "version", "-f",
                           "{{.Server.APIVersion}}"], env=env).stdout.decode().strip()
        assert out == "1.44"
    finally:
        d(engine, "context", "rm", "cove-test")
    assert "Total reclaimed space" in d(engine, "system", "prune", "-f")
