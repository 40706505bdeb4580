"""The CLI in-process: argument parsing → request bodies, rendering, errors and exit codes."""

from __future__ import annotations

import io
import json
import socket
import tarfile
from pathlib import Path
from typing import Any

import pytest

from runtime.cli import main as cli_main
from runtime.cli.containers import ps_row
from runtime.cli.images import canonical, image_rows, split_ref
from runtime.cli.run import build_config
from runtime.cli.stats import cpu_percent, memory, row
from runtime.cli.stdio import parse_detach_keys
from runtime.cli.system import event_line

from .peer import Request, json_response, serve


def parse(argv: list[str]) -> Any:
    return cli_main.build_parser(argv).parse_args(argv)


def test_run_flags_to_create_body() -> None:
    args = parse(
        [
            "run",
            "-d",
            "--rm",
            "--name",
            "web",
            "-p",
            "8080:80",
            "-e",
            "A=1",
            "-v",
            "/tmp:/data",
            "-v",
            "/anon",
            "-m",
            "512m",
            "--cpus",
            "1.5",
            "--restart",
            "on-failure:2",
            "-l",
            "k=v",
            "-h",
            "host1",
            "--init",
            "--network",
            "n1",
            "--network-alias",
            "al",
            "--entrypoint",
            "",
            "busybox",
            "sh",
            "-c",
            "echo hi",
        ]
    )
    body = build_config(args)
    assert body["Image"] == "busybox"
    assert body["Cmd"] == ["sh", "-c", "echo hi"]
    assert body["Entrypoint"] == [""]
    assert body["Hostname"] == "host1"
    assert body["Env"] == ["A=1"]
    assert body["Labels"] == {"k": "v"}
    assert body["ExposedPorts"] == {"80/tcp": {}}
    assert body["Volumes"] == {"/anon": {}}
    assert body["AttachStdout"] is False
    host = body["HostConfig"]
    assert host["Binds"] == ["/tmp:/data"]
    assert host["AutoRemove"] is True
    assert host["Memory"] == 512 * 1024**2
    assert host["NanoCpus"] == 1_500_000_000
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert host["NetworkMode"] == "n1"
    assert host["Init"] is True
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"n1": {"Aliases": ["al"]}}}


def test_run_defaults_match_docker() -> None:
    body = build_config(parse(["run", "-it", "busybox"]))
    assert body["Cmd"] is None and body["Entrypoint"] is None
    assert body["Tty"] and body["OpenStdin"] and body["StdinOnce"] and body["AttachStdin"]
    assert body["HostConfig"]["NetworkMode"] == "default"
    assert body["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"default": {}}}


def test_command_args_after_image_are_not_flags() -> None:
    args = parse(["exec", "-it", "c1", "ls", "-la", "--color"])
    assert args.container == "c1" and args.command == ["ls", "-la", "--color"]


def test_group_aliases() -> None:
    assert parse(["container", "ls", "-a"]).all is True
    assert parse(["image", "rm", "-f", "x"]).force is True
    assert parse(["network", "ls", "-q"]).quiet is True


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main.run(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_unreachable_engine_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = f"unix://{tmp_path}/none.sock"
    code, _, err = run_cli(["-H", host, "ps"], capsys)
    assert code == 1
    assert err.strip() == (
        f"Cannot connect to the Cove engine at {host}. Is the engine running? "
        "(start it with: cove engine start)"
    )


def test_flag_errors_exit_125(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main.run(["ps", "--bogus"])
    assert info.value.code == 125
    assert "cove: unrecognized arguments: --bogus" in capsys.readouterr().err


def test_daemon_errors_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def respond(req: Request, sock: socket.socket) -> None:
        json_response(sock, 404, {"message": "No such container: x"})

    with serve(tmp_path, respond) as (host, _):
        code, out, err = run_cli(["-H", host, "stop", "x"], capsys)
        assert (code, out, err) == (1, "", "Error response from daemon: No such container: x\n")
        code, _, err = run_cli(["-H", host, "inspect", "x"], capsys)
        assert code == 1 and err == "Error: No such object: x\n"


def test_run_exit_codes_from_start_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def respond(req: Request, sock: socket.socket) -> None:
        if req.path.endswith("/create"):
            json_response(sock, 201, {"Id": "c" * 64, "Warnings": []})
        elif req.path.endswith("/start"):
            json_response(sock, 404, {"message": 'exec: "nope": executable file not found'})
        else:
            json_response(sock, 500, {"message": "unexpected"})

    with serve(tmp_path, respond) as (host, seen):
        code, _, err = run_cli(["-H", host, "run", "-d", "busybox", "nope"], capsys)
    assert code == 127
    assert err.startswith("cove: Error response from daemon: exec:")
    cid = "c" * 64
    assert [r.path for r in seen] == ["/v1.44/containers/create", f"/v1.44/containers/{cid}/start"]


def test_ps_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    containers = [
        {
            "Id": "a" * 64,
            "Names": ["/web"],
            "Image": "busybox",
            "Command": "sleep 100000000000000000",
            "Created": 0,
            "State": "running",
            "Status": "Up 2 minutes",
            "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}],
            "Labels": {"k": "v"},
        }
    ]

    def respond(req: Request, sock: socket.socket) -> None:
        json_response(sock, 200, containers)

    with serve(tmp_path, respond) as (host, _):
        _, out, _ = run_cli(["-H", host, "ps"], capsys)
        lines = out.splitlines()
        assert lines[0].split() == [
            "CONTAINER",
            "ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        assert lines[0].startswith("CONTAINER ID   IMAGE     COMMAND  ")
        assert '"sleep 1000000000000…"' in lines[1]
        assert "0.0.0.0:8080->80/tcp   web" in lines[1]
        _, out, _ = run_cli(["-H", host, "ps", "-q"], capsys)
        assert out == "a" * 12 + "\n"
        _, out, _ = run_cli(["-H", host, "ps", "--format", '{{.Names}} {{.Label "k"}}'], capsys)
        assert out == "web v\n"
        _, out, _ = run_cli(["-H", host, "ps", "--format", "json"], capsys)
        assert json.loads(out)["Names"] == "web"


def test_ps_row_fields() -> None:
    c = {
        "Id": "b" * 64,
        "Names": ["/x", "/y/link"],
        "Image": "sha256:" + "c" * 64,
        "Command": "true",
        "Created": 100,
        "Ports": [],
        "Labels": {},
    }
    r = ps_row(c, now=220)
    assert (r["ID"], r["Names"], r["Image"], r["Command"], r["RunningFor"]) == (
        "b" * 12,
        "x",
        "c" * 12,
        '"true"',
        "2 minutes ago",
    )


def test_image_rows() -> None:
    img = {
        "Id": "sha256:" + "d" * 64,
        "RepoTags": ["busybox:latest", "localhost:5000/b:1"],
        "RepoDigests": [],
        "Created": 0,
        "Size": 4_260_000,
    }
    rows = image_rows(img, now=3 * 86400)
    assert [(r["Repository"], r["Tag"], r["ID"], r["CreatedSince"], r["Size"]) for r in rows] == [
        ("busybox", "latest", "d" * 12, "3 days ago", "4.26MB"),
        ("localhost:5000/b", "1", "d" * 12, "3 days ago", "4.26MB"),
    ]
    untagged = image_rows({"Id": "sha256:" + "e" * 64, "RepoTags": [], "Size": 0})
    assert (untagged[0]["Repository"], untagged[0]["Tag"]) == ("<none>", "<none>")


def test_refs() -> None:
    assert split_ref("busybox") == ("busybox", None)
    assert split_ref("localhost:5000/x") == ("localhost:5000/x", None)
    assert split_ref("localhost:5000/x:1") == ("localhost:5000/x", "1")
    assert split_ref("x@sha256:ab") == ("x", "sha256:ab")
    assert canonical("busybox") == "docker.io/library/busybox:latest"
    assert canonical("me/app:2") == "docker.io/me/app:2"
    assert canonical("localhost:5000/x") == "localhost:5000/x:latest"


def test_stats_math() -> None:
    sample: dict[str, Any] = {
        "name": "/web",
        "id": "f" * 64,
        "cpu_stats": {
            "cpu_usage": {"total_usage": 400},
            "system_cpu_usage": 2000,
            "online_cpus": 2,
        },
        "precpu_stats": {"cpu_usage": {"total_usage": 200}, "system_cpu_usage": 1000},
        "memory_stats": {
            "usage": 3 * 1024**2,
            "limit": 100 * 1024**2,
            "stats": {"inactive_file": 1024**2},
        },
        "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 500}},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"op": "Read", "value": 4096},
                {"op": "Write", "value": 0},
            ]
        },
        "pids_stats": {"current": 3},
    }
    assert cpu_percent(sample) == 40.0
    assert memory(sample) == (2 * 1024**2, 100 * 1024**2)
    assert row(sample, sample["id"]) == {
        "ID": "f" * 12,
        "Container": "f" * 12,
        "Name": "web",
        "CPUPerc": "40.00%",
        "MemUsage": "2MiB / 100MiB",
        "MemPerc": "2.00%",
        "NetIO": "1.5kB / 500B",
        "BlockIO": "4.1kB / 0B",
        "PIDs": "3",
    }


def test_event_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    ev = {
        "Type": "container",
        "Action": "die",
        "timeNano": 1_700_000_000_500_000_000,
        "Actor": {"ID": "abc", "Attributes": {"name": "x", "exitCode": "137"}},
    }
    assert event_line(ev) == "2023-11-14T22:13:20.5Z container die abc (exitCode=137, name=x)"


def test_detach_keys() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("a,ctrl-@") == b"a\x00"
    with pytest.raises(ValueError):
        parse_detach_keys("ctrl-1x")


def test_build_context_honours_dockerignore(tmp_path: Path) -> None:
    from runtime.cli.build import tar_context

    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("*.log\nsecret/\nDockerfile\n")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.log").write_text("b")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "k").write_text("k")
    with tar_context(str(tmp_path)) as stream, tarfile.open(fileobj=io.BytesIO(stream.read())) as t:
        names = sorted(t.getnames())
    assert names == [".dockerignore", "Dockerfile", "a.txt"]
