"""``login``/``logout`` and registry credentials in docker's ~/.docker/config.json format.

Credentials live under ``auths`` as ``{"<registry>": {"auth": base64("user:pass")}}``
so the real docker CLI and Cove share one login, unless a credential helper is configured:
``credHelpers`` (per registry) or ``credsStore`` (all others) name a
``docker-credential-<name>`` program that keeps the secret, spoken to with docker's
credential-helpers protocol; ``auths`` then keeps an empty entry per registry, as docker does.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from runtime.cli.base import Cli, CliError

INDEX_SERVER = "https://index.docker.io/v1/"
# What helpers print for an unknown server (docker-credential-helpers' ErrCredentialsNotFound).
NOT_FOUND = "credentials not found in native keychain"
# The username a helper stores an identity (refresh) token under.
TOKEN_USER = "<token>"


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def load_config() -> dict[str, Any]:
    try:
        data = json.loads(config_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CliError(f"loading config file {config_path()}: {e}") from e
    return data if isinstance(data, dict) else {}


def save_config(config: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent="\t") + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def registry_of(image: str) -> str:
    """The registry host of an image reference; Docker Hub's key for plain names."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return INDEX_SERVER


def _key(server: str | None) -> str:
    if not server or server in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        return INDEX_SERVER
    return server.removeprefix("https://").removeprefix("http://").rstrip("/")


class Helper:
    """One ``docker-credential-<name>`` program; the secret only ever crosses its stdin/stdout."""

    def __init__(self, name: str) -> None:
        self.program = f"docker-credential-{name}"

    def _run(self, action: str, stdin: str) -> str:
        try:
            proc = subprocess.run([self.program, action], input=stdin, capture_output=True,
                                  text=True, timeout=60, check=False)
        except FileNotFoundError:
            raise HelperError(f'exec: "{self.program}": executable file not found in $PATH',
                              "") from None
        except (OSError, subprocess.TimeoutExpired) as e:
            raise HelperError(str(e), "") from None
        if proc.returncode != 0:
            # Helpers report failures on stdout; stderr may echo what they were given.
            raise HelperError(f"exit status {proc.returncode}", proc.stdout.strip())
        return proc.stdout

    def store(self, server: str, username: str, secret: str) -> None:
        creds = {"ServerURL": server, "Username": username, "Secret": secret}
        try:
            self._run("store", json.dumps(creds))
        except HelperError as e:
            raise CliError(f"Error saving credentials: error storing credentials - {e}") from None

    def get(self, server: str) -> dict[str, str]:
        """The X-Registry-Auth payload the helper holds for *server* ({} when it has none)."""
        try:
            reply = json.loads(self._run("get", server))
        except HelperError as e:
            if e.output == NOT_FOUND:
                return {}
            raise
        except ValueError:
            raise HelperError("invalid JSON from the helper", "") from None
        if not isinstance(reply, dict) or not reply.get("Secret"):
            return {}
        if reply.get("Username") == TOKEN_USER:
            return {"identitytoken": str(reply["Secret"]), "serveraddress": server}
        return {"username": str(reply.get("Username") or ""), "password": str(reply["Secret"]),
                "serveraddress": server}

    def erase(self, server: str) -> None:
        try:
            self._run("erase", server)
        except HelperError as e:
            if e.output != NOT_FOUND:
                raise

    def list(self) -> dict[str, str]:
        """Server URL → username of everything the helper holds."""
        try:
            listed = json.loads(self._run("list", ""))
        except ValueError:
            raise HelperError("invalid JSON from the helper", "") from None
        return {str(k): str(v) for k, v in listed.items()} if isinstance(listed, dict) else {}


class HelperError(Exception):
    """A helper run that failed; the text follows docker's ``err: …, out: `…``` form."""

    def __init__(self, err: str, output: str) -> None:
        super().__init__(f"err: {err}, out: `{output}`")
        self.output = output


def load_auth_config() -> dict[str, Any]:
    """The config as docker's CLI loads it: with no login and no helper configured yet, the
    platform's helper becomes the store (and is saved with the next login), so a fresh
    config behaves the same under both CLIs."""
    config = load_config()
    if not (config.get("credsStore") or config.get("credHelpers") or config.get("auths")):
        default = _default_store()
        if default:
            config["credsStore"] = default
    return config


def _default_store() -> str:
    # docker's DetectDefaultStore on Linux: pass if installed, else secretservice,
    # and only when its docker-credential-* program is on PATH.
    name = "pass" if shutil.which("pass") else "secretservice"
    return name if shutil.which(f"docker-credential-{name}") else ""


def helper_for(config: dict[str, Any], server: str) -> Helper | None:
    """The helper that keeps *server*'s credentials: credHelpers first, then credsStore."""
    name = (config.get("credHelpers") or {}).get(server) or config.get("credsStore")
    return Helper(str(name)) if name else None


def auth_for(registry: str) -> dict[str, str]:
    """The X-Registry-Auth payload for a registry ({} when not logged in).

    A failing helper means an anonymous request, as with docker's CLI: the registry's
    own "access denied" then says more than the helper would.
    """
    server = _key(registry)
    config = load_auth_config()
    helper = helper_for(config, server)
    if helper is not None:
        try:
            return helper.get(server)
        except HelperError:
            return {}
    return _file_auth(config.get("auths", {}).get(server) or {}, server)


def all_auths() -> dict[str, dict[str, str]]:
    """Every stored login (X-Registry-Config for builds): the file's plus the helpers'."""
    config = load_auth_config()
    servers = set(config.get("auths") or {}) | set(config.get("credHelpers") or {})
    if config.get("credsStore"):
        with contextlib.suppress(HelperError):
            servers |= set(Helper(str(config["credsStore"])).list())
    out = {}
    for server in sorted(servers):
        with contextlib.suppress(HelperError):
            found = auth_for(server)
            if found:
                out[server] = found
    return out


def _file_auth(entry: dict[str, Any], server: str) -> dict[str, str]:
    if entry.get("identitytoken"):
        return {"identitytoken": str(entry["identitytoken"]), "serveraddress": server}
    raw = entry.get("auth")
    if not raw:
        return {}
    user, _, password = base64.b64decode(raw).decode().partition(":")
    return {"username": user, "password": password, "serveraddress": server}


def configure(verb: str, p: argparse.ArgumentParser) -> None:
    if verb == "login":
        p.add_argument("-u", "--username", help="Username")
        p.add_argument("-p", "--password", help="Password or Personal Access Token (PAT)")
        p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
        p.set_defaults(func=cmd_login)
    else:
        p.set_defaults(func=cmd_logout)
    p.add_argument("server", nargs="?", metavar="SERVER")


def cmd_login(cli: Cli, args: argparse.Namespace) -> int:
    password = args.password
    if args.password_stdin:
        if password:
            raise CliError("--password and --password-stdin are mutually exclusive")
        if not args.username:
            raise CliError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    username = args.username or input("Username: ").strip()
    if not password:
        import getpass

        password = getpass.getpass("Password: ")
    if not username or not password:
        raise CliError("Error: Username and password are required")
    server = _key(args.server)
    reply = cli.client.auth({"username": username, "password": password, "serveraddress": server})
    config = load_auth_config()
    helper = helper_for(config, server)
    if helper is not None:
        helper.store(server, username, password)
        entry: dict[str, str] = {}  # docker's marker that a login exists, kept in the helper
    else:
        entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    config.setdefault("auths", {})[server] = entry
    save_config(config)
    cli.print(reply.get("Status") or "Login Succeeded")
    return 0


def cmd_logout(cli: Cli, args: argparse.Namespace) -> int:
    server = _key(args.server)
    # docker also erases the scheme-qualified keys older clients saved a login under.
    keys = [server] if server == INDEX_SERVER else [server, f"http://{server}", f"https://{server}"]
    config = load_auth_config()
    auths = config.get("auths") or {}
    cli.print(f"Removing login credentials for {server}")
    for key in keys:
        helper = helper_for(config, key)
        if helper is not None:
            # Like docker, a helper that cannot erase does not fail the logout.
            with contextlib.suppress(HelperError):
                helper.erase(key)
        auths.pop(key, None)
    save_config(config)
    return 0
