"""Desktop settings, persisted as JSON in the platform's config dir (platformdirs).

A missing or broken file gives the defaults (the app must always start);
writes are atomic (temp file + ``os.replace``) so a crash never leaves half a file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from runtime.api.transport import resolve_host

log = logging.getLogger(__name__)
APP = "cove"
FILE = "desktop.json"


def default_engine_command() -> list[str]:
    """How "Start engine" launches a local engine when none runs (Linux hosts)."""
    return [sys.executable, "-m", "runtime.engine"]


@dataclass(slots=True)
class Settings:
    host: str = field(default_factory=lambda: resolve_host(None))
    mode: str = "local"  # "local": an engine on this host; "vm": a Cove VM (vmhost)
    vm_name: str = "default"
    engine_command: list[str] = field(default_factory=default_engine_command)
    cpus: int = 2
    memory_gib: int = 4
    disk_gib: int = 60
    follow_tail: int = 500  # log lines fetched before following
    geometry: str = ""  # base64 QMainWindow geometry

    def resources(self) -> tuple[int, int, int]:
        return self.cpus, self.memory_gib, self.disk_gib


def config_dir() -> Path:
    if env := os.environ.get("COVE_DESKTOP_CONFIG"):
        return Path(env)
    return Path(platformdirs.user_config_path(APP))


def load(path: Path | None = None) -> Settings:
    path = path or config_dir() / FILE
    try:
        raw: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable settings %s: %s", path, e)
        return Settings()
    known = {f.name for f in dataclasses.fields(Settings)}
    values = {k: v for k, v in raw.items() if k in known} if isinstance(raw, dict) else {}
    try:
        return Settings(**values)
    except TypeError:
        return Settings()


def save(settings: Settings, path: Path | None = None) -> None:
    path = path or config_dir() / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(dataclasses.asdict(settings), indent=2).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".desktop-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
