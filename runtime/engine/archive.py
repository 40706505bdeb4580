"""``docker cp`` file work inside a container, done by a short-lived worker process.

The engine never resolves container paths itself: a path may cross symlinks
that only make sense inside the container. Instead it runs
``python -m runtime.engine.archive SPEC`` which

- for a running container joins its mount namespace (``setns``: "/" is then the
  container's root, so every symlink resolves the way the container sees it);
- for a stopped one unshares a private mount namespace, mounts the container's
  rootfs overlay and its volumes, and ``chroot``s into it; when the worker exits
  the namespace and every mount in it vanish, so nothing can leak;

and then stats, tars (to stdout) or untars (from stdin). Protocol on stdout:
one JSON line first (``{"stat": {...}}`` or ``{"error": msg, "status": code}``),
then, for ``get``, the tar stream; for ``put``, one more JSON line at the end.
Names are never looked up (numeric owners only): NSS inside the container's
root could load the container's shared libraries into a root process.

Under ``--userns-remap`` (a spec with ``ids``) the worker, like moby's
IdentityMapping, shows owners as the container sees them and stores what it
unpacks with the host ids the container sees as the tar's: the view it works in
holds host ids throughout (a running container's layers and volumes are
idmapped mounts in its namespace; for a stopped one the worker idmaps them the
same way), so one translation through the container's maps fits every file.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import importlib
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.images.idshift import IdShift
    from runtime.linux.rootfs import Idmap

# Go os.FileMode type bits (docker cp reads these, not st_mode).
GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27
GO_DEVICE = 1 << 26
GO_PIPE = 1 << 25
GO_SOCKET = 1 << 24
GO_SETUID = 1 << 23
GO_SETGID = 1 << 22
GO_CHARDEV = 1 << 21
GO_STICKY = 1 << 20


class WorkerError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def go_mode(st_mode: int) -> int:
    mode = st_mode & 0o777
    if stat.S_ISDIR(st_mode):
        mode |= GO_DIR
    elif stat.S_ISLNK(st_mode):
        mode |= GO_SYMLINK
    elif stat.S_ISFIFO(st_mode):
        mode |= GO_PIPE
    elif stat.S_ISSOCK(st_mode):
        mode |= GO_SOCKET
    elif stat.S_ISCHR(st_mode):
        mode |= GO_DEVICE | GO_CHARDEV
    elif stat.S_ISBLK(st_mode):
        mode |= GO_DEVICE
    if st_mode & stat.S_ISUID:
        mode |= GO_SETUID
    if st_mode & stat.S_ISGID:
        mode |= GO_SETGID
    if st_mode & stat.S_ISVTX:
        mode |= GO_STICKY
    return mode


def rfc3339nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    digits = f"{frac:09d}".rstrip("0")
    return f"{base}.{digits}Z" if digits else f"{base}Z"


def path_stat(path: str) -> dict[str, Any]:
    """Docker's PathStat of *path* (not following a final symlink)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise WorkerError(404, f"Could not find the file {path} in container") from None
    except NotADirectoryError:
        raise WorkerError(404, f"Could not find the file {path} in container") from None
    target = os.path.realpath(path) if stat.S_ISLNK(st.st_mode) else ""
    name = os.path.basename(path.rstrip("/")) or "/"
    if path.endswith("/."):
        name = "."
    return {"name": name, "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": rfc3339nano(st.st_mtime_ns), "linkTarget": target}


def encode_stat(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


# ---------------------------------------------------------------------- tar out
def _tarinfo(path: str, arcname: str, st: os.stat_result,
             shift: IdShift | None = None) -> tarfile.TarInfo | None:
    ti = tarfile.TarInfo(arcname)
    ti.mode, ti.uid, ti.gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    if shift is not None:
        ti.uid, ti.gid = shift.to_container(st.st_uid, st.st_gid)
    ti.mtime, ti.uname, ti.gname = st.st_mtime, "", ""
    m = st.st_mode
    if stat.S_ISREG(m):
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(m):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(m):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISFIFO(m):
        ti.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        return None  # sockets are not archived (as moby)
    return ti


def write_tar(path: str, out: IO[bytes], shift: IdShift | None = None) -> None:
    """Tar *path* as its base name (a trailing ``/.`` means "its contents"), with
    owners translated to the container's ids through *shift*."""
    base = "." if path.endswith("/.") else os.path.basename(path.rstrip("/")) or "."
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for fs_path, arcname in _walk(path.rstrip("/") if base != "." else path, base):
            try:
                st = os.lstat(fs_path)
            except OSError:
                continue
            ti = _tarinfo(fs_path, arcname, st, shift)
            if ti is None:
                continue
            if ti.type == tarfile.REGTYPE:
                try:
                    with open(fs_path, "rb") as f:
                        tar.addfile(ti, f)
                except OSError:
                    continue
            else:
                tar.addfile(ti)


def _walk(path: str, arcname: str) -> Iterator[tuple[str, str]]:
    yield path, arcname
    if not os.path.isdir(path) or os.path.islink(path):
        return
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        yield from _walk(os.path.join(path, e.name), f"{arcname}/{e.name}")


# ---------------------------------------------------------------------- tar in
def extract(dest: str, src: IO[bytes], *, no_overwrite_dir_non_dir: bool,
            copy_uid_gid: bool, shift: IdShift | None = None) -> None:
    """Unpack *src* into *dest*; owners are the tar's (*copy_uid_gid*) or root, as
    container ids, stored as the host ids *shift* maps them to."""
    root = shift.root if shift is not None else (0, 0)
    with tarfile.open(fileobj=src, mode="r|*") as tar:
        for member in tar:
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if not parts or ".." in parts:
                continue
            member.name = "/".join(parts)
            target = os.path.join(dest, member.name)
            _make_room(target, member, no_overwrite_dir_non_dir)
            uid, gid = (member.uid, member.gid) if copy_uid_gid else (0, 0)
            member.uid, member.gid = _host_ids(shift, uid, gid)
            member.uname = member.gname = ""
            _make_parents(dest, parts[:-1], root)
            tar.extract(member, dest, numeric_owner=True)


def _host_ids(shift: IdShift | None, uid: int, gid: int) -> tuple[int, int]:
    if shift is None:
        return uid, gid
    from runtime.api.errors import InvalidArgument  # loaded with idshift (_load_remap)

    try:
        return shift.to_host(uid, gid)
    except InvalidArgument as e:
        raise WorkerError(400, str(e)) from None


def _make_parents(dest: str, parents: list[str], owner: tuple[int, int]) -> None:
    """Directories the tar implies but does not list, owned by the container's root (as
    moby's MkdirAllAndChownNew): left to tarfile they would belong to the worker's
    uid, i.e. to nobody inside a remapped container."""
    path = dest
    for name in parents:
        path = os.path.join(path, name)
        if os.path.lexists(path):
            continue
        os.mkdir(path, 0o755)
        os.chown(path, *owner)


def _make_room(target: str, member: tarfile.TarInfo, strict: bool) -> None:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    existing_dir = stat.S_ISDIR(st.st_mode)
    if existing_dir and member.isdir():
        return
    if strict and existing_dir != member.isdir():
        if existing_dir:
            raise WorkerError(400, f"cannot overwrite directory {target!r} with non-directory "
                                   f"{member.name!r}")
        raise WorkerError(400, f"cannot overwrite non-directory {target!r} with directory "
                               f"{member.name!r}")
    if existing_dir:
        shutil.rmtree(target)
    else:
        os.unlink(target)


# ---------------------------------------------------------------------- namespaces
def _enter(spec: dict[str, Any], shift: IdShift | None) -> None:
    from runtime.net import _sys

    pid = int(spec.get("pid") or 0)
    if pid:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        _sys.setns(fd, _sys.CLONE_NEWNS)  # "/" and cwd become the container's root
        os.close(fd)
        os.chdir("/")
        return
    _sys.unshare(_sys.CLONE_NEWNS)
    _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
    # The container's own rootfs directory is the mount point (it exists for the
    # container's lifetime anyway), so the worker leaves no trace on the host.
    root = spec.get("target") or tempfile.mkdtemp(prefix="cove-cp-")
    os.makedirs(root, exist_ok=True)
    idmap = _idmap(shift)
    try:
        for m in spec.get("rootfs") or []:
            if idmap is None:
                _sys.mount(m["source"], root, m["type"], 0,
                           ",".join(m.get("options") or []) or None)
            else:
                _mount_idmapped_rootfs(root, m, idmap)
        for m in sorted(spec.get("mounts") or [], key=lambda m: m["destination"].count("/")):
            _bind_in(root, m, idmap, shift.root if shift is not None else (0, 0))
    finally:
        if idmap is not None:
            os.close(idmap.userns_fd)  # the mounts hold the namespace now
    os.chroot(root)
    os.chdir("/")


def _idmap(shift: IdShift | None) -> Idmap | None:
    """A stopped remapped container's view is idmapped like its running one, so the
    worker sees host ids everywhere (a running container's view, joined by setns,
    already is): its layers and its volumes through a user namespace with its maps."""
    if shift is None:
        return None
    from runtime.linux.rootfs import Idmap
    from runtime.linux.userns_fd import user_namespace_fd  # loaded by _load_remap

    fd = user_namespace_fd(shift.uid_mappings, shift.gid_mappings)
    return Idmap(fd, shift.uid_mappings, shift.gid_mappings)


def _mount_idmapped_rootfs(root: str, m: dict[str, Any], idmap: Idmap) -> None:
    from runtime.linux.rootfs import mount_one
    from runtime.linux.syscalls import SYSCALLS
    from runtime.spec import Mount

    options = (*(m.get("options") or ()), "idmap")
    mount_one(SYSCALLS, Mount(destination="/", type=m["type"], source=m["source"],
                              options=options), root, idmap)


def resolve_in_root(root: str, path: str) -> str:
    """*path* inside *root* with symlinks resolved as if *root* were "/" (no escape)."""
    parts = [p for p in path.split("/") if p]
    rel: list[str] = []
    hops = 0
    while parts:
        p = parts.pop(0)
        if p == ".":
            continue
        if p == "..":
            rel = rel[:-1]
            continue
        candidate = os.path.join(root, *rel, p)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise WorkerError(400, f"too many symlinks in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                rel = []
            parts = [x for x in target.split("/") if x] + parts
            continue
        rel.append(p)
    return os.path.join(root, *rel)


def _bind_in(root: str, m: dict[str, Any], idmap: Idmap | None,
             owner: tuple[int, int]) -> None:
    """Mount a bind/volume at its destination inside the (not yet chrooted) rootfs;
    those marked ``idmap`` (the engine's own data) through *idmap* when remapped."""
    from runtime.net import _sys

    if m.get("type") != "bind" or not os.path.exists(m["source"]):
        return
    dest = resolve_in_root(root, m["destination"])
    try:
        if os.path.isdir(m["source"]):
            _make_parents(root, os.path.relpath(dest, root).split("/"), owner)
        elif not os.path.exists(dest):
            _make_parents(root, os.path.relpath(os.path.dirname(dest), root).split("/"), owner)
            open(dest, "a").close()
            os.chown(dest, *owner)
        opts = m.get("options") or []
        recursive = "rbind" in opts
        if idmap is not None and "idmap" in opts:
            from runtime.linux.rootfs import idmapped_bind
            from runtime.linux.syscalls import SYSCALLS

            idmapped_bind(SYSCALLS, m["source"], dest, idmap, recursive=recursive)
        else:
            _sys.mount(m["source"], dest, None, _sys.MS_BIND | (_sys.MS_REC if recursive else 0))
        if "ro" in opts:
            _sys.mount(None, dest, None, _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY)
    except OSError:
        pass  # a read-only rootfs without the mount point: the path just is not there


def _act_as(owner: tuple[int, int]) -> None:
    """Create files as *owner* (container root's host ids), keeping root's capabilities.

    The kernel creates nothing on an idmapped mount (a remapped container's volumes)
    for a caller whose fsuid the mount cannot map (EOVERFLOW), and host root is
    unmapped there. The fsuid/fsgid switch drops the file-system capabilities from
    the effective set; they are still permitted, so they are raised again (CAP_CHOWN
    for the tar's owners, CAP_DAC_OVERRIDE and CAP_FOWNER for everything else)."""
    from runtime.linux.syscalls import SYSCALLS  # loaded by _load_remap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.setfsgid(owner[1])
    libc.setfsuid(owner[0])
    unchanged = 0xFFFFFFFF  # an invalid id: the call only reports the current one
    if (libc.setfsuid(unchanged), libc.setfsgid(unchanged)) != owner:
        raise OSError(errno.EPERM, f"could not act as {owner[0]}:{owner[1]}")
    _, permitted, inheritable = SYSCALLS.capget()
    SYSCALLS.capset(permitted, permitted, inheritable)


# ---------------------------------------------------------------------- worker main
# What the worker imports lazily under remapping (after it may have left the host's root).
_REMAP_MODULES = ("runtime.api.errors", "runtime.linux.rootfs", "runtime.linux.syscalls",
                  "runtime.linux.userns_fd", "runtime.spec")


def _line(out: IO[bytes], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj).encode() + b"\n")
    out.flush()


def _load_remap(ids: dict[str, Any] | None) -> IdShift | None:
    """The container's maps, and the code remapping needs, imported now: after setns or
    chroot the engine's files are out of reach. Not loaded without remapping, where
    they would only slow every ``docker cp`` down."""
    if not ids:
        return None
    for name in _REMAP_MODULES:
        importlib.import_module(name)
    from runtime.images.idshift import IdShift

    return IdShift.from_json(ids)


def main(argv: list[str]) -> int:
    out = sys.stdout.buffer
    spec = json.loads(argv[0])
    shift = _load_remap(spec.get("ids"))
    try:
        _enter(spec, shift)
        path = spec["path"] or "/"
        st = path_stat(path)
        if spec["op"] == "put":
            if not st["mode"] & GO_DIR:
                raise WorkerError(400, "extraction point is not a directory")
            _line(out, {"stat": st})
            if shift is not None:
                _act_as(shift.root)
            extract(path, sys.stdin.buffer, no_overwrite_dir_non_dir=bool(spec.get("no_overwrite")),
                    copy_uid_gid=bool(spec.get("copy_uid_gid")), shift=shift)
            _line(out, {"ok": True})
            return 0
        _line(out, {"stat": st})
        if spec["op"] == "get":
            write_tar(path, out, shift)
        return 0
    except WorkerError as e:
        _line(out, {"error": e.message, "status": e.status})
    except OSError as e:
        status = 403 if e.errno == errno.EROFS else 500
        msg = "container rootfs is marked read-only" if status == 403 else str(e)
        _line(out, {"error": msg, "status": status})
    except tarfile.TarError as e:
        _line(out, {"error": f"invalid tar stream: {e}", "status": 400})
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
