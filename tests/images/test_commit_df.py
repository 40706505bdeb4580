"""``POST /commit`` pauses a running container (``pause``, default true) so a commit under
write load is one instant; ``GET /system/df?type=`` (API 1.42) reports only what was asked."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.root

# Rewrites one file forever; ">" truncates it first, so an unfrozen reader can find it
# shorter than the size it just saw, and a tar of it fails or is torn.
WRITER = "i=0; while :; do i=$((i+1)); head -c 2000000 /dev/zero > /churn; echo $i > /n; done"


def docker(engine: Any, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["docker", *argv], env={**os.environ, "DOCKER_HOST": engine.url},
                         capture_output=True, text=True, timeout=120, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(argv)}: {out.stderr}")
    return out


@pytest.fixture
def writer(engine: Any) -> Iterator[str]:
    name = f"commit-writer-{os.getpid()}"
    docker(engine, "run", "-d", "--name", name, "busybox", "sh", "-c", WRITER)
    try:
        yield name
    finally:
        docker(engine, "rm", "-f", name, check=False)


def _events(engine: Any, since: float, container: str) -> list[str]:
    query = urllib.parse.urlencode({"since": f"{since:.3f}", "until": f"{time.time():.3f}",
                                    "filters": f'{{"container":["{container}"]}}'})
    status, body = engine.request("GET", f"/events?{query}")
    assert status == 200
    # The harness parses a one-event body as JSON; more events come back as raw lines.
    raw = body if isinstance(body, bytes) else json.dumps(body).encode() if body else b""
    actions = [str(json.loads(line)["Action"]) for line in raw.splitlines() if line.strip()]
    return [a for a in actions if a in ("pause", "commit", "unpause")]


def test_commit_under_write_load_is_consistent(engine: Any, writer: str) -> None:
    time.sleep(0.5)  # the writer is churning
    images = [f"commit-load:{i}" for i in range(6)]
    try:
        since = time.time()
        for image in images:
            docker(engine, "commit", writer, image)
        # Paused for the read, running again after each commit, as docker does.
        assert _events(engine, since - 0.01, writer) == ["pause", "commit", "unpause"] * 6
        assert docker(engine, "inspect", "-f", "{{.State.Status}}", writer).stdout == "running\n"
        for image in images:
            # The layer unpacks and /churn is whole at the size its header recorded.
            out = docker(engine, "run", "--rm", image, "sh", "-c",
                         "wc -c < /churn; tr -d '\\0' < /churn | wc -c; cat /n").stdout.split()
            assert int(out[0]) <= 2000000 and out[1] == "0"
            assert out[2:] == [] or out[2].isdigit()  # /n may be caught just truncated
    finally:
        docker(engine, "rmi", *images, check=False)


def test_commit_without_pause_leaves_it_running(engine: Any) -> None:
    name = f"commit-nopause-{os.getpid()}"
    docker(engine, "run", "-d", "--name", name, "busybox", "sleep", "60")
    try:
        since = time.time()
        status, body = engine.request("POST", f"/commit?container={name}&pause=0")
        assert status == 201, body
        assert _events(engine, since - 0.01, name) == ["commit"]
        engine.request("DELETE", f"/images/{body['Id']}")
        # A stopped container commits without a pause either.
        docker(engine, "stop", "-t", "0", name)
        since = time.time()
        status, body = engine.request("POST", f"/commit?container={name}")
        assert status == 201 and _events(engine, since - 0.01, name) == ["commit"]
        engine.request("DELETE", f"/images/{body['Id']}")
    finally:
        docker(engine, "rm", "-f", name, check=False)


def test_system_df_type_filter(engine: Any) -> None:
    status, whole = engine.request("GET", "/v1.44/system/df")
    assert status == 200 and isinstance(whole["Images"], list)
    status, only = engine.request("GET", "/v1.44/system/df?type=volume&type=container")
    assert status == 200
    assert only["Images"] is None and only["BuildCache"] is None and only["LayersSize"] == 0
    assert isinstance(only["Containers"], list) and isinstance(only["Volumes"], list)
    status, images = engine.request("GET", "/v1.44/system/df?type=image")
    assert images["Containers"] is None and images["Volumes"] is None
    assert images["LayersSize"] == whole["LayersSize"] > 0
    assert {i["Id"] for i in images["Images"]} == {i["Id"] for i in whole["Images"]}
    status, cache = engine.request("GET", "/v1.44/system/df?type=build-cache")
    assert cache["BuildCache"] == [] and cache["Images"] is None
    status, body = engine.request("GET", "/v1.44/system/df?type=bogus")
    assert status == 400 and body["message"] == "unknown object type: bogus"
    # Before 1.42 the parameter is ignored: everything comes back.
    status, old = engine.request("GET", "/v1.41/system/df?type=image")
    assert isinstance(old["Containers"], list) and isinstance(old["Volumes"], list)
    # The docker CLI's own view still works.
    assert "Images" in docker(engine, "system", "df").stdout
