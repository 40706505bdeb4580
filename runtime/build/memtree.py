"""A build context kept in memory: a cached rebuild then creates no file at all.

Unpacking 100 files costs more in file creation, writes and clean-up than in
hashing them; a rebuild whose every step hits the cache never reads a byte of
the context back. So a context up to a budget (:data:`BUDGET`) stays in memory
as this tree, which serves what planning a COPY needs (lstat, listdir,
readlink, the digests) and the bytes a new layer needs (:meth:`MemTree.content`).
Only :meth:`MemTree.real` (ADD of a local archive reads the file itself)
writes it to disk, once, and from then on it is the files on disk.
"""

from __future__ import annotations

import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from runtime.api.errors import InvalidArgument

BUDGET = 32 << 20


@dataclass(eq=False, slots=True)
class Node:
    mode: int  # with the file type bits
    mtime: float
    data: bytes = b""
    linkname: str = ""
    links: int = 1  # hard links share one node


def _parts(path: str) -> str:
    return "/".join(p for p in posixpath.normpath("/" + path).split("/") if p)


@dataclass
class MemTree:
    """Paths relative to the context's root, ``""`` being the root itself."""

    root: Path  # where :meth:`real` writes the tree
    digests: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    children: dict[str, set[str]] = field(default_factory=lambda: {"": set()})
    size: int = 0
    written: bool = False

    # -- building it --
    def fits(self, size: int) -> bool:
        return self.size + size <= BUDGET

    def put(self, rel: str, node: Node) -> None:
        old = self.nodes.get(rel)
        if old is not None and stat.S_ISDIR(old.mode) and stat.S_ISDIR(node.mode):
            old.mode, old.mtime = node.mode, node.mtime  # a directory met again keeps its files
            return
        self.remove(rel)  # a later member of the same name replaces the earlier one
        self._parent(rel)
        self.nodes[rel] = node
        self.size += len(node.data)
        if stat.S_ISDIR(node.mode):
            self.children.setdefault(rel, set())

    def link(self, rel: str, target: str) -> bool:
        """A hard link to the file *target*; False when there is no such file."""
        node = self.nodes.get(target)
        if node is None or not stat.S_ISREG(node.mode):
            return False
        self.remove(rel)
        self._parent(rel)
        node.links += 1
        self.nodes[rel] = node
        return True

    def _parent(self, rel: str) -> None:
        parent, _, name = rel.rpartition("/")
        node = self.nodes.get(parent)
        if parent and node is None:
            self.put(parent, Node(stat.S_IFDIR | 0o755, 0))
        elif node is not None and not stat.S_ISDIR(node.mode):
            # Never through a symlink (or file): writing it out would follow it.
            raise InvalidArgument(f"invalid path in build context: {rel} crosses a "
                                  "non-directory")
        self.children.setdefault(parent, set()).add(name)

    def remove(self, rel: str) -> None:
        node = self.nodes.pop(rel, None)
        if node is None:
            return
        self.digests.pop(rel, None)
        parent, _, name = rel.rpartition("/")
        self.children.get(parent, set()).discard(name)
        node.links -= 1
        if node.links == 0:
            self.size -= len(node.data)
        for child in list(self.children.pop(rel, ())):
            self.remove(f"{rel}/{child}")

    # -- the Tree protocol (runtime/build/fs.py) --
    def lstat(self, path: str) -> os.stat_result | None:
        rel = _parts(path)
        if rel == "":
            return os.stat_result((stat.S_IFDIR | 0o755, 0, 0, 1, 0, 0, 0, 0, 0, 0))
        node = self.nodes.get(rel)
        if node is None:
            return None
        size = len(node.data) if stat.S_ISREG(node.mode) else len(node.linkname)
        t = int(node.mtime)
        return os.stat_result((node.mode, id(node), 0, node.links, 0, 0, size, t, t, t))

    def listdir(self, path: str) -> list[str]:
        return sorted(self.children.get(_parts(path), ()))

    def real(self, path: str) -> Path:
        self.write()
        return self.root.joinpath(_parts(path))

    def digest(self, path: str) -> str | None:
        return self.digests.get(_parts(path))

    def readlink(self, path: str) -> str:
        node = self.nodes.get(_parts(path))
        if node is None or not stat.S_ISLNK(node.mode):
            raise OSError(f"not a symbolic link: {path}")
        return node.linkname

    def content(self, path: str) -> bytes | None:
        node = self.nodes.get(_parts(path))
        return node.data if node is not None and stat.S_ISREG(node.mode) else None

    # -- to disk --
    def write(self) -> None:
        """The tree as files under :attr:`root` (once); parents before children."""
        if self.written:
            return
        self.written = True
        first: dict[int, str] = {}
        for rel in sorted(self.nodes, key=lambda r: r.count("/")):
            self._write_one(rel, self.nodes[rel], first)
        for rel in sorted(self.nodes, key=lambda r: -r.count("/")):
            t = self.nodes[rel].mtime  # after the children: creating them touched dirs
            os.utime(self.root / rel, (t, t), follow_symlinks=False)

    def _write_one(self, rel: str, node: Node, first: dict[int, str]) -> None:
        path = self.root / rel
        if stat.S_ISDIR(node.mode):
            os.mkdir(path, stat.S_IMODE(node.mode))
            os.chmod(path, stat.S_IMODE(node.mode))
        elif stat.S_ISLNK(node.mode):
            os.symlink(node.linkname, path)
        elif id(node) in first:
            os.link(self.root / first[id(node)], path)
        else:
            first[id(node)] = rel
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(node.data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, stat.S_IMODE(node.mode))
            finally:
                os.close(fd)
