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
"""

from __future__ import annotations

import base64
import errno
import json
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

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
def _tarinfo(path: str, arcname: str, st: os.stat_result) -> tarfile.TarInfo | None:
    ti = tarfile.TarInfo(arcname)
    ti.mode, ti.uid, ti.gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
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


def write_tar(path: str, out: IO[bytes]) -> None:
    """Tar *path* as its base name (a trailing ``/.`` means "its contents")."""
    base = "." if path.endswith("/.") else os.path.basename(path.rstrip("/")) or "."
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for fs_path, arcname in _walk(path.rstrip("/") if base != "." else path, base):
            try:
                st = os.lstat(fs_path)
            except OSError:
                continue
            ti = _tarinfo(fs_path, arcname, st)
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
            copy_uid_gid: bool) -> None:
    with tarfile.open(fileobj=src, mode="r|*") as tar:
        for member in tar:
            parts = [p for p in member.name.split("/") if p not in ("", ".")]
            if not parts or ".." in parts:
                continue
            member.name = "/".join(parts)
            target = os.path.join(dest, member.name)
            _make_room(target, member, no_overwrite_dir_non_dir)
            if not copy_uid_gid:
                member.uid = member.gid = 0
            member.uname = member.gname = ""
            tar.extract(member, dest, numeric_owner=True)


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
def _enter(spec: dict[str, Any]) -> None:
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
    for m in spec.get("rootfs") or []:
        _sys.mount(m["source"], root, m["type"], 0, ",".join(m.get("options") or []) or None)
    for m in sorted(spec.get("mounts") or [], key=lambda m: m["destination"].count("/")):
        _bind_in(root, m)
    os.chroot(root)
    os.chdir("/")


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


def _bind_in(root: str, m: dict[str, Any]) -> None:
    """Mount a bind/volume at its destination inside the (not yet chrooted) rootfs."""
    from runtime.net import _sys

    if m.get("type") != "bind" or not os.path.exists(m["source"]):
        return
    dest = resolve_in_root(root, m["destination"])
    try:
        if os.path.isdir(m["source"]):
            os.makedirs(dest, exist_ok=True)
        elif not os.path.exists(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            open(dest, "a").close()
        opts = m.get("options") or []
        flags = _sys.MS_BIND | (_sys.MS_REC if "rbind" in opts else 0)
        _sys.mount(m["source"], dest, None, flags)
        if "ro" in opts:
            _sys.mount(None, dest, None, _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY)
    except OSError:
        pass  # a read-only rootfs without the mount point: the path just is not there


# ---------------------------------------------------------------------- worker main
def _line(out: IO[bytes], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj).encode() + b"\n")
    out.flush()


def main(argv: list[str]) -> int:
    out = sys.stdout.buffer
    spec = json.loads(argv[0])
    try:
        _enter(spec)
        path = spec["path"] or "/"
        st = path_stat(path)
        if spec["op"] == "put":
            if not st["mode"] & GO_DIR:
                raise WorkerError(400, "extraction point is not a directory")
            _line(out, {"stat": st})
            extract(path, sys.stdin.buffer, no_overwrite_dir_non_dir=bool(spec.get("no_overwrite")),
                    copy_uid_gid=bool(spec.get("copy_uid_gid")))
            _line(out, {"ok": True})
            return 0
        _line(out, {"stat": st})
        if spec["op"] == "get":
            write_tar(path, out)
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
