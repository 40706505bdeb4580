"""cgroup v1 and v2 behind one CgroupManager protocol (youki's libcgroups shape).

Which one is chosen at runtime by :func:`open_cgroup`: if ``/sys/fs/cgroup`` is
itself a cgroup2 mount the host is unified (v2); otherwise each v1 controller
is looked up in ``/proc/self/mountinfo`` (hybrid hosts keep their controllers on
v1, so an empty ``/sys/fs/cgroup/unified`` is ignored).

Everything here is plain file I/O, so the container's monitor can call it after
fork without importing anything.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runtime.api.errors import InvalidArgument
from runtime.spec import Resources

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")
V2_CONTROLLERS = ("cpu", "cpuset", "io", "memory", "pids")
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Docker's default device allow-list (v1 devices controller), "type major:minor access".
DEFAULT_DEVICE_RULES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c 5:0 rwm",  # tty
    "c 5:1 rwm",  # console
    "c 5:2 rwm",  # ptmx
    "c 136:* rwm",  # pts/*
    "c 10:200 rwm",  # net/tun
    "c 10:229 rwm",  # fuse
)


@dataclass(frozen=True, slots=True)
class CgroupStats:
    cpu_total_ns: int = 0
    cpu_percpu_ns: tuple[int, ...] = ()
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    memory_usage: int = 0
    memory_limit: int = 0  # 0: unlimited
    memory_stats: dict[str, int] = field(default_factory=dict)
    pids_current: int = 0
    pids_limit: int = 0  # 0: unlimited
    blkio_read_bytes: int = 0
    blkio_write_bytes: int = 0


class CgroupManager(Protocol):
    """One container's cgroup. Paths are relative to each hierarchy's root."""

    path: str

    def create(self) -> None:
        """Make the cgroup (and missing parents); idempotent."""
    def apply(self, resources: Resources, *, restrict_devices: bool = False) -> None:
        """Write the limits that are set; raises InvalidArgument if the kernel refuses one."""
    def join(self, pid: int) -> None:
        """Move *pid* (0: the caller) into the cgroup."""
    def pids(self) -> list[int]: ...
    def freeze(self) -> None: ...
    def thaw(self) -> None: ...
    def frozen(self) -> bool: ...
    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer took in this cgroup."""
    def stats(self) -> CgroupStats: ...
    def kill_all(self) -> None:
        """SIGKILL everything inside and wait (briefly) until it is empty."""
    def remove(self) -> None:
        """Kill what is left and remove the directories; a missing cgroup is fine."""
    def exists(self) -> bool: ...


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


def _read_int(path: Path, default: int = 0) -> int:
    try:
        text = _read(path)
    except OSError:
        return default
    return default if text in ("", "max") else int(text.split()[0])


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise InvalidArgument(f"cgroup: write {value!r} to {path}: {e.strerror}") from e


def _kv(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = _read(path)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _pids_in(files: list[Path]) -> list[int]:
    found: set[int] = set()
    for f in files:
        try:
            found.update(int(x) for x in _read(f).split())
        except OSError:
            continue
    return sorted(found)


def _wait_until(pred: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():  # type: ignore[operator]
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _rmdir(path: Path) -> None:
    for _ in range(200):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # EBUSY while the last killed tasks are still exiting.
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    path.rmdir()


def _mountinfo() -> list[tuple[str, str, list[str]]]:
    """(mount point, fs type, super options) of every mount of this process."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            out.append((fields[4], rfields[0], rfields[2].split(",") if len(rfields) > 2 else []))
    return out


def cgroup_version() -> int:
    for point, fstype, _ in _mountinfo():
        if point == str(CGROUP_ROOT) and fstype == "cgroup2":
            return 2
    return 1


def v1_mounts() -> dict[str, Path]:
    """Controller name -> mount point of its v1 hierarchy."""
    found: dict[str, Path] = {}
    for point, fstype, opts in _mountinfo():
        if fstype != "cgroup":
            continue
        for ctrl in V1_CONTROLLERS:
            if ctrl in opts and ctrl not in found:
                found[ctrl] = Path(point)
    return found


def _enable_blkio_accounting(leaf: Path, root: Path) -> None:
    """Make v1 ``blkio.throttle.io_service_bytes`` count on every disk.

    Since Linux 6.11 blk-throttle is set up on a disk only when some cgroup configures a
    limit there, and v1 byte counters are kept only where it is set up: until then every
    container's block I/O reads 0. An unlimited rule ("MAJ:MIN 0") sets it up for good, so
    it is written once per disk, for disks the hierarchy's root does not list yet (writing
    freezes the disk's queue for a moment).
    """
    try:
        listed = _read(root / "blkio.throttle.io_service_bytes_recursive")
    except OSError:
        return
    active = {line.split()[0] for line in listed.splitlines() if ":" in line.split()[0]}
    try:
        disks = list(Path("/sys/block").iterdir())
    except OSError:
        return
    for disk in disks:
        try:
            dev = _read(disk / "dev")
            if dev in active or _read_int(disk / "size") == 0:
                continue
            with open(leaf / "blkio.throttle.read_bps_device", "w") as f:
                f.write(f"{dev} 0")
        except OSError:
            continue  # a disk that went away or refuses throttling: no counters for it


def remove_parent_if_unused(parent: str) -> None:
    """Remove the engine's parent cgroup (e.g. ``cove``) in every hierarchy where it is empty.

    Called when the engine stops: with containers still running the rmdir fails
    and the parent stays, as it must.
    """
    roots = [CGROUP_ROOT] if cgroup_version() == 2 else sorted(set(v1_mounts().values()))
    if cgroup_version() == 1 and (CGROUP_ROOT / "unified").is_dir():
        roots.append(CGROUP_ROOT / "unified")
    for root in roots:
        try:
            (root / parent.strip("/")).rmdir()
        except OSError:
            continue  # missing, or still holding containers


def open_cgroup(path: str) -> CgroupManager:
    """The manager for *path* on this host's cgroup layout (probed on every call)."""
    if cgroup_version() == 2:
        return CgroupV2(CGROUP_ROOT, path)
    return CgroupV1(v1_mounts(), path)


def cgroup_layout(cgroup: CgroupManager) -> dict[str, str]:
    """Where *cgroup*'s hierarchies are mounted: ``{"": root}`` on v2, ``{controller:
    mount point}`` on v1. With :func:`open_cgroup_in` it makes the same manager without
    reading mountinfo again (the container monitor's helpers, on the start's path)."""
    if isinstance(cgroup, CgroupV2):
        return {"": str(cgroup.root)}
    if not isinstance(cgroup, CgroupV1):
        raise TypeError(f"no layout for {cgroup!r}")
    depth = len(Path(cgroup.path).parts)
    return {ctrl: str(d.parents[depth - 1] if depth else d) for ctrl, d in cgroup.dirs.items()}


def open_cgroup_in(layout: dict[str, str], path: str) -> CgroupManager:
    """The manager for *path* on the hierarchies *layout* describes (see cgroup_layout)."""
    if "" in layout:
        return CgroupV2(Path(layout[""]), path)
    return CgroupV1({ctrl: Path(point) for ctrl, point in layout.items()}, path)


class CgroupV1:
    def __init__(self, mounts: dict[str, Path], path: str) -> None:
        self.path = path.strip("/")
        self.dirs = {ctrl: point / self.path for ctrl, point in mounts.items()}

    def _all_dirs(self) -> list[Path]:
        return sorted(set(self.dirs.values()))

    def _f(self, ctrl: str, name: str) -> Path | None:
        d = self.dirs.get(ctrl)
        return None if d is None else d / name

    def exists(self) -> bool:
        return any(d.is_dir() for d in self._all_dirs())

    def create(self) -> None:
        for d in self._all_dirs():
            d.mkdir(parents=True, exist_ok=True)
        cpuset = self.dirs.get("cpuset")
        if cpuset is not None:
            self._inherit_cpuset(cpuset)
        blkio = self.dirs.get("blkio")
        if blkio is not None:
            _enable_blkio_accounting(blkio, blkio.parents[len(Path(self.path).parts) - 1])

    def _inherit_cpuset(self, leaf: Path) -> None:
        # A new v1 cpuset cgroup starts with no cpus/mems: no task could join it.
        chain: list[Path] = []
        d = leaf
        while (d / "cpuset.cpus").exists() and (d.parent / "cpuset.cpus").exists():
            chain.append(d)
            d = d.parent
        for d in reversed(chain):
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read(d / name):
                    _write(d / name, _read(d.parent / name))

    def apply(self, resources: Resources, *, restrict_devices: bool = False) -> None:
        r = resources
        self._apply_memory(r)
        self._set("cpu", "cpu.shares", r.cpu_shares)
        self._set("cpu", "cpu.cfs_period_us", r.cpu_period)
        if r.cpu_quota is not None:
            self._set("cpu", "cpu.cfs_quota_us", r.cpu_quota if r.cpu_quota > 0 else -1)
        if r.cpuset_cpus:
            self._set("cpuset", "cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems:
            self._set("cpuset", "cpuset.mems", r.cpuset_mems)
        if r.pids_limit is not None:
            self._set("pids", "pids.max", r.pids_limit if r.pids_limit > 0 else "max")
        weight = self._f("blkio", "blkio.weight")
        if r.blkio_weight and weight is not None and weight.exists():
            # Like Docker: a kernel without blkio weight silently discards it.
            _write(weight, str(r.blkio_weight))
        if restrict_devices and "devices" in self.dirs:
            _write(self.dirs["devices"] / "devices.deny", "a")
            for rule in DEFAULT_DEVICE_RULES:
                _write(self.dirs["devices"] / "devices.allow", rule)

    def _set(self, ctrl: str, name: str, value: object) -> None:
        if value is None:
            return
        f = self._f(ctrl, name)
        if f is None:
            raise InvalidArgument(f"cgroup: controller {ctrl} is not mounted")
        _write(f, str(value))

    def _apply_memory(self, r: Resources) -> None:
        self._set("memory", "memory.soft_limit_in_bytes", r.memory_reservation)
        if r.memory is None and r.memory_swap is None:
            return
        mem = r.memory if r.memory is not None and r.memory > 0 else -1
        memsw_file = self._f("memory", "memory.memsw.limit_in_bytes")
        swap = r.memory_swap if memsw_file is not None and memsw_file.exists() else None
        # memory.limit <= memsw.limit must hold after each write: order accordingly.
        try:
            self._set("memory", "memory.limit_in_bytes", mem)
            self._set("memory", "memory.memsw.limit_in_bytes", swap)
        except InvalidArgument:
            self._set("memory", "memory.memsw.limit_in_bytes", swap)
            self._set("memory", "memory.limit_in_bytes", mem)

    def join(self, pid: int) -> None:
        for d in self._all_dirs():
            _write(d / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _pids_in([d / "cgroup.procs" for d in self._all_dirs()])

    def freeze(self) -> None:
        state = self._f("freezer", "freezer.state")
        if state is None:
            raise InvalidArgument("cgroup: freezer controller is not mounted")
        _write(state, "FROZEN")
        _wait_until(lambda: _read(state) == "FROZEN", 5.0)

    def thaw(self) -> None:
        state = self._f("freezer", "freezer.state")
        if state is not None and state.exists():
            _write(state, "THAWED")

    def frozen(self) -> bool:
        state = self._f("freezer", "freezer.state")
        try:
            return state is not None and _read(state) in ("FROZEN", "FREEZING")
        except OSError:
            return False

    def oom_kills(self) -> int:
        f = self._f("memory", "memory.oom_control")
        return 0 if f is None else _kv(f).get("oom_kill", 0)

    def stats(self) -> CgroupStats:
        acct = self.dirs.get("cpuacct") or self.dirs.get("cpu")
        percpu: tuple[int, ...] = ()
        total = user = system = 0
        if acct is not None:
            total = _read_int(acct / "cpuacct.usage")
            try:
                percpu = tuple(int(x) for x in _read(acct / "cpuacct.usage_percpu").split())
            except OSError:
                percpu = ()
            ticks = _kv(acct / "cpuacct.stat")
            hz = os.sysconf("SC_CLK_TCK")
            user = ticks.get("user", 0) * 1_000_000_000 // hz
            system = ticks.get("system", 0) * 1_000_000_000 // hz
        mem = self.dirs.get("memory")
        limit = _read_int(mem / "memory.limit_in_bytes") if mem else 0
        pids = self.dirs.get("pids")
        read, write = self._blkio()
        return CgroupStats(
            cpu_total_ns=total,
            cpu_percpu_ns=percpu,
            cpu_user_ns=user,
            cpu_system_ns=system,
            memory_usage=_read_int(mem / "memory.usage_in_bytes") if mem else 0,
            memory_limit=0 if limit >= 1 << 62 else limit,
            memory_stats=_kv(mem / "memory.stat") if mem else {},
            pids_current=_read_int(pids / "pids.current") if pids else 0,
            pids_limit=_read_int(pids / "pids.max") if pids else 0,
            blkio_read_bytes=read,
            blkio_write_bytes=write,
        )

    def _blkio(self) -> tuple[int, int]:
        read = write = 0
        blkio = self.dirs.get("blkio")
        if blkio is None:
            return 0, 0
        try:
            text = _read(blkio / "blkio.throttle.io_service_bytes_recursive")
        except OSError:
            return 0, 0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "Read":
                read += int(parts[2])
            elif len(parts) == 3 and parts[1] == "Write":
                write += int(parts[2])
        return read, write

    def kill_all(self) -> None:
        if not self.pids():
            # The usual case (PID 1 gone takes its namespace along): skip the freeze
            # round trip. Nothing is left to fork, so an empty listing stays empty.
            return
        # Freeze first so nothing can fork between listing and killing.
        frozen = "freezer" in self.dirs and self.dirs["freezer"].is_dir()
        if frozen:
            self.freeze()
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if frozen:
            self.thaw()
        _wait_until(lambda: not self.pids(), 5.0)

    def remove(self) -> None:
        if not self.exists():
            return
        self.thaw()
        self.kill_all()
        for d in self._all_dirs():
            _rmdir(d)


class CgroupV2:
    def __init__(self, root: Path, path: str) -> None:
        self.path = path.strip("/")
        self.root = root
        self.dir = root / self.path

    def exists(self) -> bool:
        return self.dir.is_dir()

    def create(self) -> None:
        d = self.root
        for part in Path(self.path).parts:
            self._enable_controllers(d)
            d = d / part
            d.mkdir(exist_ok=True)

    @staticmethod
    def _enable_controllers(d: Path) -> None:
        try:
            available = _read(d / "cgroup.controllers").split()
            enabled = _read(d / "cgroup.subtree_control").split()
        except OSError:
            return
        wanted = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
        if wanted:
            _write(d / "cgroup.subtree_control", " ".join("+" + c for c in wanted))

    def _set(self, name: str, value: object) -> None:
        if value is None:
            return
        f = self.dir / name
        if not f.exists():
            raise InvalidArgument(f"cgroup: {name} is not available (controller not enabled)")
        _write(f, str(value))

    def apply(self, resources: Resources, *, restrict_devices: bool = False) -> None:
        # Devices on v2 are a BPF program; not restricted here (see report).
        r = resources
        if r.memory is not None:
            self._set("memory.max", r.memory if r.memory > 0 else "max")
        if r.memory_swap is not None and (self.dir / "memory.swap.max").exists():
            swap = "max" if r.memory_swap < 0 else max(r.memory_swap - (r.memory or 0), 0)
            self._set("memory.swap.max", swap)
        self._set("memory.low", r.memory_reservation)
        if r.cpu_shares:
            self._set("cpu.weight", 1 + ((r.cpu_shares - 2) * 9999) // 262142)
        if r.cpu_quota is not None or r.cpu_period is not None:
            quota = r.cpu_quota if r.cpu_quota and r.cpu_quota > 0 else "max"
            self._set("cpu.max", f"{quota} {r.cpu_period or 100000}")
        if r.cpuset_cpus:
            self._set("cpuset.cpus", r.cpuset_cpus)
        if r.cpuset_mems:
            self._set("cpuset.mems", r.cpuset_mems)
        if r.pids_limit is not None:
            self._set("pids.max", r.pids_limit if r.pids_limit > 0 else "max")
        if r.blkio_weight and (self.dir / "io.weight").exists():
            self._set("io.weight", 1 + (r.blkio_weight - 10) * 9999 // 990)

    def join(self, pid: int) -> None:
        _write(self.dir / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return _pids_in([self.dir / "cgroup.procs"])

    def freeze(self) -> None:
        _write(self.dir / "cgroup.freeze", "1")
        _wait_until(lambda: _kv(self.dir / "cgroup.events").get("frozen") == 1, 5.0)

    def thaw(self) -> None:
        if (self.dir / "cgroup.freeze").exists():
            _write(self.dir / "cgroup.freeze", "0")

    def frozen(self) -> bool:
        return _read_int(self.dir / "cgroup.freeze") == 1

    def oom_kills(self) -> int:
        return _kv(self.dir / "memory.events").get("oom_kill", 0)

    def stats(self) -> CgroupStats:
        cpu = _kv(self.dir / "cpu.stat")
        read = write = 0
        try:
            for line in _read(self.dir / "io.stat").splitlines():
                for item in line.split()[1:]:
                    key, _, value = item.partition("=")
                    read += int(value) if key == "rbytes" else 0
                    write += int(value) if key == "wbytes" else 0
        except OSError:
            pass
        return CgroupStats(
            cpu_total_ns=cpu.get("usage_usec", 0) * 1000,
            cpu_user_ns=cpu.get("user_usec", 0) * 1000,
            cpu_system_ns=cpu.get("system_usec", 0) * 1000,
            memory_usage=_read_int(self.dir / "memory.current"),
            memory_limit=_read_int(self.dir / "memory.max"),
            memory_stats=_kv(self.dir / "memory.stat"),
            pids_current=_read_int(self.dir / "pids.current"),
            pids_limit=_read_int(self.dir / "pids.max"),
            blkio_read_bytes=read,
            blkio_write_bytes=write,
        )

    def kill_all(self) -> None:
        if (self.dir / "cgroup.kill").exists():
            _write(self.dir / "cgroup.kill", "1")
        else:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _wait_until(lambda: not self.pids(), 5.0)

    def remove(self) -> None:
        if not self.exists():
            return
        self.thaw()
        self.kill_all()
        _rmdir(self.dir)
