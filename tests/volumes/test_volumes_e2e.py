"""Volumes end to end through the session engine with the docker CLI 28 and docker-py (root)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")]

DOCKERFILE = """FROM busybox
RUN mkdir -p /data/sub && echo seeded > /data/seed.txt && echo deep > /data/sub/f
VOLUME /data
"""


def cli(engine: Any, *args: str, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", "-H", engine.url, *args], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {proc.returncode}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def seeded(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image with content at its VOLUME path, built by the legacy builder of the CLI."""
    ctx = tmp_path_factory.mktemp("seeded")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    import os

    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    cli(engine, "build", "-q", "-t", "cove-seeded:e2e", str(ctx), env=env)
    return "cove-seeded:e2e"


def test_copy_up_fills_an_empty_volume_once(engine: Any, seeded: str) -> None:
    try:
        out = cli(engine, "run", "--rm", "-v", "e2v-seed:/data", seeded, "sh", "-c",
                  "cat /data/seed.txt /data/sub/f && echo changed > /data/seed.txt").stdout
        assert out == "seeded\ndeep\n"
        mountpoint = cli(engine, "volume", "inspect", "-f", "{{.Mountpoint}}",
                         "e2v-seed").stdout.strip()
        assert (Path(mountpoint) / "seed.txt").read_text() == "changed\n"
        # Not empty any more: no second copy-up over the container's change.
        again = cli(engine, "run", "--rm", "-v", "e2v-seed:/data", seeded, "cat",
                    "/data/seed.txt").stdout
        assert again == "changed\n"
        # nocopy: an empty volume stays empty.
        empty = cli(engine, "run", "--rm", "-v", "e2v-nocopy:/data:nocopy", seeded, "ls",
                    "/data").stdout
        assert empty == ""
    finally:
        cli(engine, "volume", "rm", "-f", "e2v-seed", "e2v-nocopy", check=False)


def test_volumes_from_rm_v_and_in_use(engine: Any, docker: Any, seeded: str) -> None:
    import docker as docker_py

    try:
        cli(engine, "create", "--name", "e2v-src", "-v", "e2v-named:/named", seeded)
        src = docker.containers.get("e2v-src")
        anon = [m["Name"] for m in src.attrs["Mounts"] if m["Destination"] == "/data"]
        cli(engine, "start", "e2v-src")
        cli(engine, "wait", "e2v-src")
        anon = anon or [m["Name"] for m in docker.containers.get("e2v-src").attrs["Mounts"]
                        if m["Destination"] == "/data"]
        assert anon and len(anon[0]) == 64
        out = cli(engine, "run", "--rm", "--volumes-from", "e2v-src:ro", "busybox", "sh", "-c",
                  "cat /data/seed.txt; ls /named; touch /data/x || echo READONLY").stdout
        assert out == "seeded\nREADONLY\n"
        # In use by a container (even a stopped one): 409 from the API, as dockerd.
        with pytest.raises(docker_py.errors.APIError) as err:
            docker.volumes.get("e2v-named").remove()
        assert err.value.status_code == 409 and "volume is in use" in str(err.value)
        rm = cli(engine, "volume", "rm", anon[0], check=False)
        assert rm.returncode != 0 and "volume is in use" in rm.stderr
        cli(engine, "rm", "-v", "e2v-src")
        names = cli(engine, "volume", "ls", "-q").stdout.split()
        assert anon[0] not in names and "e2v-named" in names  # -v takes anonymous ones only
    finally:
        cli(engine, "rm", "-f", "-v", "e2v-src", check=False)
        cli(engine, "volume", "rm", "-f", "e2v-named", check=False)


def test_volume_prune_filters(engine: Any, docker: Any) -> None:
    import docker as docker_py

    try:
        cli(engine, "volume", "create", "--label", "tier=a", "e2p-a")
        cli(engine, "volume", "create", "--label", "tier=b", "e2p-b")
        cli(engine, "volume", "create", "e2p-used")
        cli(engine, "create", "--name", "e2p-holder", "-v", "e2p-used:/u", "busybox")
        anon = docker.api.create_volume(labels={"com.docker.volume.anonymous": ""})["Name"]
        # Default (API >= 1.42): anonymous volumes only.
        out = cli(engine, "volume", "prune", "-f").stdout
        assert anon in out and "e2p-a" not in out
        out = cli(engine, "volume", "prune", "-f", "-a", "--filter", "label=tier=a").stdout
        assert "e2p-a" in out and "e2p-b" not in out
        out = cli(engine, "volume", "prune", "-f", "-a", "--filter", "label!=tier=b").stdout
        assert "e2p-b" not in out and "e2p-used" not in out  # in use: never pruned
        # dockerd accepts only label, label! and all for volumes; so do we.
        with pytest.raises(docker_py.errors.APIError) as err:
            docker.volumes.prune(filters={"until": "1h"})
        assert err.value.status_code == 400 and "invalid filter 'until'" in str(err.value)
        names = cli(engine, "volume", "ls", "-q").stdout.split()
        assert "e2p-b" in names and "e2p-used" in names and "e2p-a" not in names
    finally:
        cli(engine, "rm", "-f", "e2p-holder", check=False)
        cli(engine, "volume", "rm", "-f", "e2p-a", "e2p-b", "e2p-used", check=False)


def test_network_prune_until_and_labels(engine: Any) -> None:
    try:
        cli(engine, "network", "create", "--label", "keep=yes", "e2p-keep")
        cli(engine, "network", "create", "e2p-old")
        # until: only networks created before the limit go (a minute ago: none of ours).
        out = cli(engine, "network", "prune", "-f", "--filter", "until=1m").stdout
        assert "e2p-old" not in out and "e2p-keep" not in out
        out = cli(engine, "network", "prune", "-f", "--filter", "label!=keep=yes").stdout
        assert "e2p-old" in out and "e2p-keep" not in out
        out = cli(engine, "network", "prune", "-f", "--filter", "until=2100-01-01T00:00:00",
                  "--filter", "label=keep").stdout
        assert "e2p-keep" in out
    finally:
        cli(engine, "network", "rm", "e2p-keep", "e2p-old", check=False)
