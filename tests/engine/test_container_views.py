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


def _inspect_twice(docker: Any, cid: str) -> dict[str, Any]:
    """Inspect twice (the second one a cached reply, if any) and require the same answer."""
    first = docker.api.inspect_container(cid)
    assert docker.api.inspect_container(cid) == first
    return dict(first)


def test_inspect_follows_every_change_to_the_container(docker: Any) -> None:
    """Inspect replies are cached per container: each change must show at once."""
    net = docker.networks.create("cove-inspect-views")
    c = docker.containers.create("busybox", ["sleep", "60"], name="inspect-views-a")
    try:
        data = _inspect_twice(docker, c.id)
        assert (data["Name"], data["State"]["Status"]) == ("/inspect-views-a", "created")
        c.rename("inspect-views-b")
        assert _inspect_twice(docker, c.id)["Name"] == "/inspect-views-b"
        c.update(restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
        policy = _inspect_twice(docker, c.id)["HostConfig"]["RestartPolicy"]
        assert policy == {"Name": "on-failure", "MaximumRetryCount": 2}
        net.connect(c)  # a created container's endpoint config changes in place
        assert "cove-inspect-views" in _inspect_twice(docker, c.id)["NetworkSettings"]["Networks"]
        c.start()
        state = _inspect_twice(docker, c.id)["State"]
        assert state["Running"] and state["Pid"] > 0
        exec_id = docker.api.exec_create(c.id, ["true"])["Id"]
        assert _inspect_twice(docker, c.id)["ExecIDs"] == [exec_id]
        c.kill()
        assert docker.api.wait(c.id, timeout=30)["StatusCode"] == 137
        state = _inspect_twice(docker, c.id)["State"]
        assert (state["Running"], state["ExitCode"], state["Pid"]) == (False, 137, 0)
    finally:
        c.remove(force=True)
        net.remove()
