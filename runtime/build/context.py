"""The build context: the request's tar stream, unpacked as it arrives.

Up to :data:`~runtime.build.memtree.BUDGET` bytes of files it stays in memory
(:class:`~runtime.build.memtree.MemTree`), so a rebuild whose steps all hit
the cache creates no file; a bigger context is written to a private directory,
never held whole: :mod:`.tarstream` reads it member by member (gzip, bzip2 and
xz contexts too) and every file is hashed as it comes. Member names are
confined to the context — ``..`` and absolute names are refused, and no
member goes through a symlink an earlier member created — so a hostile
context cannot write outside it. ``.dockerignore`` is applied here as well,
for clients that send their whole directory (the docker CLI and docker-py
already filter).
"""

from __future__ import annotations

import hashlib
import lzma
import os
import posixpath
import shutil
import stat
import threading
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from runtime.api.dockerignore import Matcher, clean, read_file
from runtime.api.dockerignore import parse as parse_ignore
from runtime.api.errors import InvalidArgument
from runtime.build.fs import DirTree, Tree
from runtime.build.memtree import MemTree, Node
from runtime.build.tarstream import Hasher, Member, Reader, TarError
from runtime.fsutil import remove_any


@dataclass
class Context:
    root: Path
    dockerfile_text: str
    ignore: Matcher
    # sha256 of every regular file, by path relative to root, computed while unpacking:
    # COPY's cache key then costs no second read of the context.
    digests: dict[str, str] = field(default_factory=dict)
    # What COPY reads: the files under root, or the context still in memory.
    tree: Tree | None = None

    def source(self) -> Tree:
        return self.tree if self.tree is not None else DirTree(self.root, self.digests)

    def close(self) -> None:
        """Remove the unpacked context, off the request's path (the client waits for it)."""
        root = self.root
        threading.Thread(target=shutil.rmtree, args=(root,), kwargs={"ignore_errors": True},
                         name="build-context-rm", daemon=True).start()


def new_dir(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / uuid.uuid4().hex
    path.mkdir(mode=0o700)
    return path


def extract(stream: BinaryIO, root: Path, *, owners: bool = False) -> dict[str, str]:
    """Unpack the (maybe compressed) tar *stream* into the empty directory *root*.

    Returns the sha256 of each regular file by relative path. With *owners*,
    members keep their uid/gid (ADD of an archive); a context's owners do not
    matter since COPY writes root-owned files.
    """
    digests: dict[str, hashlib._Hash] = {}
    hasher = Hasher()
    try:
        reader = Reader(stream)
        for member in reader:
            owner = (member.uid, member.gid) if owners else None
            _extract_one(reader, member, root, digests, hasher, owner)
    except (TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        raise InvalidArgument(f"failed to read the build context: {e}") from None
    finally:
        hasher.close()
    return {rel: digest.hexdigest() for rel, digest in digests.items()}


def _safe_name(name: str) -> str | None:
    cleaned = clean("/" + name).lstrip("/")
    if not cleaned or cleaned == ".":
        return None
    if any(part == ".." for part in name.split("/")):
        raise InvalidArgument(f"invalid path in build context: {name}")
    return cleaned


def _parent_dir(root: Path, rel: str) -> Path:
    """The member's parent inside *root*, made of real directories (never via a symlink)."""
    current = root
    for part in rel.split("/")[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"invalid path in build context: {rel} crosses a "
                                  "non-directory")
    return current


def _extract_one(reader: Reader, m: Member, root: Path, digests: dict[str, hashlib._Hash],
                 hasher: Hasher, owner: tuple[int, int] | None) -> None:
    rel = _safe_name(m.name)
    if rel is None:
        return
    target = _parent_dir(root, rel) / posixpath.basename(rel)
    if m.isdir():
        if not target.is_dir() or target.is_symlink():
            remove_any(target)
            os.mkdir(target, 0o700)
        os.chmod(target, m.mode & 0o7777)
    elif m.issym():
        remove_any(target)
        os.symlink(m.linkname, target)
    elif m.islnk():
        _hard_link(m, rel, root, target, digests)
        return
    elif m.isreg():
        digest = digests[rel] = hashlib.sha256()  # a name given twice: the last one counts
        _file(reader, m, target, digest, hasher, owner)
    else:
        return  # devices and fifos have no place in a context
    if owner is not None and not m.isreg():
        os.lchown(target, *owner)
    os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)


def _file(reader: Reader, m: Member, target: Path, digest: hashlib._Hash, hasher: Hasher,
          owner: tuple[int, int] | None) -> None:
    remove_any(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        reader.copy_to(fd, digest, hasher)
        if owner is not None:
            os.fchown(fd, *owner)  # before the mode: a chown clears set-id bits
        os.fchmod(fd, m.mode & 0o7777)
    finally:
        os.close(fd)


def _hard_link(m: Member, rel: str, root: Path, target: Path,
               digests: dict[str, hashlib._Hash]) -> None:
    link_rel = _safe_name(m.linkname)
    if link_rel is None:
        raise InvalidArgument(f"invalid hard link in build context: {m.name}")
    remove_any(target)
    os.link(root / link_rel, target, follow_symlinks=False)
    if link_rel in digests:
        digests[rel] = digests[link_rel]


def prepare(stream: BinaryIO, tmp_parent: Path, dockerfile: str) -> Context:
    """Unpack the context and read its Dockerfile (docker's errors when it is missing).

    It stays in memory (:class:`MemTree`) while it fits the budget; past that, what
    was held is written out and the rest unpacked straight to disk.
    """
    root = new_dir(tmp_parent)
    try:
        name = clean("/" + (dockerfile or "Dockerfile")).lstrip("/")
        tree = _unpack(stream, root)
        if isinstance(tree, MemTree):
            return _memory_context(root, tree, name, dockerfile)
        text = _dockerfile_text(tree, name, dockerfile)
        ignore = Matcher(read_file(root / ".dockerignore"))
        _drop_ignored(root, ignore, name)
        return Context(root, text, ignore, tree.digests)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _unpack(stream: BinaryIO, root: Path) -> MemTree | DirTree:
    mem = MemTree(root)
    digests: dict[str, hashlib._Hash] = {}
    hasher = Hasher()
    spilled = False
    try:
        reader = Reader(stream)
        members = iter(reader)
        for member in members:
            if member.isreg() and not mem.fits(member.size):
                mem.write()  # too big to hold: out to disk, held files first
                spilled = True
                _extract_one(reader, member, root, digests, hasher, None)
                for rest in members:
                    _extract_one(reader, rest, root, digests, hasher, None)
                break
            _hold(reader, member, mem, digests, hasher)
    except (TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        raise InvalidArgument(f"failed to read the build context: {e}") from None
    finally:
        hasher.close()
    done = {rel: digest.hexdigest() for rel, digest in digests.items()}
    if spilled:
        return DirTree(root, done)
    mem.digests = {rel: d for rel, d in done.items() if rel in mem.nodes}
    return mem


def _hold(reader: Reader, m: Member, mem: MemTree, digests: dict[str, hashlib._Hash],
          hasher: Hasher) -> None:
    """One member into the in-memory tree (same rules as :func:`_extract_one`)."""
    rel = _safe_name(m.name)
    if rel is None:
        return
    mode = m.mode & 0o7777
    if m.isdir():
        mem.put(rel, Node(stat.S_IFDIR | mode, m.mtime))
    elif m.issym():
        mem.put(rel, Node(stat.S_IFLNK | 0o777, m.mtime, linkname=m.linkname))
    elif m.islnk():
        target = _safe_name(m.linkname)
        if target is None or not mem.link(rel, target):
            raise InvalidArgument(f"invalid hard link in build context: {m.name}")
        if target in digests:
            digests[rel] = digests[target]
    elif m.isreg():
        data = reader.read_data()
        digest = digests[rel] = hashlib.sha256()
        hasher.update(digest, data)
        mem.put(rel, Node(stat.S_IFREG | mode, m.mtime, data))


def _dockerfile_text(tree: Tree, name: str, dockerfile: str) -> str:
    path = "/" + name
    st = tree.lstat(path)
    if (st is None or not stat.S_ISREG(st.st_mode)) and not dockerfile:
        alt = tree.lstat("/dockerfile")  # docker falls back to the lower-case name
        if alt is not None and stat.S_ISREG(alt.st_mode):
            path, st = "/dockerfile", alt
    if st is None or not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(
            f"Cannot locate specified Dockerfile: {dockerfile or 'Dockerfile'}")
    data = tree.content(path)
    if data is None:
        data = tree.real(path).read_bytes()
    return data.decode("utf-8", errors="replace")


def _memory_context(root: Path, mem: MemTree, name: str, dockerfile: str) -> Context:
    text = _dockerfile_text(mem, name, dockerfile)
    ignore_file = mem.content("/.dockerignore")
    ignore = Matcher(parse_ignore((ignore_file or b"").decode("utf-8", "surrogateescape")
                                  .splitlines()))
    if ignore.patterns:
        keep: set[str] = set()
        for rel in mem.nodes:
            if not ignore.excluded(rel):
                keep.add(rel)
                while "/" in rel:  # parents of a re-included path stay
                    rel = rel.rsplit("/", 1)[0]
                    keep.add(rel)
        for rel in [r for r in mem.nodes if r not in keep]:
            mem.remove(rel)
    return Context(root, text, ignore, mem.digests, mem)


def _drop_ignored(root: Path, ignore: Matcher, dockerfile: str) -> None:
    """Delete what .dockerignore excludes (the Dockerfile and .dockerignore themselves too)."""
    if not ignore.patterns:
        return
    keep = set(ignore.walk(root))
    for path in list(keep):
        while "/" in path:  # parents of a re-included path stay
            path = path.rsplit("/", 1)[0]
            keep.add(path)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in [*filenames, *dirnames]:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in keep:
                continue
            entry = Path(dirpath) / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                os.unlink(entry)
