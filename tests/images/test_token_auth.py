"""The Bearer token flow against the real docker-registry (``auth: token``) and our token
server: anonymous denied, pull/push with credentials, login through the engine with the
docker CLI and ``cove login``, and no password in the engine's log or errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.api.errors import CoveError, NotFound
from runtime.api.reference import parse
from runtime.images.registry.auth import Credentials, Unauthorized, login
from runtime.images.registry.pull import pull_messages
from runtime.images.registry.push import push_messages
from runtime.images.store import ImageStore
from tests.images.layers import file, tar_bytes
from tests.images.registry import Registry, docker_archive, start_registry
from tests.images.tokenserver import TokenServer

pytestmark = pytest.mark.registry

PASSWORD = "pw-7c1e-NEVER-LOGGED"
LAYER = tar_bytes([file("etc/token-test", b"hello"), file("bin/sh", b"#!", 0o755)])
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokens() -> Iterator[TokenServer]:
    server = TokenServer({"alice": PASSWORD})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tokens: TokenServer
             ) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("tokenreg")
    reg = start_registry(tmp / "registry", tokens.registry_auth(tmp / "signer.pem"))
    reg.user, reg.password = "alice", PASSWORD
    try:
        docker_archive(tmp / "one.tar", [LAYER], Cmd=["sh"])
        reg.push_archive(tmp / "one.tar", "private/one:1")  # skopeo through the token flow
        yield reg
    finally:
        reg.stop()


def _pull(store: ImageStore, ref: str, creds: Credentials | None) -> list[dict[str, Any]]:
    return list(pull_messages(store, parse(ref), creds))


def test_anonymous_pull_is_denied(store: ImageStore, registry: Registry,
                                  tokens: TokenServer) -> None:
    with pytest.raises(NotFound, match=r"pull access denied for .*may require 'docker login'"):
        _pull(store, f"{registry.host}/private/one:1", None)
    assert any(r.startswith("- repository:private/one:pull") for r in tokens.requests)
    assert not store.list()


def test_pull_with_credentials(store: ImageStore, registry: Registry) -> None:
    msgs = _pull(store, f"{registry.host}/private/one:1", Credentials("alice", PASSWORD))
    assert "Downloaded newer image" in msgs[-1]["status"]
    image = store.get(f"{registry.host}/private/one:1")
    assert image.config["config"]["Cmd"] == ["sh"]


def test_wrong_password_is_refused_without_echoing_it(store: ImageStore,
                                                      registry: Registry) -> None:
    with pytest.raises(Unauthorized) as err:
        _pull(store, f"{registry.host}/private/one:1", Credentials("alice", "wrong-" + PASSWORD))
    assert "incorrect username or password" in str(err.value.message)
    assert PASSWORD not in repr(err.value) and PASSWORD not in str(err.value.message)


def test_push_with_credentials(store: ImageStore, registry: Registry,
                               tokens: TokenServer) -> None:
    creds = Credentials("alice", PASSWORD)
    _pull(store, f"{registry.host}/private/one:1", creds)
    store.tag(f"{registry.host}/private/one:1", f"{registry.host}/private/copy:2")
    with pytest.raises(CoveError):  # anonymous push: the token grants nothing
        list(push_messages(store, parse(f"{registry.host}/private/copy:2"), None))
    msgs = list(push_messages(store, parse(f"{registry.host}/private/copy:2"), creds))
    assert any("Mounted from private/one" in str(m.get("status")) or
               "already exists" in str(m.get("status")) for m in msgs)
    assert registry.inspect("private/copy:2")["Digest"] == msgs[-1]["aux"]["Digest"]
    # One token for push to the target plus pull from the mount source.
    assert any("repository:private/copy:pull,push" in r and "repository:private/one:pull" in r
               for r in tokens.requests if r.startswith("alice"))


def test_login_checks_credentials(store: ImageStore, registry: Registry) -> None:
    login(store, Credentials("alice", PASSWORD, server=registry.host))
    with pytest.raises(Unauthorized, match="incorrect username or password"):
        login(store, Credentials("alice", "nope", server=registry.host))


def test_docker_and_cove_login_through_the_engine(engine: Any, registry: Registry,
                                                  tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": engine.url, "COVE_HOST": engine.url,
           "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    # This test is about the file store: an "auths" key stops both CLIs from making an
    # installed docker-credential-pass the default store.
    (tmp_path / "docker-config").mkdir()
    (tmp_path / "docker-config" / "config.json").write_text('{"auths": {"unused.invalid": {}}}')

    def run(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), input=stdin, env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=120, check=False)

    bad = run("docker", "login", registry.host, "-u", "alice", "--password-stdin", stdin="nope")
    assert bad.returncode != 0 and "incorrect username or password" in bad.stderr
    ok = run("docker", "login", registry.host, "-u", "alice", "--password-stdin", stdin=PASSWORD)
    assert ok.returncode == 0 and "Login Succeeded" in ok.stdout, ok.stderr
    # The CLI now sends the stored credentials in X-Registry-Auth.
    pulled = run("docker", "pull", f"{registry.host}/private/one:1")
    assert pulled.returncode == 0, pulled.stderr
    run("docker", "logout", registry.host)
    denied = run("docker", "pull", f"{registry.host}/private/one:1")
    # A pull always resolves the tag at the registry, now anonymously.
    assert denied.returncode != 0 and "pull access denied" in denied.stderr, denied.stderr
    cove = run(sys.executable, "-m", "runtime.cli.main", "login", registry.host, "-u", "alice",
               "--password-stdin", stdin=PASSWORD)
    assert cove.returncode == 0 and "Login Succeeded" in cove.stdout, cove.stderr
    run("docker", "rmi", f"{registry.host}/private/one:1")
    for out in (bad, ok, pulled, cove):
        assert PASSWORD not in out.stdout + out.stderr
    assert PASSWORD not in engine.log_path.read_text(errors="replace")
