"""Classic-builder behaviours docker-py's suite checks, as moby has them: RUN's stderr in red,
``extrahosts`` in RUN containers, the ``--cache-from`` image cache, and FROM pulls that take
their login from X-Registry-Config (``cove build`` and the docker CLI, credential helpers too).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.build.options import HUB_AUTH_KEY, resolve_auth
from runtime.engine.routes_build import registry_config
from runtime.images.registry.auth import Credentials
from tests.images.credhelper import install
from tests.images.layers import file, tar_bytes
from tests.images.registry import Registry, docker_archive, start_auth_registry

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
COVE = ROOT / ".venv" / "bin" / "cove"
RED, RESET = "\x1b[91m", "\x1b[0m"
PASSWORD = "build-pw-91c4-NEVER-PRINTED"


def errors(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["error"] for m in msgs if "error" in m]


def sh(docker: Any, image: str, script: str) -> str:
    out: bytes = docker.containers.run(image, ["sh", "-c", script], entrypoint=[],
                                       network_mode="none", remove=True)
    return out.decode()


# -- RUN output ------------------------------------------------------------------------

def test_run_stderr_is_wrapped_in_red_stdout_is_not(build: Any) -> None:
    df = "FROM busybox\nRUN echo to-out; echo to-err >&2; echo out-again\n"
    msgs, _, image = build({"Dockerfile": df}, nocache=True)
    streams = [m.get("stream") for m in msgs]
    assert image and not errors(msgs)
    assert f"{RED}to-err\n{RESET}" in streams  # moby's NewStderrWriter: one message a chunk
    assert "to-out\n" in streams and "out-again\n" in streams
    assert not any(RED in s for s in streams if s and "to-err" not in s)


# -- extrahosts ------------------------------------------------------------------------

def test_extra_hosts_reach_run_containers_not_the_image(build: Any, docker: Any) -> None:
    df = ("FROM busybox\nRUN ping -c1 -W2 extra.build.test\n"
          "RUN cp /etc/hosts /hosts-copy\n")
    msgs, _, image = build({"Dockerfile": df}, nocache=True,
                           extra_hosts={"extra.build.test": "127.0.0.1",
                                        "other.build.test": "10.1.2.3"})
    assert image and not errors(msgs), errors(msgs)
    copy = sh(docker, image, "cat /hosts-copy")
    assert "127.0.0.1\textra.build.test" in copy and "10.1.2.3\tother.build.test" in copy
    # The entries were the RUN containers' own: a container of the image does not get them.
    assert "extra.build.test" not in sh(docker, image, "cat /etc/hosts")
    # Without them the RUN container's /etc/hosts does not have the name.
    msgs, _, _ = build({"Dockerfile": "FROM busybox\nRUN grep extra.build.test /etc/hosts\n"},
                       nocache=True)
    assert errors(msgs) == ["The command '/bin/sh -c grep extra.build.test /etc/hosts' "
                            "returned a non-zero code: 1"]


# -- --cache-from ----------------------------------------------------------------------

def _cached(text: str) -> int:
    return text.count(" ---> Using cache")


def test_cache_from_semantics(build: Any, docker: Any) -> None:
    base = "FROM busybox\nENV CF=parity\nRUN echo one > /one\n"
    longer = base + "RUN echo two > /two\n"
    _, _, short_image = build({"Dockerfile": base}, tag="cove-cachefrom-short")
    _, text, long_image = build({"Dockerfile": longer}, tag="cove-cachefrom-long")
    try:
        assert short_image and long_image and _cached(text) == 2  # the local cache, as usual
        _cache_from_cases(build, short_image, long_image, longer)
    finally:
        docker.api.remove_image("cove-cachefrom-long")
        docker.api.remove_image("cove-cachefrom-short")


def _cache_from_cases(build: Any, short_image: str, long_image: str, longer: str) -> None:
    # A source that is the image itself: every step, the same image; by ID or by tag.
    _, text, again = build({"Dockerfile": longer}, cache_from=[long_image])
    assert _cached(text) == 3 and again == long_image
    _, text, again = build({"Dockerfile": longer}, cache_from=["cove-cachefrom-long"])
    assert _cached(text) == 3 and again == long_image

    # Only a missing source: nothing counts as cached, not even the local cache's steps.
    _, text, fresh = build({"Dockerfile": longer}, cache_from=["cove-no-such-image:nope"])
    assert _cached(text) == 0 and fresh != long_image
    # A missing source beside a real one is skipped.
    _, text, again = build({"Dockerfile": longer},
                           cache_from=["cove-no-such-image:nope", long_image])
    assert _cached(text) == 3 and again == long_image

    # A source that is a shorter build: the steps in its chain are cached, the one after is
    # not, though the local cache has it (moby: a local hit must be in a source's chain).
    _, text, rebuilt = build({"Dockerfile": longer}, cache_from=[short_image])
    assert _cached(text) == 2 and rebuilt not in (long_image, None)

    # An unrelated source (busybox itself: none of these steps is in its chain).
    _, text, _ = build({"Dockerfile": longer}, cache_from=["busybox"])
    assert _cached(text) == 0

    # --no-cache wins over --cache-from.
    _, text, _ = build({"Dockerfile": longer}, cache_from=[long_image], nocache=True)
    assert _cached(text) == 0


def test_cache_from_history_of_an_image_without_its_chain(build: Any, docker: Any) -> None:
    """A loaded image (no parent chain here): its history stands in for each step."""
    df = "FROM busybox\nRUN echo hist > /hist\nENV H=1\nRUN echo more > /more\n"
    _, _, image = build({"Dockerfile": df})
    assert image
    saved = b"".join(docker.images.get(image).save())
    docker.api.remove_image(image, force=True)
    docker.images.load(saved)
    _, text, again = build({"Dockerfile": df}, cache_from=[image])
    assert _cached(text) == 3 and again == image
    # A different last step: the first two come from the history, the third is built.
    _, text, other = build({"Dockerfile": df.replace("more", "other")}, cache_from=[image])
    assert _cached(text) == 2 and other != image
    assert sh(docker, str(other), "cat /hist /other") == "hist\nother\n"


# -- X-Registry-Config -----------------------------------------------------------------

def test_registry_config_header_and_auth_resolution() -> None:
    import base64

    raw = {"127.0.0.1:5000": {"username": "u", "password": "p",
                              "serveraddress": "127.0.0.1:5000"},
           "https://reg.example:443/v2/": {"auth": base64.b64encode(b"v:q").decode()},
           HUB_AUTH_KEY: {"identitytoken": "tok"}, "bad": "not-a-dict"}
    header = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    auths = registry_config(header)
    assert set(auths) == {"127.0.0.1:5000", "https://reg.example:443/v2/", HUB_AUTH_KEY}
    assert resolve_auth(auths, "127.0.0.1:5000") == Credentials("u", "p", "127.0.0.1:5000")
    assert resolve_auth(auths, "reg.example:443") == Credentials("v", "q")
    hub = resolve_auth(auths, "docker.io")
    assert hub is not None and hub.identity_token == "tok"
    assert resolve_auth(auths, "elsewhere:5000") is None
    assert registry_config("%%%") == {} and registry_config("") == {}


@pytest.fixture(scope="module")
def private_registry() -> Iterator[Registry]:
    with tempfile.TemporaryDirectory(prefix="cove-buildreg-") as tmp:
        reg = start_auth_registry(Path(tmp), "alice", PASSWORD, Path(tmp) / "registry")
        try:
            layer = tar_bytes([file("etc/private-base", b"secret base\n")])
            docker_archive(Path(tmp) / "base.tar", [layer], Cmd=["sh"])
            reg.push_archive(Path(tmp) / "base.tar", "private/base:1")
            yield reg
        finally:
            reg.stop()


@pytest.mark.registry
@pytest.mark.parametrize("tool", ["cove", "docker"])
def test_from_private_registry_with_helper_login(engine: Any, docker: Any,
                                                  private_registry: Registry,
                                                  tool: str) -> None:
    """The login lives in a credential helper; the client sends it in X-Registry-Config."""
    ref = f"{private_registry.host}/private/base:1"
    with tempfile.TemporaryDirectory(prefix="cove-buildauth-") as tmp:
        home = Path(tmp)
        (home / "bin").mkdir()
        (home / "config").mkdir()
        (home / "ctx").mkdir()
        install(home / "bin", "covebuild")
        (home / "config" / "config.json").write_text(json.dumps({"credsStore": "covebuild"}))
        (home / "ctx" / "Dockerfile").write_text(
            f"FROM {ref} AS private\nFROM busybox\n"
            "COPY --from=private /etc/private-base /copied\n")
        env = {**os.environ, "DOCKER_HOST": engine.url, "DOCKER_BUILDKIT": "0",
               "DOCKER_CONFIG": str(home / "config"),
               "PATH": f"{home / 'bin'}:{os.environ['PATH']}"}
        argv = [str(COVE), "-H", engine.url] if tool == "cove" else ["docker"]

        def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            out = subprocess.run([*argv, *args], input=stdin, env=env, capture_output=True,
                                 text=True, timeout=120, check=False)
            assert PASSWORD not in out.stdout + out.stderr
            return out

        tag = f"cove-private-build-{tool}"
        denied = run("build", "-t", tag, str(home / "ctx"))
        assert denied.returncode != 0
        assert "pull access denied" in denied.stderr + denied.stdout, denied.stderr
        login = run("login", private_registry.host, "-u", "alice", "--password-stdin",
                    stdin=PASSWORD)
        assert login.returncode == 0, login.stderr
        # Only the helper has the secret: the config's "auths" keeps an empty marker.
        assert PASSWORD not in (home / "config" / "config.json").read_text()
        built = run("build", "-t", tag, str(home / "ctx"))
        try:
            assert built.returncode == 0, built.stderr + built.stdout
            assert sh(docker, tag, "cat /copied") == "secret base\n"
        finally:
            for name in (tag, ref):
                subprocess.run([*argv, "rmi", "-f", name], env=env, capture_output=True,
                               check=False)
    assert PASSWORD not in engine.log_path.read_text(errors="replace")
