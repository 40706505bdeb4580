"""Container list and inspect views: health in both, from the container's or the image's
healthcheck (the image config is cached by image ID), and none without one."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.root

FAST = {"interval": 200_000_000, "timeout": 2_000_000_000, "retries": 1}


def _ps_status(docker: Any, cid: str) -> str:
    rows = docker.api.containers(all=True, filters={"id": cid})
    assert len(rows) == 1
    return str(rows[0]["Status"])


def _wait_health(docker: Any, cid: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = docker.api.inspect_container(cid)["State"]
        if state.get("Health", {}).get("Status") == want:
            return dict(state["Health"])
        time.sleep(0.1)
    raise AssertionError(f"health never became {want}: {state}")


def test_container_healthcheck_shows_in_inspect_and_ps(docker: Any) -> None:
    good = docker.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none",
                                 healthcheck={"test": ["CMD", "true"], **FAST})
    bad = docker.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none",
                                healthcheck={"test": ["CMD", "false"], **FAST})
    plain = docker.containers.run("busybox", ["sleep", "60"], detach=True,
                                  network_mode="none")
    try:
        assert _wait_health(docker, good.id, "healthy")["FailingStreak"] == 0
        assert _ps_status(docker, good.id).endswith(" (healthy)")
        assert _wait_health(docker, bad.id, "unhealthy")["FailingStreak"] >= 1
        assert _ps_status(docker, bad.id).endswith(" (unhealthy)")
        assert "Health" not in docker.api.inspect_container(plain.id)["State"]
        assert _ps_status(docker, plain.id).startswith("Up ")
        assert "(" not in _ps_status(docker, plain.id)
    finally:
        for c in (good, bad, plain):
            c.remove(force=True)


def test_image_healthcheck_applies_and_goes_with_the_image(docker: Any) -> None:
    base = docker.containers.create("busybox", ["true"], network_mode="none")
    image = base.commit("cove-test-health", "v1", conf={
        "Healthcheck": {"Test": ["CMD-SHELL", "exit 0"], "Interval": FAST["interval"],
                        "Retries": 1}})
    base.remove()
    c = docker.containers.run("cove-test-health:v1", ["sleep", "60"], detach=True,
                              network_mode="none")
    try:
        assert docker.images.get(image.id).attrs["Config"]["Healthcheck"]["Test"] == [
            "CMD-SHELL", "exit 0"]
        _wait_health(docker, c.id, "healthy")
        assert _ps_status(docker, c.id).endswith(" (healthy)")
    finally:
        c.remove(force=True)
        docker.images.remove(image.id, force=True)
