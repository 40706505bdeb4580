"""Credential helpers (``credsStore``, ``credHelpers``) in ``cove login/logout/pull/push``,
against an htpasswd docker-registry and the real docker CLI sharing the same config.json.

The helpers are real programs on PATH: tests/images/credhelper.py installed as
``docker-credential-covetest``, and Debian's docker-credential-pass over a throwaway gpg key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.images.credhelper import install
from tests.images.layers import file, tar_bytes
from tests.images.registry import Registry, docker_archive, start_auth_registry

pytestmark = pytest.mark.registry

ROOT = Path(__file__).resolve().parents[2]
COVE = ROOT / ".venv" / "bin" / "cove"
PASSWORD = "helper-pw-5d2f-NEVER-PRINTED"
LAYER = tar_bytes([file("etc/helper-test", b"h"), file("bin/sh", b"#!", 0o755)])


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with tempfile.TemporaryDirectory(prefix="cove-credreg-") as tmp:
        reg = start_auth_registry(Path(tmp), "alice", PASSWORD, Path(tmp) / "registry")
        try:
            docker_archive(Path(tmp) / "one.tar", [LAYER], Cmd=["sh"])
            reg.push_archive(Path(tmp) / "one.tar", "private/one:1")
            yield reg
        finally:
            reg.stop()


@dataclass
class Client:
    """Both CLIs with one DOCKER_CONFIG and a PATH that starts at the helpers' directory."""

    engine: Any
    home: Path

    @property
    def bin(self) -> Path:
        return self.home / "bin"

    @property
    def config(self) -> Path:
        return self.home / "config" / "config.json"

    def write_config(self, value: dict[str, Any]) -> None:
        self.config.write_text(json.dumps(value))

    def read_config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config.read_text())
        return data

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.engine.url,
                "DOCKER_CONFIG": str(self.config.parent),
                "PATH": f"{self.bin}:{os.environ['PATH']}"}

    def run(self, *argv: str, stdin: str = "", env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(list(argv), input=stdin, env=env or self.env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
        assert PASSWORD not in out.stdout + out.stderr, "a secret was printed"
        return out

    def cove(self, *argv: str, stdin: str = "", env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
        return self.run(str(COVE), "-H", self.engine.url, *argv, stdin=stdin, env=env)

    def docker(self, *argv: str, stdin: str = "", env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
        return self.run("docker", *argv, stdin=stdin, env=env)

    def helper_store(self) -> dict[str, dict[str, str]]:
        path = self.bin / "store.json"
        data: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
        return data

    def calls(self) -> list[str]:
        path = self.bin / "calls.log"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def client(engine: Any) -> Iterator[Client]:
    with tempfile.TemporaryDirectory(prefix="cove-credhelper-") as tmp:
        c = Client(engine, Path(tmp))
        c.bin.mkdir()
        c.config.parent.mkdir()
        install(c.bin, "covetest")
        yield c
        assert PASSWORD not in c.config.read_text() if c.config.exists() else True
        assert PASSWORD not in engine.log_path.read_text(errors="replace")


def _login(c: Client, tool: str, host: str) -> subprocess.CompletedProcess[str]:
    run = c.cove if tool == "cove" else c.docker
    return run("login", host, "-u", "alice", "--password-stdin", stdin=PASSWORD)


def _pull(c: Client, tool: str, ref: str) -> subprocess.CompletedProcess[str]:
    return (c.cove if tool == "cove" else c.docker)("pull", ref)


def test_creds_store_login_pull_logout(client: Client, registry: Registry) -> None:
    client.write_config({"credsStore": "covetest"})
    ref = f"{registry.host}/private/one:1"
    login = _login(client, "cove", registry.host)
    assert login.returncode == 0 and login.stdout == "Login Succeeded\n", login.stderr
    # docker's layout: the secret lives in the helper, "auths" keeps an empty marker.
    assert client.read_config() == {"auths": {registry.host: {}}, "credsStore": "covetest"}
    assert client.helper_store() == {registry.host: {"Username": "alice", "Secret": PASSWORD}}
    pulled = _pull(client, "cove", ref)
    assert pulled.returncode == 0 and pulled.stdout.endswith(f"{ref}\n"), pulled.stderr
    assert f"get {registry.host}" in client.calls()
    # The docker CLI reads the same login through the same helper.
    client.cove("rmi", ref)
    assert _pull(client, "docker", ref).returncode == 0
    out = client.cove("logout", registry.host)
    assert out.returncode == 0 and out.stdout == f"Removing login credentials for {registry.host}\n"
    assert client.helper_store() == {}
    assert client.read_config() == {"auths": {}, "credsStore": "covetest"}
    client.cove("rmi", ref)
    denied = _pull(client, "cove", ref)
    assert denied.returncode != 0 and "pull access denied" in denied.stderr


@pytest.mark.parametrize(("first", "then"), [("docker", "cove"), ("cove", "docker")])
def test_one_login_serves_both_clis(client: Client, registry: Registry, first: str,
                                    then: str) -> None:
    client.write_config({"credsStore": "covetest"})
    ref = f"{registry.host}/private/one:1"
    assert _login(client, first, registry.host).returncode == 0
    assert client.read_config()["auths"] == {registry.host: {}}
    pulled = _pull(client, then, ref)
    assert pulled.returncode == 0, pulled.stderr
    client.cove("rmi", ref)
    logout = client.docker("logout", registry.host) if then == "docker" else \
        client.cove("logout", registry.host)
    assert logout.returncode == 0 and client.helper_store() == {}


def test_cred_helpers_pick_the_helper_per_registry(client: Client, registry: Registry) -> None:
    # credHelpers wins over credsStore for its registry; the store is never asked.
    client.write_config({"credsStore": "nosuch", "credHelpers": {registry.host: "covetest"}})
    assert _login(client, "cove", registry.host).returncode == 0
    assert client.helper_store()[registry.host]["Username"] == "alice"
    ref = f"{registry.host}/private/one:1"
    client.cove("tag", "busybox", f"{registry.host}/private/pushed:7")
    pushed = client.cove("push", f"{registry.host}/private/pushed:7")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.splitlines()[-1].startswith("7: digest: sha256:")
    assert _pull(client, "cove", ref).returncode == 0
    assert client.cove("logout", registry.host).returncode == 0
    assert client.helper_store() == {}
    client.cove("rmi", ref, f"{registry.host}/private/pushed:7")


def test_not_found_is_anonymous_and_logout_is_quiet(client: Client, registry: Registry) -> None:
    client.write_config({"credsStore": "covetest", "auths": {registry.host: {}}})
    denied = _pull(client, "cove", f"{registry.host}/private/one:1")
    assert denied.returncode != 0 and "pull access denied" in denied.stderr
    assert "native keychain" not in denied.stderr
    for tool in (client.cove, client.docker):
        out = tool("logout", registry.host)
        assert (out.returncode, out.stdout, out.stderr) == (
            0, f"Removing login credentials for {registry.host}\n", "")


def test_missing_helper_fails_login_like_docker(client: Client, registry: Registry) -> None:
    client.write_config({"credsStore": "nosuch"})
    ours, theirs = _login(client, "cove", registry.host), _login(client, "docker", registry.host)
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == theirs.stderr
    assert 'error storing credentials - err: exec: "docker-credential-nosuch"' in ours.stderr
    assert client.read_config() == {"credsStore": "nosuch"}  # nothing half-saved


def test_file_store_prints_like_docker(client: Client, registry: Registry) -> None:
    # A non-empty "auths" keeps an installed docker-credential-pass from becoming the default.
    client.write_config({"auths": {"unused.invalid": {}}})
    ours, theirs = _login(client, "cove", registry.host), _login(client, "docker", registry.host)
    assert ours.returncode == theirs.returncode == 0
    assert (ours.stdout, ours.stderr) == (theirs.stdout, theirs.stderr)
    assert "auth" in client.read_config()["auths"][registry.host]


def test_list_feeds_build_auths(client: Client, registry: Registry,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.cli.auth import all_auths

    client.write_config({"credsStore": "covetest"})
    assert _login(client, "docker", registry.host).returncode == 0
    for key, value in client.env().items():
        monkeypatch.setenv(key, value)
    found = all_auths()
    assert found == {registry.host: {"username": "alice", "password": PASSWORD,
                                     "serveraddress": registry.host}}
    assert "list " in client.calls()


@pytest.fixture
def pass_store(client: Client) -> Iterator[dict[str, str]]:
    """docker-credential-pass over a new gpg key with no passphrase (gpg-agent is headless)."""
    for program in ("docker-credential-pass", "pass", "gpg"):
        if not shutil.which(program):
            pytest.skip(f"{program} is not installed (Debian: golang-docker-credential-helpers,"
                        " pass, gnupg)")
    gnupg = client.home / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**client.env(), "GNUPGHOME": str(gnupg),
           "PASSWORD_STORE_DIR": str(client.home / "pass")}
    try:
        subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                        "--quick-gen-key", "cove-test <cove@test.invalid>", "default",
                        "default", "never"], env=env, check=True, capture_output=True)
        keys = subprocess.run(["gpg", "--list-keys", "--with-colons"], env=env, check=True,
                              capture_output=True, text=True).stdout
        fingerprint = next(line.split(":")[9] for line in keys.splitlines()
                           if line.startswith("fpr:"))
        subprocess.run(["pass", "init", fingerprint], env=env, check=True, capture_output=True)
        yield env
    finally:
        # The agent outlives gpg; it is ours, in our GNUPGHOME.
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False,
                       capture_output=True)


def test_docker_credential_pass(client: Client, registry: Registry,
                                pass_store: dict[str, str]) -> None:
    # No credsStore: both CLIs default to pass when it is installed, as docker does.
    ref = f"{registry.host}/private/one:1"
    login = client.cove("login", registry.host, "-u", "alice", "--password-stdin",
                        stdin=PASSWORD, env=pass_store)
    assert login.returncode == 0, login.stderr
    assert client.read_config() == {"auths": {registry.host: {}}, "credsStore": "pass"}
    stored = subprocess.run(["pass", "ls"], env=pass_store, capture_output=True, text=True)
    assert "docker-credential-helpers" in stored.stdout
    assert client.cove("pull", ref, env=pass_store).returncode == 0
    client.cove("rmi", ref, env=pass_store)
    assert client.docker("pull", ref, env=pass_store).returncode == 0
    assert client.cove("logout", registry.host, env=pass_store).returncode == 0
    listed = subprocess.run(["docker-credential-pass", "list"], env=pass_store,
                            capture_output=True, text=True)
    assert json.loads(listed.stdout or "{}") == {}
    client.cove("rmi", ref, env=pass_store)
