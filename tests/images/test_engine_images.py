"""Image listing and disk usage through a real engine and the docker CLI: intermediate build
images are hidden from ``docker images`` (``-a`` shows them) and are not dangling;
``GET /system/df`` reports real sizes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

DOCKERFILE = "FROM busybox\nENV STEP=1\nRUN echo built > /built\nLABEL listing=test\n"


def _docker(engine: Any, *argv: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "DOCKER_HOST": engine.url, "DOCKER_BUILDKIT": "0"}
    out = subprocess.run(["docker", *argv], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, f"docker {' '.join(argv)}: {out.stderr}"
    return out.stdout


def test_intermediate_images_hidden_and_not_dangling(engine: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    _docker(engine, "build", "-q", "-t", "listing:1", ".", cwd=tmp_path)
    try:
        top = set(_docker(engine, "images", "-q", "--no-trunc").split())
        every = set(_docker(engine, "images", "-a", "-q", "--no-trunc").split())
        final = _docker(engine, "image", "inspect", "-f", "{{.Id}}", "listing:1").strip()
        intermediates = every - top
        assert final in top and len(intermediates) >= 2  # ENV and RUN steps
        dangling = set(_docker(engine, "images", "-q", "--no-trunc", "-f",
                               "dangling=true").split())
        assert not dangling & intermediates
        _docker(engine, "image", "prune", "-f")
        assert intermediates <= set(_docker(engine, "images", "-a", "-q", "--no-trunc").split())
        # The tag's removal leaves the last step untagged and childless: dangling now.
        _docker(engine, "tag", "listing:1", "listing:keep")
        _docker(engine, "rmi", "listing:1")
        assert final in set(_docker(engine, "images", "-q", "--no-trunc").split())
    finally:
        _docker(engine, "rmi", "-f", "listing:keep")


def test_system_df_reports_real_sizes(engine: Any) -> None:
    name = "df-test"
    _docker(engine, "run", "--name", name, "-v", "dfvol:/vol", "busybox", "sh", "-c",
            "head -c 300000 /dev/zero > /big; head -c 5000 /dev/zero > /vol/v")
    try:
        status, df = engine.request("GET", "/system/df")
        assert status == 200
        assert df["BuildCache"] == []
        assert df["LayersSize"] > 0
        busybox = next(i for i in df["Images"] if "busybox:latest" in i["RepoTags"])
        assert busybox["Containers"] >= 1 and busybox["Size"] > 0
        assert 0 <= busybox["SharedSize"] <= busybox["Size"] <= df["LayersSize"]
        c = next(c for c in df["Containers"] if c["Names"] == [f"/{name}"])
        assert c["SizeRw"] >= 300000
        assert c["SizeRootFs"] == c["SizeRw"] + busybox["Size"]
        vol = next(v for v in df["Volumes"] if v["Name"] == "dfvol")
        assert vol["UsageData"] == {"Size": 5000, "RefCount": 1}
        assert "dfvol" in _docker(engine, "system", "df", "-v")
    finally:
        _docker(engine, "rm", "-f", name)
        _docker(engine, "volume", "rm", "dfvol")
