"""testcontainers-python (unmodified, Ryuk off) against Cove: port, log wait strategy, exec."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Iterator

import pytest

from tests.harness import EngineProcess

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(importlib.util.find_spec("testcontainers") is None,
                       reason="testcontainers is not installed (pip install testcontainers)"),
]

# busybox httpd answers on 8080 after printing the line the wait strategy looks for.
SERVE = "mkdir -p /www && echo hello-tc > /www/index.html && echo server-ready && " \
        "exec httpd -f -p 8080 -h /www"


@pytest.fixture(params=["default", "docker_host"])
def tc_env(request: pytest.FixtureRequest, engine: EngineProcess,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DOCKER_HOST at the engine; both the auto-detected and the localhost connection mode."""
    from testcontainers.core.config import testcontainers_config

    monkeypatch.setenv("DOCKER_HOST", engine.url)
    monkeypatch.setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    mode = str(request.param)
    if mode == "docker_host":
        from testcontainers.core.config import ConnectionMode

        monkeypatch.setattr(testcontainers_config, "connection_mode_override",
                            ConnectionMode.docker_host)
    yield mode


def _http_get(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


def test_container_port_wait_and_exec(engine: EngineProcess, tc_env: str) -> None:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    container = (DockerContainer("busybox:latest")
                 .with_command(["sh", "-c", SERVE])
                 .with_exposed_ports(8080)
                 .waiting_for(LogMessageWaitStrategy("server-ready")))
    with container:
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(8080))
        if tc_env == "docker_host":
            assert host in ("localhost", "127.0.0.1")
        # Only loopback or the engine's own bridge are ever dialled here.
        assert host in ("localhost", "127.0.0.1") or host.startswith("10.213."), host
        assert b"hello-tc" in _http_get(host, port)
        result = container.exec(["cat", "/www/index.html"])
        assert result.exit_code == 0
        assert result.output == b"hello-tc\n"
