"""Linux capabilities: names to numbers, and dropping to a set before exec."""

from __future__ import annotations

from runtime.api.errors import InvalidArgument
from runtime.linux.syscalls import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    Syscalls,
)

CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
            "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
            "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
            "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        )
    )
}


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


# Read once in the engine: the container's /proc is not the host's after pivot_root.
LAST_CAP = _last_cap()


def all_capabilities() -> tuple[str, ...]:
    return tuple(n for n, v in CAPABILITIES.items() if v <= LAST_CAP)


def cap_mask(names: tuple[str, ...]) -> int:
    """Bit mask of *names* ("CAP_X" or "X", any case); unknown names are an error."""
    mask = 0
    for name in names:
        key = name.upper()
        key = key if key.startswith("CAP_") else "CAP_" + key
        if key == "CAP_ALL":
            return (1 << (LAST_CAP + 1)) - 1
        if key not in CAPABILITIES:
            raise InvalidArgument(f"unknown capability: {name!r}")
        if CAPABILITIES[key] <= LAST_CAP:
            mask |= 1 << CAPABILITIES[key]
    return mask


def names_in(mask: int) -> tuple[str, ...]:
    return tuple(n for n, v in CAPABILITIES.items() if mask & (1 << v))


def drop_bounding(sc: Syscalls, mask: int) -> None:
    """Remove every capability outside *mask* from the bounding set (needs CAP_SETPCAP)."""
    for cap in range(LAST_CAP + 1):
        if not mask & (1 << cap):
            sc.prctl(PR_CAPBSET_DROP, cap)
    sc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def set_capabilities(sc: Syscalls, mask: int) -> None:
    """Effective = permitted = *mask*, inheritable empty (Docker since CVE-2022-24769).

    Capabilities the engine itself lacks are left out (Docker's "all" is the host's all).
    """
    _, permitted, _ = sc.capget()
    mask &= permitted
    sc.capset(mask, mask, 0)
