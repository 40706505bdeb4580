"""A Docker create request plus the image config → the runtime's ContainerSpec (runc specconv).

Clients send every field, zeros included (compat-notes §e), so a zero, an
empty string or ``null`` always means "not set, use the default".
"""

from __future__ import annotations

import json
import signal
from typing import Any

from runtime.api.errors import InvalidArgument
from runtime.api.units import ram_in_bytes
from runtime.spec import (
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    ContainerSpec,
    IdMapping,
    LogConfig,
    Mount,
    Namespace,
    ProcessSpec,
    Resources,
    Rlimit,
)

ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)  # fmt: skip

def parse_size(text: str) -> int:
    """Docker's RAMInBytes: ``10m``, ``1g``, ``512k``, ``100``."""
    try:
        return ram_in_bytes(text)
    except ValueError:
        raise InvalidArgument(f"invalid size: '{text}'") from None


def normalize_capability(name: str) -> str:
    cap = name.strip().upper()
    if cap == "ALL":
        return cap
    if not cap.startswith("CAP_"):
        cap = "CAP_" + cap
    if cap not in ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability: \"{name}\"")
    return cap


def capabilities(host_config: dict[str, Any]) -> tuple[str, ...]:
    if host_config.get("Privileged"):
        return ALL_CAPABILITIES
    add = [normalize_capability(c) for c in host_config.get("CapAdd") or []]
    drop = [normalize_capability(c) for c in host_config.get("CapDrop") or []]
    caps = [] if "ALL" in drop else list(DEFAULT_CAPABILITIES)
    caps += list(ALL_CAPABILITIES) if "ALL" in add else add
    return tuple(dict.fromkeys(c for c in caps if c not in drop or c in add))


def signal_number(name: str | int) -> int:
    """``SIGTERM``, ``TERM``, ``15`` → 15; Docker's error for anything else."""
    if isinstance(name, int):
        return name
    text = name.strip().upper()
    if text.isdigit():
        num = int(text)
        if 0 < num < 65:
            return num
    else:
        sig = text if text.startswith("SIG") else "SIG" + text
        if sig.startswith(("SIGRTMIN", "SIGRTMAX")):
            return _realtime_signal(sig, name)
        try:
            return int(signal.Signals[sig])
        except KeyError:
            pass
    raise InvalidArgument(f"Invalid signal: {name}")


def _realtime_signal(sig: str, original: str) -> int:
    base, _, offset = sig.partition("+") if "+" in sig else sig.partition("-")
    delta = int(offset) if offset.isdigit() else 0
    num = (signal.SIGRTMIN + delta) if base == "SIGRTMIN" else (signal.SIGRTMAX - delta)
    if "-" in sig and base == "SIGRTMIN":
        raise InvalidArgument(f"Invalid signal: {original}")
    return int(num)


def merge_env(image_env: list[str], request_env: list[str]) -> tuple[str, ...]:
    merged: dict[str, str] = {}
    for entry in [*image_env, *request_env]:
        key = entry.split("=", 1)[0]
        if not key:
            raise InvalidArgument(f"invalid environment variable: {entry}")
        merged[key] = entry
    if not any(k == "PATH" for k in merged):
        merged["PATH"] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return tuple(merged.values())


def daemon_env(hostname: str, tty: bool) -> list[str]:
    """What moby's CreateDaemonEnvironment puts first: HOSTNAME, and TERM for a TTY.

    Image and request variables override these in place (merge_env keeps the order).
    """
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           f"HOSTNAME={hostname}"]
    return [*env, "TERM=xterm"] if tty else env


def command(config: dict[str, Any], image_config: dict[str, Any]) -> tuple[str, ...]:
    """Entrypoint + Cmd as Docker combines them: a request Entrypoint drops the image's Cmd."""
    entrypoint = config.get("Entrypoint")
    cmd = config.get("Cmd")
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint]
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    if entrypoint is None:
        entrypoint = image_config.get("Entrypoint") or []
        if not cmd:
            cmd = image_config.get("Cmd") or []
    elif entrypoint == [""]:
        entrypoint = []
    args = [*entrypoint, *(cmd or [])]
    if not args:
        raise InvalidArgument("no command specified")
    return tuple(str(a) for a in args)


def resources(host_config: dict[str, Any]) -> Resources:
    nano = host_config.get("NanoCpus") or 0
    quota = host_config.get("CpuQuota") or None
    period = host_config.get("CpuPeriod") or None
    if nano:
        if quota:
            raise InvalidArgument(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set"
            )
        period = 100_000
        quota = max(1000, nano * period // 1_000_000_000)
    memory = host_config.get("Memory") or None
    swap = host_config.get("MemorySwap") or None
    if memory is not None and memory < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if swap is not None and swap > 0 and memory is not None and swap < memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if memory is not None and swap is None:
        swap = memory * 2  # Docker's default: as much swap as memory
    pids = host_config.get("PidsLimit") or None
    if pids is not None and pids <= 0:
        pids = None
    return Resources(
        memory=memory,
        memory_swap=swap,
        memory_reservation=host_config.get("MemoryReservation") or None,
        cpu_shares=host_config.get("CpuShares") or None,
        cpu_quota=quota,
        cpu_period=period,
        cpuset_cpus=host_config.get("CpusetCpus") or "",
        cpuset_mems=host_config.get("CpusetMems") or "",
        pids_limit=pids,
        blkio_weight=host_config.get("BlkioWeight") or None,
    )


def rlimits(host_config: dict[str, Any]) -> tuple[Rlimit, ...]:
    out = []
    for u in host_config.get("Ulimits") or []:
        name = str(u.get("Name", "")).lower()
        if not name:
            raise InvalidArgument(f"invalid ulimit: {u}")
        out.append(Rlimit(type="RLIMIT_" + name.upper(), soft=int(u["Soft"]),
                          hard=int(u["Hard"])))
    return tuple(out)


def security(host_config: dict[str, Any]) -> tuple[str | None, bool]:
    """(seccomp profile, no_new_privileges) from SecurityOpt."""
    profile: str | None = None
    nnp = False
    for opt in host_config.get("SecurityOpt") or []:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if key == "no-new-privileges":
            nnp = value.lower() in ("", "true", "1")
        elif key == "seccomp":
            if value == "unconfined":
                profile = "unconfined"
            else:
                try:
                    json.loads(value)
                except json.JSONDecodeError:
                    raise InvalidArgument(
                        "Decoding seccomp profile failed: invalid JSON"
                    ) from None
                profile = value
        elif key in ("apparmor", "label", "systempaths"):
            continue
        else:
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
    if host_config.get("Privileged"):
        profile = "unconfined"
    return profile, nnp


def log_config(host_config: dict[str, Any], path: str) -> LogConfig:
    cfg = host_config.get("LogConfig") or {}
    kind = cfg.get("Type") or "json-file"
    opts = cfg.get("Config") or {}
    if kind == "none":
        return LogConfig()
    if kind not in ("json-file", "local"):
        raise InvalidArgument(f"logger: no log driver named '{kind}' is registered")
    max_size = parse_size(opts["max-size"]) if opts.get("max-size") else None
    max_file = int(opts.get("max-file") or 1)
    if max_file < 1:
        raise InvalidArgument("max-file cannot be less than 1")
    return LogConfig(path=path, max_size=max_size, max_file=max_file)


def namespaces(host_config: dict[str, Any], netns_path: str | None,
               create_netns: bool) -> tuple[Namespace, ...]:
    out = [Namespace(type="mount")]
    if host_config.get("PidMode") != "host":
        out.append(Namespace(type="pid"))
    if host_config.get("UTSMode") != "host":
        out.append(Namespace(type="uts"))
    if host_config.get("IpcMode") != "host":
        out.append(Namespace(type="ipc"))
    if host_config.get("CgroupnsMode", "private") != "host":
        out.append(Namespace(type="cgroup"))
    if netns_path:
        out.append(Namespace(type="network", path=netns_path))
    elif create_netns:
        out.append(Namespace(type="network"))
    return tuple(out)


Userns = tuple[tuple[IdMapping, ...], tuple[IdMapping, ...]]  # (uid maps, gid maps)
_PRIVILEGED_USERNS = ("privileged mode is incompatible with user namespaces.  You must run "
                      "the container in the host namespace when running privileged mode")


def userns_maps(host_config: dict[str, Any], remap: Userns | None) -> Userns | None:
    """The engine's --userns-remap maps, unless the container opts out (UsernsMode=host)."""
    mode = host_config.get("UsernsMode") or ""
    if mode not in ("", "host"):
        raise InvalidArgument(f"invalid USER mode: {mode}")
    if remap is None or mode == "host":
        return None
    if host_config.get("Privileged"):
        raise InvalidArgument(_PRIVILEGED_USERNS)
    return remap


def _idmapped(m: Mount) -> Mount:
    return Mount(destination=m.destination, type=m.type, source=m.source,
                 options=(*m.options, "idmap"))


def _owned_tmpfs(m: Mount, uid: int, gid: int) -> Mount:
    """A tmpfs is mounted by host root before the user namespace exists: give its root
    to container root, as runc's mount from inside the namespace would."""
    if any(o.startswith(("uid=", "gid=")) for o in m.options):
        return m
    return Mount(destination=m.destination, type=m.type, source=m.source,
                 options=(*m.options, f"uid={uid}", f"gid={gid}"))


def remap_mounts(rootfs_mounts: tuple[Mount, ...], mounts: tuple[Mount, ...],
                 engine_owned: tuple[Mount, ...], maps: Userns
                 ) -> tuple[tuple[Mount, ...], tuple[Mount, ...]]:
    """Mark what the runtime idmaps: the image layers and the engine's own data (volumes,
    hosts/resolv.conf/hostname), never chowned since their ids on disk stay container ids.
    A user's bind of a host path keeps host ids (root-owned files show as nobody), as
    under dockerd."""
    uid, gid = maps[0][0].host_id, maps[1][0].host_id
    out = []
    for m in mounts:
        if m in engine_owned and m.type == "bind":
            m = _idmapped(m)
        elif m.type == "tmpfs":
            m = _owned_tmpfs(m, uid, gid)
        out.append(m)
    return tuple(_idmapped(m) for m in rootfs_mounts), tuple(out)


def _process(container_id: str, config: dict[str, Any], host_config: dict[str, Any],
             image_config: dict[str, Any], *, seccomp_profile: str | None,
             no_new_privileges: bool) -> ProcessSpec:
    """The container's first process: the image's defaults under the create config's."""
    console = host_config.get("ConsoleSize") or None
    return ProcessSpec(
        args=command(config, image_config),
        env=merge_env([*daemon_env(config.get("Hostname") or container_id[:12],
                                   bool(config.get("Tty"))), *(image_config.get("Env") or [])],
                      config.get("Env") or []),
        cwd=config.get("WorkingDir") or image_config.get("WorkingDir") or "/",
        user=config.get("User") or image_config.get("User") or "",
        additional_groups=tuple(host_config.get("GroupAdd") or ()),
        terminal=bool(config.get("Tty")),
        console_size=(int(console[0]), int(console[1])) if console and console[0] else None,
        capabilities=capabilities(host_config),
        no_new_privileges=no_new_privileges,
        rlimits=rlimits(host_config),
        seccomp_profile=seccomp_profile,
    )


def build(
    *,
    container_id: str,
    config: dict[str, Any],
    host_config: dict[str, Any],
    image_config: dict[str, Any],
    rootfs: str,
    rootfs_mounts: tuple[Mount, ...],
    mounts: tuple[Mount, ...],
    netns_path: str | None,
    create_netns: bool,
    log_path: str,
    cgroup_parent: str,
    userns: Userns | None = None,
    engine_owned: tuple[Mount, ...] = (),
) -> ContainerSpec:
    """*userns*: the engine's --userns-remap maps; *engine_owned*: which of *mounts* are
    the engine's data (idmapped under remapping)."""
    profile, nnp = security(host_config)
    maps = userns_maps(host_config, userns)
    if maps is not None:
        rootfs_mounts, mounts = remap_mounts(rootfs_mounts, mounts, engine_owned, maps)
    shm = host_config.get("ShmSize") or 64 * 1024 * 1024
    process = _process(container_id, config, host_config, image_config,
                       seccomp_profile=profile, no_new_privileges=nnp)
    stop_signal = config.get("StopSignal") or image_config.get("StopSignal") or "SIGTERM"
    return ContainerSpec(
        id=container_id,
        hostname=config.get("Hostname") or container_id[:12],
        domainname=config.get("Domainname") or "",
        rootfs=rootfs,
        rootfs_mounts=rootfs_mounts,
        readonly_rootfs=bool(host_config.get("ReadonlyRootfs")),
        mounts=mounts,
        process=process,
        namespaces=(*namespaces(host_config, netns_path, create_netns),
                    *((Namespace(type="user"),) if maps else ())),
        uid_mappings=maps[0] if maps else (),
        gid_mappings=maps[1] if maps else (),
        masked_paths=() if host_config.get("Privileged") else DEFAULT_MASKED_PATHS,
        readonly_paths=() if host_config.get("Privileged") else DEFAULT_READONLY_PATHS,
        resources=resources(host_config),
        cgroup_path=f"{cgroup_parent}/{container_id}",
        privileged=bool(host_config.get("Privileged")),
        init=bool(host_config.get("Init")),
        stdin=bool(config.get("OpenStdin")),
        stdin_once=bool(config.get("StdinOnce")),
        log=log_config(host_config, log_path),
        sysctls=tuple((str(k), str(v)) for k, v in (host_config.get("Sysctls") or {}).items()),
        shm_size=int(shm),
        stop_signal=stop_signal,
    )
