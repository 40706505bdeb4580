"""Small file helpers used across the engine: atomic writes (tmp + fsync + rename),
clearing the way for an unpacked entry."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes, mode: int = 0o644, *, sync_dir: bool = True) -> None:
    """Replace *path* with *data* so readers see the old or the new file, never half of one.

    The data is always fsynced before the rename (else a crash could leave an empty or
    torn file under the new name). ``sync_dir=False`` skips the directory fsync that makes
    the rename itself durable: after a crash the old file may come back, never a torn one.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    # Python's own fds are non-inheritable already; O_CLOEXEC closes the window before
    # that flag is set where the platform has it (not Windows, which also has no O_DIRECTORY).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if not sync_dir or sys.platform == "win32":  # NTFS renames are metadata-journaled
        return
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(path: Path, obj: Any, *, sync_dir: bool = True) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode(), sync_dir=sync_dir)


def read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def remove_any(path: Path) -> None:
    """Clear *path* for a new entry, whatever it is (file, symlink, whole tree); a missing one
    is fine. Never follows a symlink: the link itself goes, not what it points at."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def apparent_size(path: Path) -> int:
    """Apparent size of the files under *path* (what ``docker system df`` reports)."""
    total = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass  # removed while we walked
    return total


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on *path* (created if missing) for the block: one process at a
    time, across processes; released when the block ends or the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        if sys.platform == "win32":
            import msvcrt

            while True:  # LK_LOCK itself gives up after ten one-second tries
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
        else:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)
        yield
