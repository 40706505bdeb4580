"""The build context: the request's tar stream unpacked into a private directory as it arrives.

The body is never held in memory: :mod:`.tarstream` reads it member by member
(gzip, bzip2 and xz contexts too) and hashes each file as it is written.
Member names are confined to the directory — ``..`` and absolute names are
refused, and no member is written through a symlink an earlier member
created — so a hostile context cannot write outside it. ``.dockerignore`` is
applied here as well, for clients that send their whole directory (the docker
CLI and docker-py already filter).
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
from runtime.api.errors import InvalidArgument
from runtime.build.tarstream import Hasher, Member, Reader, TarError


@dataclass
class Context:
    root: Path
    dockerfile_text: str
    ignore: Matcher
    # sha256 of every regular file, by path relative to root, computed while unpacking:
    # COPY's cache key then costs no second read of the context.
    digests: dict[str, str] = field(default_factory=dict)

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
            _remove(target)
            os.mkdir(target, 0o700)
        os.chmod(target, m.mode & 0o7777)
    elif m.issym():
        _remove(target)
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
    _remove(target)
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
    _remove(target)
    os.link(root / link_rel, target, follow_symlinks=False)
    if link_rel in digests:
        digests[rel] = digests[link_rel]


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def prepare(stream: BinaryIO, tmp_parent: Path, dockerfile: str) -> Context:
    """Unpack the context and read its Dockerfile (docker's errors when it is missing)."""
    root = new_dir(tmp_parent)
    try:
        digests = extract(stream, root)
        name = clean("/" + (dockerfile or "Dockerfile")).lstrip("/")
        path = root / name
        if not path.is_file() and not dockerfile:
            # docker falls back to the lower-case name.
            alt = root / "dockerfile"
            path = alt if alt.is_file() else path
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise InvalidArgument(
                f"Cannot locate specified Dockerfile: {dockerfile or 'Dockerfile'}") from None
        ignore = Matcher(read_file(root / ".dockerignore"))
        _drop_ignored(root, ignore, name)
        return Context(root, text, ignore, digests)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


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
