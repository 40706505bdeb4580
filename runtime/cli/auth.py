"""``login``/``logout`` and registry credentials in docker's ~/.docker/config.json format.

Credentials live under ``auths`` as ``{"<registry>": {"auth": base64("user:pass")}}``
so the real docker CLI and Cove share one login. Credential helpers
(``credsStore``) are not supported: a helper-configured entry is left untouched.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from runtime.cli.base import Cli, CliError

INDEX_SERVER = "https://index.docker.io/v1/"


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


def auth_for(registry: str) -> dict[str, str]:
    """The X-Registry-Auth payload for a registry ({} when not logged in)."""
    entry = load_config().get("auths", {}).get(_key(registry)) or {}
    raw = entry.get("auth")
    if not raw:
        return {}
    user, _, password = base64.b64decode(raw).decode().partition(":")
    return {"username": user, "password": password, "serveraddress": _key(registry)}


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
    config = load_config()
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    config.setdefault("auths", {})[server] = {"auth": token}
    save_config(config)
    cli.print(reply.get("Status") or "Login Succeeded")
    return 0


def cmd_logout(cli: Cli, args: argparse.Namespace) -> int:
    server = _key(args.server)
    config = load_config()
    auths = config.get("auths", {})
    if server not in auths:
        cli.print(f"Not logged in to {server}")
        return 0
    del auths[server]
    save_config(config)
    cli.print(f"Removing login credentials for {server}")
    return 0
