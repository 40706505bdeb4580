"""A docker credential helper (the docker-credential-helpers protocol) over a JSON file.

Tests install it as ``<tmp>/docker-credential-<name>`` (``install``) with its store beside
it, so the docker CLI and ``cove`` run it exactly as they run docker-credential-pass:
``store`` reads {"ServerURL","Username","Secret"} on stdin, ``get``/``erase`` read a server
URL, ``list`` prints {server: username}; failures go to stdout with exit status 1.
Every call is appended to ``calls.log`` (action and server, never the secret).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NOT_FOUND = "credentials not found in native keychain"


def install(directory: Path, name: str) -> Path:
    """Write the helper as an executable ``docker-credential-<name>`` into *directory*."""
    program = directory / f"docker-credential-{name}"
    program.write_text(f"#!{sys.executable}\n" + Path(__file__).read_text())
    program.chmod(0o700)
    return program


def _load(path: Path) -> dict[str, dict[str, str]]:
    try:
        data: dict[str, dict[str, str]] = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return data


def _save(path: Path, data: dict[str, dict[str, str]]) -> None:
    path.write_text(json.dumps(data))
    path.chmod(0o600)


def _fail(message: str) -> int:
    print(message)
    return 1


def main(argv: list[str]) -> int:
    here = Path(argv[0]).resolve().parent
    store = here / "store.json"
    action = argv[1] if len(argv) > 1 else ""
    data = _load(store)
    stdin = sys.stdin.read()
    with open(here / "calls.log", "a") as log:
        server = "" if action in ("store", "list") else stdin.strip()
        log.write(f"{action} {server}\n")
    if action == "store":
        creds = json.loads(stdin)
        if not creds.get("ServerURL"):
            return _fail("no credentials server URL")
        data[creds["ServerURL"]] = {"Username": creds["Username"], "Secret": creds["Secret"]}
        _save(store, data)
        return 0
    if action == "get":
        entry = data.get(stdin.strip())
        if entry is None:
            return _fail(NOT_FOUND)
        print(json.dumps({"ServerURL": stdin.strip(), **entry}))
        return 0
    if action == "erase":
        if data.pop(stdin.strip(), None) is None:
            return _fail(NOT_FOUND)
        _save(store, data)
        return 0
    if action == "list":
        print(json.dumps({url: entry["Username"] for url, entry in data.items()}))
        return 0
    return _fail(f"unknown credential action `{action}`")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
