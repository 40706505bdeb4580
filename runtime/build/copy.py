"""COPY and ADD: which files land where (a :class:`Plan`), its content hash, and its layer tar.

Planning resolves sources (globs with Go's ``filepath.Match``, heredocs, ADD's
archives and URLs) and the destination inside the image (through its
symlinks, e.g. ``/bin -> usr/bin``), and lists every tar entry, parents first.
Parent directories that already exist in the image are written with their
existing metadata, because in an overlay layer the upper copy of a directory
wins (``/tmp`` must stay 1777). The plan's digest covers names, modes, owners,
link targets and file contents — never mtimes — and keys the build cache.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime.api.dockerignore import clean, go_match, has_magic
from runtime.api.errors import InvalidArgument
from runtime.build.fs import Tree, resolve
from runtime.build.layers import Writer

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Source:
    """One resolved source: a path in a tree, or inline data (heredoc, download)."""

    name: str  # the base name it gets under a directory destination
    tree: Tree | None = None
    path: str = ""
    data: bytes | None = None
    mode: int = 0o644
    keep_owner: bool = False  # ADD of an archive keeps the archive's owners
    contents_only: bool = False  # ADD's unpacked archive: its contents go into dest


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # absolute in the image
    kind: str  # "dir" | "file" | "symlink" | "hardlink" (to *linkname*, earlier in the plan)
    mode: int
    uid: int
    gid: int
    mtime: int
    real: Path | None = None
    data: bytes | None = None
    linkname: str = ""
    digest: str = ""  # the content's sha256 when already known (hashed while unpacking)


@dataclass
class Plan:
    entries: dict[str, Entry] = field(default_factory=dict)
    kind: str = "file"  # docker's "file:", "dir:" or "multi:" prefix in history

    def digest(self) -> str:
        h = hashlib.sha256()
        for e in self.entries.values():
            h.update(f"{e.path}\0{e.kind}\0{e.mode:o}\0{e.uid}:{e.gid}\0{e.linkname}\0".encode())
            if e.kind == "file":
                h.update(_content_digest(e).encode())
        return h.hexdigest()

    def write(self, out: Writer) -> None:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for e in self.entries.values():
                _add(tar, e)


def _content_digest(e: Entry) -> str:
    if e.digest:
        return e.digest
    h = hashlib.sha256()
    if e.data is not None:
        h.update(e.data)
    elif e.real is not None:
        with open(e.real, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def _add(tar: tarfile.TarFile, e: Entry) -> None:
    info = tarfile.TarInfo(e.path.lstrip("/"))
    info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, e.mtime
    if e.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif e.kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, e.linkname
        tar.addfile(info)
    elif e.kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, e.linkname.lstrip("/")
        tar.addfile(info)
    elif e.data is not None:
        import io

        info.size = len(e.data)
        tar.addfile(info, io.BytesIO(e.data))
    else:
        assert e.real is not None
        with open(e.real, "rb") as f:
            info.size = os.fstat(f.fileno()).st_size
            tar.addfile(info, f)


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int


@dataclass
class Planner:
    """Builds the plan for one COPY/ADD into the image whose merged root is *dest_tree*."""

    dest_tree: Tree
    owner: Owner | None
    chmod: int | None
    plan: Plan = field(default_factory=Plan)
    # (device, inode) of multiply-linked source files -> where the first one went, so
    # hard links in the source stay hard links in the layer.
    links: dict[tuple[int, int], str] = field(default_factory=dict)

    def run(self, sources: list[Source], dest: str, dest_is_dir: bool) -> Plan:
        if len(sources) > 1 and not dest_is_dir:
            raise InvalidArgument("When using COPY with more than one source file, the "
                                  "destination must be a directory and end with a /")
        resolved = resolve(self.dest_tree, dest)
        dest_st = self.dest_tree.lstat(resolved)
        into_dir = dest_is_dir or (dest_st is not None and stat.S_ISDIR(dest_st.st_mode))
        self.plan.kind = "multi" if len(sources) > 1 else "file"
        for src in sources:
            self.links = {}  # docker links within one source's tree only (f and its link g
            # given as two sources land as two files)
            if src.tree is not None and _is_dir(src.tree, src.path):
                if len(sources) == 1:
                    self.plan.kind = "dir"
                self._dir(src, resolved)
            elif src.contents_only:
                self._dir(src, resolved)
            else:
                target = posixpath.join(resolved, src.name) if into_dir else resolved
                self._parents(target)
                self._file(src, target)
        return self.plan

    # -- entries --
    def _put(self, e: Entry) -> None:
        self.plan.entries[e.path] = e

    def _parents(self, path: str) -> None:
        parts = [p for p in path.split("/") if p][:-1]
        current = ""
        for name in parts:
            current += "/" + name
            if current in self.plan.entries:
                continue
            st = self.dest_tree.lstat(current)
            if st is not None and stat.S_ISDIR(st.st_mode):
                self._put(Entry(current, "dir", stat.S_IMODE(st.st_mode), st.st_uid,
                                st.st_gid, int(st.st_mtime)))
            else:
                uid, gid = (self.owner.uid, self.owner.gid) if self.owner else (0, 0)
                self._put(Entry(current, "dir", 0o755, uid, gid, int(time.time())))

    def _ids(self, st: os.stat_result | None, keep: bool) -> tuple[int, int]:
        if self.owner is not None:
            return self.owner.uid, self.owner.gid
        if keep and st is not None:
            return st.st_uid, st.st_gid
        return 0, 0

    def _file(self, src: Source, target: str) -> None:
        if src.data is not None:
            uid, gid = self._ids(None, False)
            mode = self.chmod if self.chmod is not None else src.mode
            self._put(Entry(target, "file", mode, uid, gid, int(time.time()), data=src.data))
            return
        assert src.tree is not None
        self._tree_entry(src.tree, src.path, target, src.keep_owner)

    def _tree_entry(self, tree: Tree, path: str, target: str, keep: bool) -> None:
        st = tree.lstat(path)
        if st is None:
            return
        uid, gid = self._ids(st, keep)
        mode = self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode)
        mtime = int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            link = tree.readlink(path)
            self._put(Entry(target, "symlink", 0o777, uid, gid, mtime, linkname=link))
        elif stat.S_ISDIR(st.st_mode):
            self._put(Entry(target, "dir", mode, uid, gid, mtime))
            for name in tree.listdir(path):
                self._tree_entry(tree, posixpath.join(path, name), posixpath.join(target, name),
                                 keep)
        elif stat.S_ISREG(st.st_mode):
            first = self.links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None and first in self.plan.entries:
                self._put(Entry(target, "hardlink", mode, uid, gid, mtime, linkname=first))
                return
            if st.st_nlink > 1:
                self.links[(st.st_dev, st.st_ino)] = target
            data = tree.content(path)  # in memory: no file to read (or to write first)
            self._put(Entry(target, "file", mode, uid, gid, mtime, data=data,
                            real=tree.real(path) if data is None else None,
                            digest=tree.digest(path) or ""))

    def _dir(self, src: Source, target: str) -> None:
        """A directory source: its contents go into *target* (created if missing)."""
        assert src.tree is not None
        self._parents(posixpath.join(target, "x"))
        existing = self.dest_tree.lstat(target)
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            st = src.tree.lstat(src.path)
            uid, gid = self._ids(st, src.keep_owner)
            mode = self.chmod if self.chmod is not None else (
                stat.S_IMODE(st.st_mode) if st else 0o755)
            self._put(Entry(target, "dir", mode, uid, gid, int(st.st_mtime if st else 0)))
        for name in src.tree.listdir(src.path):
            self._tree_entry(src.tree, posixpath.join(src.path, name),
                             posixpath.join(target, name), src.keep_owner)


def _is_dir(tree: Tree, path: str) -> bool:
    st = tree.lstat(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def tree_sources(tree: Tree, pattern: str, what: str) -> list[Source]:
    """The sources one COPY argument names in *tree* (a path or a Go glob)."""
    rel = clean("/" + pattern).lstrip("/")
    if has_magic(rel):
        found = list(_glob(tree, rel))
        if not found:
            raise InvalidArgument("COPY failed: no source files were specified")
        return found
    path = resolve(tree, "/" + rel)
    if tree.lstat(path) is None:
        raise InvalidArgument(f"failed to compute cache key: {what}: \"/{rel}\" not found"
                              if what != "build context" else
                              f"COPY failed: file not found in build context or excluded by "
                              f".dockerignore: stat {rel}: file does not exist")
    name = posixpath.basename(path) or posixpath.basename(rel)
    return [Source(name, tree, path)]


def _glob(tree: Tree, pattern: str) -> Iterator[Source]:
    """Every path matching *pattern*; a matching directory is not descended (docker)."""
    depth = pattern.count("/") + 1

    def walk(rel: str, level: int) -> Iterator[Source]:
        for name in tree.listdir("/" + rel):
            path = f"{rel}/{name}" if rel else name
            if go_match(pattern, path):
                yield Source(name, tree, "/" + path)
            elif level < depth and _is_dir(tree, "/" + path):
                yield from walk(path, level + 1)

    yield from walk("", 1)


def parse_chmod(text: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text, 8)
    except ValueError:
        raise InvalidArgument(f"invalid chmod parameter: {text!r}") from None
    if value > 0o7777:
        raise InvalidArgument(f"invalid chmod parameter: {text!r}")
    return value


def parse_chown(text: str, tree: Tree) -> Owner | None:
    """``user[:group]`` by name (the image's /etc/passwd and /etc/group) or number."""
    if not text:
        return None
    user, _, group = text.partition(":")
    group = group or user
    uid = _lookup(tree, "/etc/passwd", user, 2, "uid", "user")
    gid = _lookup(tree, "/etc/group", group, 2, "gid", "group")
    return Owner(uid, gid)


def _lookup(tree: Tree, file: str, name: str, column: int, what: str, kind: str) -> int:
    if name.isdigit():
        return int(name)
    path = resolve(tree, file)
    try:
        text = tree.real(path).read_text(errors="replace")
    except (FileNotFoundError, OSError):
        text = ""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > column and fields[0] == name and fields[column].isdigit():
            return int(fields[column])
    raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find "
                          f"{what} for {kind} {name}: no such {kind}: {name}")
