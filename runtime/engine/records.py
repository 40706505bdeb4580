"""The engine's record of one container: what was asked (config) and where it is (state).

``config.json`` holds the Docker-facing definition and changes only on
create, rename and update; ``state.json`` holds the lifecycle status and is
rewritten atomically on every transition, so a crash leaves one or the other
version whole. Mutations happen under ``Container.lock``.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from runtime import layout
from runtime.engine.state import RUNNING_LIKE, Status
from runtime.fsutil import read_json, write_json_atomic
from runtime.spec import Mount, to_json

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_ADJECTIVES = (
    "brave calm clever eager fancy gentle happy jolly keen lively merry nifty proud "
    "quirky serene sharp sleepy sunny swift tender vivid witty zen bold bright crisp"
).split()
_NAMES = (
    "turing lovelace hopper ritchie thompson torvalds knuth dijkstra lamport liskov "
    "hamilton curie noether babbage shannon kay pike cerf backus wirth"
).split()


def random_name() -> str:
    return f"{random.choice(_ADJECTIVES)}_{random.choice(_NAMES)}"


@dataclass
class Container:
    id: str
    name: str
    created_ns: int
    image_ref: str
    image_id: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    networking_config: dict[str, Any]
    directory: Path
    # state
    status: Status = Status.CREATED
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at_ns: int = 0
    finished_at_ns: int = 0
    restart_count: int = 0
    manually_stopped: bool = False
    mounts_info: list[dict[str, Any]] = field(default_factory=list)
    spec_mounts: tuple[Mount, ...] = ()
    network_settings: dict[str, Any] = field(default_factory=dict)
    # in memory only
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    changed: threading.Condition = field(init=False, repr=False)
    exits: int = 0  # bumped on every exit, for wait?condition=next-exit
    removed: bool = False
    exec_ids: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    # Bumped on every attribute assignment (state, config, networks, mounts): what
    # caches derived from the record compare. Not a dataclass field, so not persisted.
    version: ClassVar[int] = 0

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        object.__setattr__(self, "version", self.version + 1)

    @property
    def running(self) -> bool:
        return self.status in RUNNING_LIKE

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def log_path(self) -> Path:
        return self.directory / layout.log_file_name(self.id)

    # Both container records skip the directory fsync, as moby's AtomicWriteFile does: a crash may
    # bring back the previous whole file, never a torn one, and every lifecycle step (and the
    # events clients wait on) is spared a second fsync.
    def save_config(self) -> None:
        write_json_atomic(
            self.directory / layout.CONTAINER_CONFIG,
            {
                "Id": self.id,
                "Name": self.name,
                "Created": self.created_ns,
                "Image": self.image_ref,
                "ImageID": self.image_id,
                "Config": self.config,
                "HostConfig": self.host_config,
                "NetworkingConfig": self.networking_config,
            },
            sync_dir=False,
        )

    def save_state(self) -> None:
        write_json_atomic(
            self.directory / layout.CONTAINER_STATE,
            {
                "Status": self.status.value,
                "Pid": self.pid,
                "ExitCode": self.exit_code,
                "OOMKilled": self.oom_killed,
                "Error": self.error,
                "StartedAt": self.started_at_ns,
                "FinishedAt": self.finished_at_ns,
                "RestartCount": self.restart_count,
                "ManuallyStopped": self.manually_stopped,
                "Mounts": self.mounts_info,
                "SpecMounts": [to_json(m) for m in self.spec_mounts],
                "NetworkSettings": self.network_settings,
            },
            sync_dir=False,
        )

    def set_status(self, status: Status) -> None:
        """Move to *status*, persist, and wake everyone waiting on this container."""
        self.status = status
        self.save_state()
        self.changed.notify_all()

    @classmethod
    def load(cls, directory: Path) -> Container:
        cfg = read_json(directory / layout.CONTAINER_CONFIG)
        c = cls(
            id=cfg["Id"],
            name=cfg["Name"],
            created_ns=int(cfg["Created"]),
            image_ref=cfg["Image"],
            image_id=cfg["ImageID"],
            config=cfg["Config"],
            host_config=cfg["HostConfig"],
            networking_config=cfg.get("NetworkingConfig") or {},
            directory=directory,
        )
        state_path = directory / layout.CONTAINER_STATE
        if state_path.exists():
            st = read_json(state_path)
            c.status = Status(st["Status"])
            c.pid = int(st["Pid"])
            c.exit_code = int(st["ExitCode"])
            c.oom_killed = bool(st["OOMKilled"])
            c.error = st.get("Error", "")
            c.started_at_ns = int(st["StartedAt"])
            c.finished_at_ns = int(st["FinishedAt"])
            c.restart_count = int(st.get("RestartCount", 0))
            c.manually_stopped = bool(st.get("ManuallyStopped", False))
            c.mounts_info = st.get("Mounts") or []
            c.spec_mounts = tuple(Mount(**{**m, "options": tuple(m["options"])})
                                  for m in st.get("SpecMounts") or [])
            c.network_settings = st.get("NetworkSettings") or {}
        return c


def now_ns() -> int:
    return time.time_ns()
