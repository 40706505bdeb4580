"""The real docker CLI (unmodified) against a real Cove engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

import pytest

from tests.harness import EngineProcess

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("docker") is None, reason="the docker CLI is not installed"),
]


def docker(engine: EngineProcess, *args: str, input: bytes | None = None,
           check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DOCKER_HOST": engine.url, "DOCKER_CONFIG": str(engine.base / "dcfg"),
           "DOCKER_BUILDKIT": "0"}
    out = subprocess.run(["docker", *args], env=env, input=input, capture_output=True,
                         timeout=120, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} -> {out.returncode}: "
                             f"{out.stderr.decode()}")
    return out


def test_version_and_info(engine: EngineProcess) -> None:
    out = docker(engine, "version", "--format", "{{json .Server}}").stdout
    server: dict[str, Any] = json.loads(out)
    assert server["ApiVersion"] == "1.44" and server["Os"] == "linux"
    info = docker(engine, "info", "--format", "{{.Driver}} {{.OSType}}").stdout.decode().strip()
    assert info == "overlay2 linux"


def test_run_foreground_prints_and_returns_exit_code(engine: EngineProcess) -> None:
    out = docker(engine, "run", "--rm", "--network", "none", "busybox", "echo", "hi there")
    assert out.stdout == b"hi there\n"
    failed = docker(engine, "run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 5",
                    check=False)
    assert failed.returncode == 5


def test_run_with_piped_stdin(engine: EngineProcess) -> None:
    out = docker(engine, "run", "--rm", "-i", "--network", "none", "busybox", "tr", "a-z",
                 "A-Z", input=b"shout\n")
    assert out.stdout == b"SHOUT\n"


def test_command_not_found_exits_127(engine: EngineProcess) -> None:
    out = docker(engine, "run", "--rm", "--network", "none", "busybox", "nosuchcmd",
                 check=False)
    assert out.returncode == 127
    assert b"executable file not found" in out.stderr


def test_detached_lifecycle_ps_logs_exec_inspect(engine: EngineProcess) -> None:
    cid = docker(engine, "run", "-d", "--name", "cli-web", "--network", "none", "-l", "k=v",
                 "busybox", "sh", "-c", "echo started; sleep 300").stdout.decode().strip()
    assert len(cid) == 64
    ps = docker(engine, "ps", "--filter", "label=k=v", "--format",
                "{{.Names}} {{.Status}}").stdout.decode()
    assert ps.startswith("cli-web Up")
    assert docker(engine, "logs", "cli-web").stdout == b"started\n"
    assert docker(engine, "exec", "cli-web", "cat", "/etc/hostname").stdout.decode().strip()
    status = docker(engine, "inspect", "--format", "{{.State.Status}} {{.Config.Labels.k}}",
                    "cli-web").stdout.decode().strip()
    assert status == "running v"
    top = docker(engine, "top", "cli-web").stdout.decode()
    assert "sleep 300" in top
    stats = docker(engine, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}",
                   "cli-web").stdout.decode().strip()
    assert stats.startswith("cli-web ")
    docker(engine, "stop", "-t", "1", "cli-web")
    assert docker(engine, "inspect", "--format", "{{.State.ExitCode}}",
                  "cli-web").stdout.decode().strip() == "137"
    docker(engine, "rm", "cli-web")
    missing = docker(engine, "inspect", "cli-web", check=False)
    assert missing.returncode != 0


def test_errors_are_docker_shaped(engine: EngineProcess) -> None:
    out = docker(engine, "stop", "no-such-container", check=False)
    assert out.returncode == 1
    assert b"No such container: no-such-container" in out.stderr
    running = docker(engine, "run", "-d", "--network", "none", "busybox", "sleep",
                     "60").stdout.decode().strip()
    refused = docker(engine, "rm", running, check=False)
    assert refused.returncode == 1 and b"stop the container before removing" in refused.stderr
    docker(engine, "rm", "-f", running)
