"""The container's filesystem, built inside its own mount namespace, then pivot_root.

Runs in the container process after ``unshare(CLONE_NEWNS)``: every mount made
here lives and dies with the namespace, so nothing leaks onto the host even if
the container is SIGKILLed. Order follows runc: rootfs, /proc, /sys, /dev and
its devices, the spec's mounts, pivot_root, then masked and read-only paths.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass

from runtime.linux import syscalls as s
from runtime.linux.syscalls import Syscalls
from runtime.spec import ContainerSpec, IdMapping, Mount

_FLAGS: dict[str, tuple[bool, int]] = {
    # option: (clear?, flag)
    "ro": (False, s.MS_RDONLY), "rw": (True, s.MS_RDONLY),
    "nosuid": (False, s.MS_NOSUID), "suid": (True, s.MS_NOSUID),
    "nodev": (False, s.MS_NODEV), "dev": (True, s.MS_NODEV),
    "noexec": (False, s.MS_NOEXEC), "exec": (True, s.MS_NOEXEC),
    "sync": (False, s.MS_SYNCHRONOUS), "async": (True, s.MS_SYNCHRONOUS),
    "dirsync": (False, s.MS_DIRSYNC),
    "noatime": (False, s.MS_NOATIME), "atime": (True, s.MS_NOATIME),
    "nodiratime": (False, s.MS_NODIRATIME), "diratime": (True, s.MS_NODIRATIME),
    "relatime": (False, s.MS_RELATIME), "norelatime": (True, s.MS_RELATIME),
    "strictatime": (False, s.MS_STRICTATIME),
    "bind": (False, s.MS_BIND), "rbind": (False, s.MS_BIND | s.MS_REC),
    "remount": (False, s.MS_REMOUNT),
}
_PROPAGATION = {
    "private": s.MS_PRIVATE, "rprivate": s.MS_PRIVATE | s.MS_REC,
    "shared": s.MS_SHARED, "rshared": s.MS_SHARED | s.MS_REC,
    "slave": s.MS_SLAVE, "rslave": s.MS_SLAVE | s.MS_REC,
    "unbindable": s.MS_UNBINDABLE, "runbindable": s.MS_UNBINDABLE | s.MS_REC,
}
# (name, major, minor) of the character devices every container gets.
_DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
            ("urandom", 1, 9), ("tty", 5, 0))
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
              ("core", "/proc/kcore"), ("ptmx", "pts/ptmx"))
_NOSUID_NODEV_NOEXEC = s.MS_NOSUID | s.MS_NODEV | s.MS_NOEXEC


# OCI 1.1's mount options: map the mount's ids through the container's user namespace.
_IDMAP_OPTIONS = ("idmap", "ridmap")
_OVERFLOW_ID = 65534


@dataclass(frozen=True, slots=True)
class MountOptions:
    flags: int
    clear: int
    propagation: int
    data: str
    idmap: bool = False


@dataclass(frozen=True, slots=True)
class Idmap:
    """The container's id maps, for idmapped mounts made before it enters its user namespace.

    *userns_fd* is a user namespace with exactly the container's maps (the monitor's
    helper, see ``Monitor._idmap_userns``): on a mount idmapped through it, a file owned
    by id 0 on disk shows as the remapped root on the host, hence as root inside.
    """

    userns_fd: int
    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]

    @property
    def root(self) -> tuple[int, int]:
        """The host uid and gid of the container's root."""
        return _to_host(self.uid_mappings, 0), _to_host(self.gid_mappings, 0)

    def to_disk(self, uid: int, gid: int) -> tuple[int, int]:
        """Host ids as seen in the container (what an idmapped mount stores on disk)."""
        return _to_container(self.uid_mappings, uid), _to_container(self.gid_mappings, gid)


def _to_host(maps: tuple[IdMapping, ...], container_id: int) -> int:
    for m in maps:
        if m.container_id <= container_id < m.container_id + m.size:
            return m.host_id + container_id - m.container_id
    return _OVERFLOW_ID


def _to_container(maps: tuple[IdMapping, ...], host_id: int) -> int:
    for m in maps:
        if m.host_id <= host_id < m.host_id + m.size:
            return m.container_id + host_id - m.host_id
    return _OVERFLOW_ID


def parse_options(options: tuple[str, ...]) -> MountOptions:
    flags = clear = prop = 0
    data: list[str] = []
    idmap = False
    for opt in options:
        if opt in _IDMAP_OPTIONS:
            idmap = True
        elif opt in _FLAGS:
            is_clear, flag = _FLAGS[opt]
            if is_clear:
                clear |= flag
                flags &= ~flag
            else:
                flags |= flag
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return MountOptions(flags, clear, prop, ",".join(data), idmap)


def inside(root: str, path: str) -> str:
    """*path* (absolute, in the container) under *root*, refusing to climb out with '..'."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"mount destination {path!r} contains '..'")
    return os.path.join(root, *parts)


def _ensure(target: str, is_dir: bool) -> None:
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def mount_one(sc: Syscalls, m: Mount, target: str, idmap: Idmap | None = None) -> None:
    """Mount *m* on *target* (created if missing); binds honour ro/nosuid by remounting.

    With the ``idmap`` option a bind is an idmapped clone of its source, and an overlay
    gets idmapped lower layers and an upper dir owned by the container's root."""
    o = parse_options(m.options)
    if o.idmap and idmap is None:
        raise ValueError(f"mount {m.destination!r}: idmap without a user namespace")
    is_bind = m.type == "bind" or bool(o.flags & s.MS_BIND)
    _ensure(target, not is_bind or os.path.isdir(m.source))
    if is_bind:
        _mount_bind(sc, m.source, target, o.flags | s.MS_BIND, idmap if o.idmap else None)
    else:
        _mount_fs(sc, m, target, o, idmap if o.idmap else None)
    if o.propagation:
        sc.mount(None, target, None, o.propagation, None)


def _mount_bind(sc: Syscalls, source: str, target: str, flags: int,
                idmap: Idmap | None) -> None:
    if idmap is not None:
        idmapped_bind(sc, source, target, idmap, recursive=bool(flags & s.MS_REC))
    else:
        sc.mount(source, target, None, flags & (s.MS_BIND | s.MS_REC), None)
    # Bind mounts ignore every other flag until a remount.
    extra = flags & ~(s.MS_BIND | s.MS_REC | s.MS_REMOUNT)
    if extra:
        sc.mount(None, target, None, s.MS_REMOUNT | s.MS_BIND | extra, None)


def _mount_fs(sc: Syscalls, m: Mount, target: str, o: MountOptions,
              idmap: Idmap | None) -> None:
    if m.type == "overlay" and idmap is not None:
        _idmap_overlay_dirs(sc, m.source if m.source.startswith("/") else "/", o.data, idmap)
    if m.type == "overlay" and m.source.startswith("/"):
        # Lower dirs relative to the source dir (overlay2's short l/ links): the only
        # way ~128 layers fit the one-page mount data. We are single-threaded here.
        target, home = os.path.abspath(target), os.open(".", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.chdir(m.source)
            sc.mount("overlay", target, m.type, o.flags, o.data or None)
        finally:
            os.fchdir(home)
            os.close(home)
    else:
        sc.mount(m.source or m.type, target, m.type, o.flags, o.data or None)


def idmapped_bind(sc: Syscalls, source: str, target: str, idmap: Idmap, *,
                  recursive: bool) -> None:
    """Bind *source* on *target* with its ids mapped through *idmap*: a detached clone
    (open_tree), idmapped while still detached (the kernel allows it only then), attached."""
    flags = s.OPEN_TREE_CLONE | s.OPEN_TREE_CLOEXEC | (s.AT_RECURSIVE if recursive else 0)
    fd = sc.open_tree(source, flags)
    try:
        sc.idmap_mount_fd(fd, idmap.userns_fd, recursive)
        sc.move_mount_fd(fd, target)
    finally:
        os.close(fd)


def _overlay_options(data: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in data.split(",") if "=" in kv)


def _idmap_overlay_dirs(sc: Syscalls, base: str, data: str, idmap: Idmap) -> None:
    """Idmap each lower layer in place and give the upper and work dirs to container root.

    Layers are shared by every container of the image, so they are never chowned: each
    lower dir (resolved through overlay2's l/ links, relative to *base*) is covered, in
    this private mount namespace only, by an idmapped clone of itself, and overlayfs
    (5.19+) accepts idmapped lower layers. The upper dir is this container's alone and
    is chowned rather than idmapped, so that what the container writes is owned on disk
    by the remapped ids, as under dockerd (overlayfs would also take an idmapped upper,
    but then container root's files would be uid 0 on the host).
    """
    opts = _overlay_options(data)
    seen: set[str] = set()
    for lower in opts.get("lowerdir", "").split(":"):
        path = os.path.realpath(os.path.join(base, lower)) if lower else ""
        if path and path not in seen:  # one layer twice would be idmapped twice: EPERM
            seen.add(path)
            idmapped_bind(sc, path, path, idmap, recursive=False)
    uid, gid = idmap.root
    for key in ("upperdir", "workdir"):
        if key in opts:
            os.chown(os.path.join(base, opts[key]), uid, gid)


def _mount_rootfs(sc: Syscalls, spec: ContainerSpec, idmap: Idmap | None) -> None:
    for m in spec.rootfs_mounts:
        mount_one(sc, m, inside(spec.rootfs, m.destination or "/"), idmap)
    if not spec.rootfs_mounts:
        # pivot_root needs the new root to be a mount point.
        sc.mount(spec.rootfs, spec.rootfs, None, s.MS_BIND | s.MS_REC, None)


def _mount_dev(sc: Syscalls, spec: ContainerSpec) -> None:
    root = spec.rootfs
    dev = inside(root, "/dev")
    _ensure(dev, True)
    sc.mount("tmpfs", dev, "tmpfs", s.MS_NOSUID | s.MS_STRICTATIME, "mode=755,size=65536k")
    if spec.privileged:
        _copy_host_devices(dev)
    else:
        for name, major, minor in _DEVICES:
            target = os.path.join(dev, name)
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(target, 0o666)  # despite the umask
    for name, link in _DEV_LINKS:
        os.symlink(link, os.path.join(dev, name))
    pts = os.path.join(dev, "pts")
    os.mkdir(pts, 0o755)
    sc.mount("devpts", pts, "devpts", s.MS_NOSUID | s.MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5")
    shm = os.path.join(dev, "shm")
    os.mkdir(shm, 0o1777)
    sc.mount("shm", shm, "tmpfs", _NOSUID_NODEV_NOEXEC, f"mode=1777,size={spec.shm_size}")
    mqueue = os.path.join(dev, "mqueue")
    os.mkdir(mqueue, 0o755)
    try:
        sc.mount("mqueue", mqueue, "mqueue", _NOSUID_NODEV_NOEXEC, None)
    except OSError:
        # A joined IPC namespace owned by another user namespace refuses a new mqueue mount.
        os.rmdir(mqueue)


def _copy_host_devices(dev: str) -> None:
    skip = {"pts", "shm", "mqueue", "console", "ptmx", "fd", "stdin", "stdout", "stderr", "core"}
    for top, dirs, files in os.walk("/dev"):
        rel = os.path.relpath(top, "/dev")
        dirs[:] = [d for d in dirs if not (rel == "." and d in skip)]
        for name in files:
            if rel == "." and name in skip:
                continue
            host = os.path.join(top, name)
            st = os.lstat(host)
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                continue
            target = os.path.join(dev, rel, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.mknod(target, st.st_mode, st.st_rdev)
            os.chown(target, st.st_uid, st.st_gid)


def _mount_proc_sys(sc: Syscalls, spec: ContainerSpec, own_netns: bool) -> None:
    proc = inside(spec.rootfs, "/proc")
    _ensure(proc, True)
    sc.mount("proc", proc, "proc", _NOSUID_NODEV_NOEXEC, None)
    for key, value in spec.sysctls:
        # Written now, before /proc/sys turns read-only.
        with open(os.path.join(proc, "sys", *key.split(".")), "w") as f:
            f.write(value)
    sys_dir = inside(spec.rootfs, "/sys")
    _ensure(sys_dir, True)
    ro = 0 if spec.privileged else s.MS_RDONLY
    if own_netns:
        sc.mount("sysfs", sys_dir, "sysfs", _NOSUID_NODEV_NOEXEC | ro, None)
    else:
        # sysfs may only be mounted by the owner of the network namespace: bind the host's.
        sc.mount("/sys", sys_dir, None, s.MS_BIND | s.MS_REC, None)
        if ro:
            sc.mount(None, sys_dir, None, s.MS_REMOUNT | s.MS_BIND | ro | _NOSUID_NODEV_NOEXEC,
                     None)


def _mount_cgroupfs(sc: Syscalls, spec: ContainerSpec, v2: bool) -> None:
    target = inside(spec.rootfs, "/sys/fs/cgroup")
    if not os.path.isdir(target):
        return
    ro = 0 if spec.privileged else s.MS_RDONLY
    flags = _NOSUID_NODEV_NOEXEC | ro
    try:
        if v2:
            sc.mount("cgroup", target, "cgroup2", flags, None)
            return
        sc.mount("tmpfs", target, "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=755")
        for ctrl in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio",
                     "pids"):
            sub = os.path.join(target, ctrl)
            os.mkdir(sub, 0o755)
            sc.mount("cgroup", sub, "cgroup", flags, ctrl)
        sc.mount(None, target, None, s.MS_REMOUNT | flags, "mode=755")
    except OSError:
        # Without a cgroup namespace the kernel may refuse; the container just lacks it.
        pass


def prepare_rootfs(sc: Syscalls, spec: ContainerSpec, *,
                   own_netns: bool, cgroup_v2: bool, own_cgroupns: bool,
                   idmap: Idmap | None = None) -> None:
    """Everything up to (not including) pivot_root, in the new mount namespace.

    *idmap* serves the mounts with the ``idmap`` option (a user-namespaced container)."""
    sc.mount(None, "/", None, s.MS_REC | s.MS_PRIVATE, None)
    _mount_rootfs(sc, spec, idmap)
    _mount_proc_sys(sc, spec, own_netns)
    if own_cgroupns:
        _mount_cgroupfs(sc, spec, cgroup_v2)
    _mount_dev(sc, spec)
    for m in spec.mounts:
        target = inside(spec.rootfs, m.destination)
        if COPYUP in m.options:
            # Through an idmapped volume container root's files are uid 0 on disk.
            idmapped = idmap is not None and parse_options(m.options).idmap
            copy_up(target, m.source, idmap.to_disk if idmap and idmapped else None)
            m = Mount(destination=m.destination, type=m.type, source=m.source,
                      options=tuple(o for o in m.options if o != COPYUP))
        mount_one(sc, m, target, idmap)


COPYUP = "copyup"


Owner = Callable[[int, int], tuple[int, int]]


def _same_ids(uid: int, gid: int) -> tuple[int, int]:
    return uid, gid


def copy_up(image_dir: str, volume_dir: str, owner: Owner | None = None) -> None:
    """Docker's volume population: an empty volume gets the image's content at its path.

    Runs before the volume is mounted over *image_dir*, so the image's files are still
    visible there; ownership, modes, times and symlinks are kept. *owner* turns the ids
    seen in *image_dir* into those to store (the volume may be idmapped later).
    """
    own = owner or _same_ids
    if not os.path.isdir(volume_dir) or os.listdir(volume_dir):
        return
    if os.path.islink(image_dir) or not os.path.isdir(image_dir):
        return
    st = os.lstat(image_dir)
    os.chown(volume_dir, *own(st.st_uid, st.st_gid))
    os.chmod(volume_dir, stat.S_IMODE(st.st_mode))
    copy = functools.partial(_copy_owned, own=own)
    for entry in os.scandir(image_dir):
        src = entry.path
        dst = os.path.join(volume_dir, entry.name)
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(src, dst, symlinks=True, copy_function=copy)
            _own_tree(src, dst, own)
        else:
            copy(src, dst)


def _copy_owned(src: str, dst: str, own: Owner = _same_ids) -> str:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)
    st = os.lstat(src)
    os.lchown(dst, *own(st.st_uid, st.st_gid))
    return dst


def _own_tree(src: str, dst: str, own: Owner = _same_ids) -> None:
    """copytree keeps modes but not owners of directories: fix them."""
    for root, dirs, _ in os.walk(src):
        for d in [root, *(os.path.join(root, x) for x in dirs)]:
            st = os.lstat(d)
            os.lchown(os.path.join(dst, os.path.relpath(d, src)), *own(st.st_uid, st.st_gid))


def pivot(sc: Syscalls, rootfs: str) -> None:
    """Make *rootfs* the root and lazily detach the old one (runc's pivot_root(".", "."))."""
    os.chdir(rootfs)
    sc.pivot_root(".", ".")
    sc.mount(None, ".", None, s.MS_SLAVE | s.MS_REC, None)
    sc.umount2(".", s.MNT_DETACH)
    os.chdir("/")


def finish_rootfs(sc: Syscalls, spec: ContainerSpec) -> None:
    """After pivot_root: masked and read-only paths, then a read-only root if asked."""
    if not spec.privileged:
        for path in spec.masked_paths:
            _mask(sc, path)
        for path in spec.readonly_paths:
            _readonly(sc, path)
    if spec.readonly_rootfs:
        sc.mount(None, "/", None, s.MS_REMOUNT | s.MS_BIND | s.MS_RDONLY, None)


def bind_console(sc: Syscalls, pts: str) -> None:
    """/dev/console is the container's terminal, as under runc."""
    _ensure("/dev/console", False)
    sc.mount(pts, "/dev/console", None, s.MS_BIND, None)


def _mask(sc: Syscalls, path: str) -> None:
    if not os.path.lexists(path):
        return
    if os.path.isdir(path):
        sc.mount("tmpfs", path, "tmpfs", s.MS_RDONLY, None)
    else:
        sc.mount("/dev/null", path, None, s.MS_BIND, None)


def _readonly(sc: Syscalls, path: str) -> None:
    if not os.path.lexists(path):
        return
    sc.mount(path, path, None, s.MS_BIND | s.MS_REC, None)
    sc.mount(None, path, None,
             s.MS_REMOUNT | s.MS_BIND | s.MS_RDONLY | _NOSUID_NODEV_NOEXEC, None)
