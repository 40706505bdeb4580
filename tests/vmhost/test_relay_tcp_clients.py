"""The Windows relay shape with real clients: a loopback TCP relay guarded by a token, in
front of a real engine (the guest side is this host, as in test_relay.py). The docker CLI
takes the token from ``DOCKER_CUSTOM_HEADERS`` as ``cove vm env`` prints it, docker-py from
``HttpHeaders`` in its config.json, cove from ``COVE_HOST_TOKEN``; attach and exec streams
(hijacked connections) go through it as well."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.cli.vm import env_vars
from tests.harness import in_pty
from vmhost.layout import InstanceLayout
from vmhost.relay import Relay, TcpEndpoint, endpoint_for
from vmhost.testing import LocalGuest

pytestmark = pytest.mark.root
DOCKER = shutil.which("docker") or "/usr/bin/docker"


@pytest.fixture()
def relay_env(
    engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The environment `cove vm env` gives a Windows user, with a private docker config."""
    monkeypatch.setenv("COVE_VM_HOME", str(tmp_path / "vms"))
    monkeypatch.setenv("COVE_VM_RELAY", "tcp")
    lay = InstanceLayout.named("default")
    endpoint = endpoint_for(lay.relay_socket, lay.relay_json)
    assert isinstance(endpoint, TcpEndpoint)
    guest = LocalGuest(engine.socket)
    relay = Relay(endpoint, guest, engine_socket=engine.socket, pool_size=2)
    relay.start()
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {**os.environ, **env_vars("default"), "DOCKER_CONFIG": str(config)}
    for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(key, None)
    try:
        yield env
    finally:
        relay.close()
        guest.close()


def docker(env: dict[str, str], *args: str, stdin: bytes | None = None) -> str:
    if not os.path.exists(DOCKER):
        pytest.skip(f"{DOCKER} not installed")
    out = subprocess.run([DOCKER, *args], env=env, input=stdin, capture_output=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def test_env_is_tcp_with_token(relay_env: dict[str, str]) -> None:
    assert relay_env["DOCKER_HOST"].startswith("tcp://127.0.0.1:")
    assert relay_env["COVE_HOST"] == relay_env["DOCKER_HOST"]
    token = relay_env["COVE_HOST_TOKEN"]
    assert relay_env["DOCKER_CUSTOM_HEADERS"] == f"X-Cove-Token={token}"


def test_docker_cli_run_and_piped_stdin(relay_env: dict[str, str]) -> None:
    out = docker(relay_env, "run", "--rm", "--network", "none", "busybox", "echo", "via-tcp")
    assert out == "via-tcp\n"
    piped = docker(relay_env, "run", "-i", "--rm", "--network", "none", "busybox", "tr",
                   "a-z", "A-Z", stdin=b"piped through the relay\n")
    assert piped == "PIPED THROUGH THE RELAY\n"
    version = docker(relay_env, "version", "--format", "{{.Server.Platform.Name}}")
    assert "Cove" in version


def test_docker_cli_exec_it(relay_env: dict[str, str]) -> None:
    name = "tcp-relay-exec"
    docker(relay_env, "run", "-d", "--network", "none", "--name", name, "busybox", "sleep", "60")
    try:
        code, out = in_pty([DOCKER, "exec", "-it", name, "sh", "-c", "tty && echo exec-$((6*7))"],
                           timeout=60, env=relay_env)
        assert code == 0, out
        assert b"exec-42" in out and b"/dev/pts/" in out
    finally:
        docker(relay_env, "rm", "-f", name)


def test_docker_cli_without_the_header_is_refused(relay_env: dict[str, str]) -> None:
    if not os.path.exists(DOCKER):
        pytest.skip(f"{DOCKER} not installed")
    env = {k: v for k, v in relay_env.items() if k != "DOCKER_CUSTOM_HEADERS"}
    out = subprocess.run([DOCKER, "ps"], env=env, capture_output=True, timeout=60,
                         check=False)
    assert out.returncode != 0
    assert b"X-Cove-Token" in out.stderr, out.stderr


def test_docker_py_with_http_headers_in_config(
    relay_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import docker as docker_py

    config = Path(relay_env["DOCKER_CONFIG"]) / "config.json"
    config.write_text(json.dumps({"HttpHeaders": {"X-Cove-Token": relay_env["COVE_HOST_TOKEN"]}}))
    monkeypatch.setenv("DOCKER_CONFIG", relay_env["DOCKER_CONFIG"])  # docker-py reads it at init
    client = docker_py.DockerClient(base_url=relay_env["DOCKER_HOST"], timeout=60)
    try:
        out = client.containers.run("busybox", ["echo", "docker-py"], network_mode="none",
                                    remove=True)
        assert out == b"docker-py\n"
    finally:
        client.close()


def test_cove_cli_with_cove_host_token(relay_env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "run", "--rm", "--network", "none",
         "busybox", "echo", "cove-tcp"],
        env=relay_env, capture_output=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b"cove-tcp\n"
