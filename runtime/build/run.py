"""RUN: one container of this engine per step — create, start, stream its output, wait, commit.

The container is an ordinary engine container (events, cgroup, network), made
from the step's parent image with the step's command as its Cmd (the image's
ENTRYPOINT is overridden, as docker does). Its output is read from the json
log while it runs and streamed to the client. The writable layer becomes the
new image's layer; mount-point files the runtime had to create (``/etc/hosts``
and friends when the image lacks them) are dropped first so they do not leak
into the image.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.api.errors import CoveError
from runtime.build.fs import Tree
from runtime.engine import logs

if TYPE_CHECKING:
    from runtime.engine.containers import ContainerService
    from runtime.engine.records import Container

_MOUNT_FILES = ("etc/hosts", "etc/resolv.conf", "etc/hostname", ".dockerenv")
_MOUNT_DIRS = ("dev/pts", "dev/shm", "dev/mqueue", "dev", "proc", "sys", "etc")


class RunFailed(CoveError):
    def __init__(self, argv: list[str], code: int) -> None:
        super().__init__(f"The command '{' '.join(argv)}' returned a non-zero code: {code}")
        self.code = code


@dataclass(frozen=True, slots=True)
class RunSpec:
    image_id: str
    argv: list[str]
    env: list[str]
    section: dict[str, Any]
    network: str
    script: str | None = None  # a heredoc with a #! line: written into the rootfs and run
    extra_hosts: tuple[str, ...] = ()  # ``host:ip`` lines for /etc/hosts (``extrahosts``)


def create(containers: ContainerService, spec: RunSpec, upper_of: Any) -> Container:
    body: dict[str, Any] = {
        "Image": spec.image_id,
        "Cmd": spec.argv,
        "Entrypoint": [],
        "Env": spec.env,
        "User": spec.section.get("User") or "",
        "WorkingDir": spec.section.get("WorkingDir") or "",
        "Labels": {},
        "Tty": False,
        "AttachStdout": True,
        "AttachStderr": True,
        "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {}}},
    }
    if spec.network:
        body["HostConfig"]["NetworkMode"] = spec.network
    if spec.extra_hosts:
        body["HostConfig"]["ExtraHosts"] = list(spec.extra_hosts)
    c = containers.create("", body)
    if spec.script is not None:
        upper: Path = upper_of(c.id)
        path = upper / spec.argv[0].lstrip("/")
        path.write_text(spec.script)
        os.chmod(path, 0o755)
    return c


def script_path() -> str:
    return f"/.cove-heredoc-{secrets.token_hex(4)}"


# moby's stderr writer (streamformatter.NewStderrWriter): each chunk a RUN writes to
# stderr goes out as its own "stream" message, in bright red.
STDERR_START, STDERR_END = "\x1b[91m", "\x1b[0m"


def execute(containers: ContainerService, c: Container, argv: list[str]
            ) -> Generator[str, None, None]:
    """Start *c*, yield its output as it comes, raise :class:`RunFailed` on a non-zero exit.

    Stdout chunks are yielded as they are; stderr chunks wrapped as moby's stderr
    writer does (docker-py's ``test_build_stderr_data`` looks for exactly that).
    """
    containers.start(c.id)
    for entry in logs.read(c.log_path, tail=None, since_ns=None, until_ns=None, follow=True,
                           is_running=lambda: c.running):
        text = entry.data.decode("utf-8", "replace")
        yield f"{STDERR_START}{text}{STDERR_END}" if entry.stream == logs.STDERR else text
    code = containers.wait(c, "not-running")
    if code != 0:
        raise RunFailed(argv, code)


def clean_upper(upper: Path, lower: Tree, script: str | None) -> None:
    """Drop what the runtime (not the command) put into the writable layer."""
    if script is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(upper / script.lstrip("/"))
    for rel in _MOUNT_FILES:
        path = upper / rel
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == 0 and lower.lstat("/" + rel) is None:
            os.unlink(path)
    for rel in _MOUNT_DIRS:
        path = upper / rel
        if lower.lstat("/" + rel) is None and path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only when empty: a command's files stay


def remove(containers: ContainerService, cid: str) -> bool:
    try:
        containers.remove(cid, force=True, volumes=True)
    except CoveError:
        return False
    return True


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
