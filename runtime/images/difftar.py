"""Write a directory tree as a layer tar; an overlay upper dir's whiteouts become ``.wh.`` entries.

The inverse of :mod:`.unpack`: a 0:0 character device is a whiteout, a
directory with ``trusted.overlay.opaque=y`` gets a ``.wh..wh..opq`` entry.
Entries are sorted so the same tree always gives the same DiffID.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path
from typing import Protocol

from runtime.images.idshift import IdShift
from runtime.images.unpack import OPAQUE, OPAQUE_XATTR, WHITEOUT_PREFIX


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write_tree(root: Path, out: Writer, *, overlay: bool = True,
               shift: IdShift | None = None) -> None:
    """Tar *root*'s contents (not *root* itself) to *out*, uncompressed, PAX format.

    *shift*: *root* is a remapped container's upper dir, whose files hold host ids;
    the layer records the container's (moby's IdentityMapping on commit), so the
    image means the same with and without remapping. Whiteouts need none: they
    are written as fresh 0:0 entries."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        links: dict[tuple[int, int], str] = {}
        _walk(tar, root, "", links, overlay, shift)


def _walk(tar: tarfile.TarFile, root: Path, rel: str, links: dict[tuple[int, int], str],
          overlay: bool, shift: IdShift | None) -> None:
    directory = root / rel if rel else root
    for name in sorted(os.listdir(directory)):
        path = directory / name
        arc = f"{rel}/{name}" if rel else name
        st = os.lstat(path)
        if overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            tar.addfile(_empty(f"{rel}/{WHITEOUT_PREFIX}{name}" if rel else WHITEOUT_PREFIX + name))
            continue
        if stat.S_ISSOCK(st.st_mode):
            continue  # sockets do not travel in layers (Docker skips them too)
        info = _info(path, arc, st, links, overlay)
        if shift is not None:
            info.uid, info.gid = shift.to_container(info.uid, info.gid)
        if info.isreg():
            with open(path, "rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)
        if stat.S_ISDIR(st.st_mode):
            if overlay and _xattr(path, OPAQUE_XATTR) == b"y":
                tar.addfile(_empty(f"{arc}/{OPAQUE}"))
            _walk(tar, root, arc, links, overlay, shift)


def _info(path: Path, arc: str, st: os.stat_result, links: dict[tuple[int, int], str],
          overlay: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arc)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISREG(mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in links:
            info.type, info.linkname = tarfile.LNKTYPE, links[key]
        else:
            links[key] = arc
            info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    for name in _xattr_names(path):
        if overlay and name.startswith("trusted.overlay."):
            continue
        value = _xattr(path, name)
        if value is not None:
            headers = dict(info.pax_headers)
            headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
            info.pax_headers = headers
    return info


def _empty(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info


def _xattr_names(path: Path) -> list[str]:
    try:
        return sorted(os.listxattr(path, follow_symlinks=False))
    except OSError:
        return []


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None
