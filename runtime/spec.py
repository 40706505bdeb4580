"""What a container is, as the runtime needs it: frozen dataclasses (the OCI runtime spec's model).

The engine turns a Docker create request plus the image config into a
:class:`ContainerSpec` (``runtime.engine.specconv``); ``runtime.linux`` turns the
spec into a running process. Nothing here touches the system, so the module is
importable everywhere and the specs serialise to JSON for ``spec.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    """One mount in the container, in OCI terms (destination inside the container)."""

    destination: str
    type: str  # "bind", "overlay", "tmpfs", "proc", "sysfs", "devpts", "mqueue", ...
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Rlimit:
    type: str  # "RLIMIT_NOFILE", ...
    soft: int
    hard: int


@dataclass(frozen=True, slots=True, kw_only=True)
class IdMapping:
    container_id: int
    host_id: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSpec:
    """The process to run: the container's main process or an exec."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    # Docker's --user: "", "name", "uid", "name:group", "uid:gid"; resolved against the
    # container's own /etc/passwd and /etc/group at start, as Docker does.
    user: str = ""
    additional_groups: tuple[str, ...] = ()
    terminal: bool = False
    console_size: tuple[int, int] | None = None  # (rows, cols)
    capabilities: tuple[str, ...] = ()  # "CAP_CHOWN", ...: bounding = effective = permitted
    no_new_privileges: bool = False
    rlimits: tuple[Rlimit, ...] = ()
    # None: Docker's default profile; "unconfined": none; else a profile's JSON text.
    seccomp_profile: str | None = None
    apparmor_profile: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """cgroup limits; ``None`` means unlimited / not set."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # memory + swap, bytes; -1 unlimited
    memory_reservation: int | None = None
    cpu_shares: int | None = None
    cpu_quota: int | None = None  # microseconds per cpu_period
    cpu_period: int | None = None
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = None
    blkio_weight: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    """A namespace to create (``path`` empty) or to join (``path`` a /proc/.../ns/* or bind)."""

    type: str  # "pid", "mount", "uts", "ipc", "network", "cgroup", "user"
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """Docker's json-file logger settings; ``path`` empty means no log file."""

    path: str = ""
    max_size: int | None = None  # bytes per file before rotation
    max_file: int = 1


DEFAULT_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)

DEFAULT_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Docker's default capability set; CapEff 00000000a80425fb.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSpec:
    """Everything the runtime needs to start one container."""

    id: str  # 64 lowercase hex
    hostname: str
    domainname: str = ""
    # Where the root filesystem is assembled, and the mounts (from the snapshotter)
    # that make it: normally one overlay of the image layers plus the writable layer.
    rootfs: str
    rootfs_mounts: tuple[Mount, ...] = ()
    readonly_rootfs: bool = False
    mounts: tuple[Mount, ...] = ()  # binds, volumes, tmpfs, /etc/hosts, ... after /dev etc.
    process: ProcessSpec
    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS
    resources: Resources = field(default_factory=Resources)
    cgroup_path: str = ""  # relative to each hierarchy's root, e.g. "cove/<id>"
    privileged: bool = False
    init: bool = False  # --init: a reaping PID 1 that forwards signals
    stdin: bool = False  # keep stdin open (-i)
    stdin_once: bool = False  # close stdin after the first attach detaches
    log: LogConfig = field(default_factory=LogConfig)
    sysctls: tuple[tuple[str, str], ...] = ()
    shm_size: int = 64 * 1024 * 1024
    stop_signal: str = "SIGTERM"


def to_json(obj: Any) -> Any:
    """A spec dataclass as plain JSON data (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_json(v) for v in obj]
    return obj


def _from_json(cls: type[Any], data: dict[str, Any]) -> Any:
    hints = {
        "rootfs_mounts": Mount,
        "mounts": Mount,
        "namespaces": Namespace,
        "uid_mappings": IdMapping,
        "gid_mappings": IdMapping,
        "rlimits": Rlimit,
    }
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in hints:
            value = tuple(_from_json(hints[f.name], v) for v in value)
        elif f.name == "process":
            value = _from_json(ProcessSpec, value)
        elif f.name == "resources":
            value = _from_json(Resources, value)
        elif f.name == "log":
            value = _from_json(LogConfig, value)
        elif f.name == "sysctls":
            value = tuple((str(k), str(v)) for k, v in value)
        elif f.name == "console_size" and value is not None:
            value = (int(value[0]), int(value[1]))
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def spec_from_json(data: dict[str, Any]) -> ContainerSpec:
    spec: ContainerSpec = _from_json(ContainerSpec, data)
    return spec


def process_from_json(data: dict[str, Any]) -> ProcessSpec:
    proc: ProcessSpec = _from_json(ProcessSpec, data)
    return proc
