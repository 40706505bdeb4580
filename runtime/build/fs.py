"""Read-only views of file trees that COPY/ADD read from and write above, without mounting.

- :class:`DirTree` is a plain directory (the extracted build context);
  :class:`~runtime.build.memtree.MemTree` is a context kept in memory.
- :class:`LayerTree` is an image's merged root computed from its unpacked layer
  directories, with overlayfs' rules: a 0:0 character device is a whiteout, a
  directory with ``trusted.overlay.opaque=y`` hides the layers below it, and a
  non-directory hides everything under its name in lower layers.

Paths are absolute inside the tree (``/usr/bin``). :func:`resolve` follows
symlinks *within* the tree (an absolute link target means the tree's root),
so nothing outside it is ever touched — docker's ``FollowSymlinkInScope``.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path
from typing import Protocol

from runtime.api.errors import InvalidArgument

_OPAQUE_XATTR = "trusted.overlay.opaque"
_MAX_LINKS = 255


class Tree(Protocol):
    def lstat(self, path: str) -> os.stat_result | None: ...
    def listdir(self, path: str) -> list[str]: ...
    def real(self, path: str) -> Path: ...
    def digest(self, path: str) -> str | None: ...
    def readlink(self, path: str) -> str: ...
    def content(self, path: str) -> bytes | None: ...  # a file's bytes when held in memory


def _parts(path: str) -> list[str]:
    return [p for p in posixpath.normpath("/" + path).split("/") if p]


class DirTree:
    def __init__(self, root: Path, digests: dict[str, str] | None = None) -> None:
        self.root = root
        self.digests = digests or {}  # sha256 by relative path, known from unpacking

    def digest(self, path: str) -> str | None:
        return self.digests.get("/".join(_parts(path)))

    def readlink(self, path: str) -> str:
        return os.readlink(self.real(path))

    def content(self, path: str) -> bytes | None:
        return None

    def real(self, path: str) -> Path:
        return self.root.joinpath(*_parts(path))

    def lstat(self, path: str) -> os.stat_result | None:
        try:
            return os.lstat(self.real(path))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.real(path)))
        except (FileNotFoundError, NotADirectoryError):
            return []


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class LayerTree:
    """An image's merged filesystem; *layers* are the layer ``fs`` dirs, top layer first."""

    def __init__(self, layers: list[Path]) -> None:
        self.layers = layers

    def _find(self, path: str) -> tuple[Path, os.stat_result] | None:
        parts = _parts(path)
        for layer in self.layers:
            target = layer.joinpath(*parts)
            try:
                st = os.lstat(target)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            if st is not None:
                return None if _is_whiteout(st) else (target, st)
            if self._hides(layer, parts):
                return None
        return None

    def _hides(self, layer: Path, parts: list[str]) -> bool:
        """Whether *layer* masks *parts* in the layers below it (a parent is opaque/replaced)."""
        current = layer
        for name in parts[:-1]:
            current = current / name
            try:
                st = os.lstat(current)
            except (FileNotFoundError, NotADirectoryError):
                return False
            if not stat.S_ISDIR(st.st_mode) or _opaque(current):
                return True
        return False

    def digest(self, path: str) -> str | None:
        return None  # layer files were not hashed when unpacked: read them

    def readlink(self, path: str) -> str:
        return os.readlink(self.real(path))

    def content(self, path: str) -> bytes | None:
        return None

    def lstat(self, path: str) -> os.stat_result | None:
        found = self._find(path)
        return found[1] if found else None

    def real(self, path: str) -> Path:
        found = self._find(path)
        if found is None:
            raise FileNotFoundError(path)
        return found[0]

    def listdir(self, path: str) -> list[str]:
        parts = _parts(path)
        seen: dict[str, bool] = {}  # name -> visible
        for layer in self.layers:
            d = layer.joinpath(*parts)
            try:
                st = os.lstat(d)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            if st is not None:
                if not stat.S_ISDIR(st.st_mode):
                    break
                for entry in os.scandir(d):
                    if entry.name not in seen:
                        seen[entry.name] = not _is_whiteout(entry.stat(follow_symlinks=False))
                if _opaque(d):
                    break
            elif self._hides(layer, [*parts, ""]):
                break
        return sorted(name for name, visible in seen.items() if visible)


def resolve(tree: Tree, path: str, *, follow_last: bool = True) -> str:
    """*path* with its symlinks followed inside *tree*; missing components are kept as-is."""
    todo = _parts(path)
    done: list[str] = []
    links = 0
    while todo:
        name = todo.pop(0)
        if name in (".", ".."):
            if name == ".." and done:
                done.pop()  # ".." never climbs above the tree's root
            continue
        current = "/" + "/".join([*done, name])
        st = tree.lstat(current)
        if st is None or not stat.S_ISLNK(st.st_mode) or (not todo and not follow_last):
            done.append(name)
            continue
        links += 1
        if links > _MAX_LINKS:
            raise InvalidArgument(f"too many symlinks resolving {path}")
        target = tree.readlink(current)
        if target.startswith("/"):
            done = []
        todo = [p for p in target.split("/") if p] + todo
    return "/" + "/".join(done)
