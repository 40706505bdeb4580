"""Apply one OCI layer tar to an empty snapshot directory, in overlayfs' format.

Each layer is unpacked into its own directory (the overlay "lower" it will be),
so the tar's whiteouts become what overlayfs understands: ``.wh.NAME`` turns
into a 0:0 character device ``NAME`` and ``.wh..wh..opq`` into the
``trusted.overlay.opaque=y`` xattr on its directory.

Hostile tars are refused: names with ``..`` or absolute names escaping the
root, hard links outside the layer. Symlinks met while walking to an entry's
parent are resolved *within* the root (an absolute ``/etc`` means
``<root>/etc``), so nothing is ever written outside it. The digest of the
uncompressed stream (the DiffID) is computed on the way.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runtime.api.errors import InvalidArgument
from runtime.fsutil import remove_any
from runtime.images.compression import HashingReader, decompressed

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_MAX_LINKS = 255
_CHUNK = 1 << 20
_TAR_BUF = 1 << 16


class LayerError(InvalidArgument):
    """The layer tar is malformed or hostile; the snapshot was not created."""


@dataclass(frozen=True, slots=True)
class Applied:
    diff_id: str  # sha256 of the uncompressed tar
    tar_size: int  # bytes of the uncompressed tar
    size: int  # bytes of regular file content (Docker's layer "Size")
    compression: str


def apply_layer(stream: BinaryIO, root: Path) -> Applied:
    """Unpack the (possibly compressed) layer *stream* into the empty dir *root*."""
    raw, kind = decompressed(stream)
    reader = HashingReader(raw)
    try:
        size = _apply_tar(reader, root)
        reader.drain()  # trailing zero blocks still belong to the DiffID
    except LayerError:
        raise
    except InvalidArgument as e:  # from decompression
        raise LayerError(e.message) from None
    except (tarfile.TarError, EOFError) as e:
        raise LayerError(f"invalid layer tar: {e}") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LayerError(f"apply layer: {os.strerror(e.errno)}") from None
        raise LayerError(f"apply layer: {e}") from None
    finally:
        raw.close()
    return Applied(reader.digest, reader.count, size, kind)


def _apply_tar(reader: HashingReader, root: Path) -> int:
    size = 0
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    # A 64 KiB read size: big files stream in few calls, and small headers copy little.
    with tarfile.open(fileobj=reader, mode="r|", bufsize=_TAR_BUF) as tar:
        for member in tar:
            rel = clean_name(member.name)
            if rel == "":
                _set_meta(root, member)  # the layer's root dir entry ("./")
                continue
            parent = resolve_in_root(root, os.path.dirname(rel), create=True)
            base = os.path.basename(rel)
            if base.startswith(WHITEOUT_PREFIX):
                _whiteout(parent, base)
                continue
            path = parent / base
            _make(tar, member, path, root)
            if member.isdir():
                dirs.append((path, member))
            elif member.isreg():
                size += member.size
    for path, member in reversed(dirs):  # after children, so their writes keep our mtimes
        _set_times(path, member)
    return size


def clean_name(name: str) -> str:
    """A tar entry's name relative to the root; ``..`` escaping the root is refused."""
    parts: list[str] = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise LayerError(f"invalid layer tar: path traversal in entry {name!r}")
        parts.append(part)
    return "/".join(parts)


def resolve_in_root(root: Path, rel: str, *, create: bool = False) -> Path:
    """*rel* under *root*, following symlinks as if *root* were ``/`` (never leaving it).

    With *create*, missing directories are made (mode 0755, as tar does).
    """
    current = root
    todo = [p for p in rel.split("/") if p]
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in (".", ""):
            continue
        if part == "..":
            current = current.parent if current != root else root
            continue
        nxt = current / part
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            if not create:
                return nxt.joinpath(*todo)
            os.mkdir(nxt, 0o755)
            current = nxt
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_LINKS:
                raise LayerError(f"invalid layer tar: too many symlinks resolving {rel!r}")
            target = os.readlink(nxt)
            if target.startswith("/"):
                current = root
            todo = [p for p in target.split("/") if p] + todo
            continue
        if not stat.S_ISDIR(st.st_mode):
            if not create:
                return nxt.joinpath(*todo)
            raise LayerError(f"invalid layer tar: {rel!r}: {part!r} is not a directory")
        current = nxt
    return current


def _whiteout(parent: Path, base: str) -> None:
    if base == OPAQUE:
        os.setxattr(parent, OPAQUE_XATTR, b"y")
        return
    name = base[len(WHITEOUT_PREFIX) :]
    if not name or name in (".", "..") or name.startswith(WHITEOUT_PREFIX):
        raise LayerError(f"invalid layer tar: bad whiteout {base!r}")
    target = parent / name
    remove_any(target)
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def _make(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path, root: Path) -> None:
    if member.isdir():
        if not path.is_dir() or path.is_symlink():
            remove_any(path)
            os.mkdir(path, 0o755)
    else:
        remove_any(path)
        if member.isreg():
            _write_file(tar, member, path)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            _hard_link(member, path, root)
            return  # a link shares its target's inode and metadata
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise LayerError(f"invalid layer tar: unsupported entry type for {member.name!r}")
    _set_meta(path, member)
    if not member.isdir():
        _set_times(path, member)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    extracted = tar.extractfile(member)
    assert extracted is not None
    # The unbuffered reader: it maps positions onto the (forward-only) stream itself.
    src = extracted.raw  # type: ignore[attr-defined]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with extracted, os.fdopen(fd, "wb") as dst:
        # Sparse members: only the data regions are read and written, so a tar that
        # declares a huge sparse file cannot make us write (or read) its holes.
        sparse: list[tuple[int, int]] | None = member.sparse  # type: ignore[assignment]
        regions = sparse if sparse is not None else [(0, member.size)]
        for offset, length in regions:
            src.seek(offset)
            if offset != dst.tell():
                dst.seek(offset)
            left = length
            while left:
                chunk = src.read(min(left, _CHUNK))
                if not chunk:
                    raise LayerError(f"invalid layer tar: {member.name!r} is truncated")
                dst.write(chunk)
                left -= len(chunk)
        dst.truncate(member.size)


def _hard_link(member: tarfile.TarInfo, path: Path, root: Path) -> None:
    rel = clean_name(member.linkname)
    if not rel:
        raise LayerError(f"invalid layer tar: hard link {member.name!r} to the root")
    target = resolve_in_root(root, os.path.dirname(rel)) / os.path.basename(rel)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        raise LayerError(
            f"invalid layer tar: hard link {member.name!r} to {member.linkname!r}, "
            "which is not in this layer"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise LayerError(f"invalid layer tar: hard link {member.name!r} to a directory")
    os.link(target, path, follow_symlinks=False)


def _set_meta(path: Path, member: tarfile.TarInfo) -> None:
    os.lchown(path, member.uid, member.gid)
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            name = key[len("SCHILY.xattr.") :]
            data = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(path, name, data, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.ENOTSUP, errno.EPERM):
                    raise
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)  # after chown, which clears setuid bits


def _set_times(path: Path, member: tarfile.TarInfo) -> None:
    mtime = int(member.mtime)
    os.utime(path, (mtime, mtime), follow_symlinks=False)
