"""A container's root filesystem as Docker shows it: ``docker diff`` changes and ``export`` tars.

Changes come from the overlay upper dir alone (moby's overlay2 ``Changes``):
a 0:0 character device is a whiteout (deleted), anything else is modified when
the image's layers have it and added when they do not. What the engine itself
puts in the upper dir as mount points (moby keeps those in a hidden init
layer) is not a change the user made, so it is left out.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

MODIFIED, ADDED, DELETED = 0, 1, 2

# Mount points the runtime creates in every container (moby's init layer).
INIT_PATHS = frozenset({
    "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console", "/proc", "/sys",
    "/.dockerenv", "/etc/resolv.conf", "/etc/hosts", "/etc/hostname", "/etc/mtab",
})


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def in_lowers(lowers: Sequence[Path], rel: str) -> bool:
    """Whether the image (top layer first) has *rel*; a whiteout on top hides lower copies."""
    for lower in lowers:
        try:
            st = os.lstat(lower / rel)
        except OSError:
            continue
        return not is_whiteout(st)
    return False


def changes(upper: Path, lowers: Sequence[Path], skip: frozenset[str] = INIT_PATHS
            ) -> list[dict[str, Any]]:
    """``GET /containers/{id}/changes``: ``[{"Path", "Kind"}]`` sorted by path."""
    out: list[dict[str, Any]] = []
    _walk_changes(upper, lowers, "", skip, out)
    return sorted(out, key=lambda c: str(c["Path"]))


def _walk_changes(upper: Path, lowers: Sequence[Path], rel: str, skip: frozenset[str],
                  out: list[dict[str, Any]]) -> bool:
    """Record changes under *rel*; True if anything under it was recorded."""
    found = False
    try:
        names = sorted(os.listdir(upper / rel.lstrip("/")))
    except OSError:
        return False
    for name in names:
        child = f"{rel}/{name}"
        st = os.lstat(upper / child.lstrip("/"))
        existed = in_lowers(lowers, child.lstrip("/"))
        if is_whiteout(st):
            out.append({"Path": child, "Kind": DELETED})
            found = True
            continue
        below = stat.S_ISDIR(st.st_mode) and _walk_changes(upper, lowers, child, skip, out)
        if child in skip and not below:
            continue
        if not existed:
            out.append({"Path": child, "Kind": ADDED})
            found = True
        elif below or not stat.S_ISDIR(st.st_mode):
            # A copied-up directory only counts when something under it changed.
            out.append({"Path": child, "Kind": MODIFIED})
            found = True
    return found


# (path relative to the root, uid, gid on disk) -> the owner to record.
Owners = Callable[[str, int, int], tuple[int, int]]


def write_export(root: Path, out: IO[bytes], prune: frozenset[str] = frozenset(),
                 owners: Owners | None = None) -> None:
    """Tar *root*'s tree to *out*, staying on its filesystem (no /proc, /sys, volumes).

    Directories in *prune* (other mounts: volumes, binds) are written empty; *owners*
    translates each entry's ids (a remapped container's host ids to its own).
    """
    device = os.stat(root).st_dev  # follows /proc/<pid>/root to the container's root
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, arc in _walk_tree(root, device, prune):
            info = tar.gettarinfo(str(path), arcname=arc)
            if info is None:
                continue  # sockets: Docker skips them too
            info.uname = info.gname = ""
            if owners is not None:
                info.uid, info.gid = owners(arc, info.uid, info.gid)
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def _walk_tree(root: Path, device: int, prune: frozenset[str]) -> Iterator[tuple[Path, str]]:
    """Parents before children; other filesystems' directories appear but stay empty."""
    stack = [""]
    while stack:
        rel = stack.pop()
        directory = root / rel if rel else root
        try:
            names = sorted(os.listdir(directory), reverse=True)
        except OSError:
            continue
        for name in names:
            child = f"{rel}/{name}" if rel else name
            path = root / child
            try:
                st = os.lstat(path)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            descend = is_dir and st.st_dev == device and "/" + child not in prune
            if st.st_dev != device and not is_dir:
                continue  # a bind-mounted file (e.g. /etc/hosts from the engine)
            yield path, child
            if descend:
                stack.append(child)
