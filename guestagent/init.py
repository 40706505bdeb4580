"""PID 1 of the Cove guest: mount, configure, start sshd and the engine, reap, power off.

Under TCG, systemd + udev cost about 15 s of boot; this init does the few things the guest
needs. The boot itself is EARLY_INIT (busybox sh, see there for its order: the engine starts
first and imports while the shell mounts); this module's :func:`main` is the fallback boot
and, with ``--adopt``, the PID 1 that takes over from it:

1. kernel filesystems (proc, sys, dev, run, cgroup2)
2. the seed disk (keys, hostname, clock), then the network (static slirp address)
3. sshd, the data disk on /var/lib/cove and the virtiofs shares, then the engine
4. reap every child forever; SIGTERM/SIGINT/SIGPWR mean power off cleanly

The data disk is formatted on first boot only (ext4 label ``cove-data``), so engine data
survives VM re-creation and root image upgrades: the root disk is a throwaway overlay.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from guestagent import seed as seedmod
from guestagent.clock import set_wall_clock
from guestagent.protocol import API_KEY_FILE, API_PORT, ENGINE_SOCKET, api_preamble
from guestagent.supervise import Service

log = logging.getLogger("cove-init")
T = TypeVar("T")

DATA_DIR = "/var/lib/cove"
SSH_DIR = "/run/cove/ssh"
GUEST_CONFIG = "/etc/cove/guest.json"  # written at image build: default engine argv
ENGINE_LOG = "/run/cove/engine.log"
# Created once the data disk and the shares are mounted; the image's engine argv waits for
# it (``--start-after``) so that it can import its modules while PID 1 is still mounting.
MOUNTS_READY = "/run/cove/mounts-ready"
DEFAULT_ENGINE_ARGV = (
    "/usr/local/bin/cove",
    "engine",
    "run",
    "--host",
    f"unix://{ENGINE_SOCKET}",
    "--data-root",
    DATA_DIR,
)
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGPWR}
RB_POWER_OFF = 0x4321FEDC
RB_DISABLE_CAD = 0


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _mount(source: str, target: str, fstype: str, options: str = "") -> None:
    """mount(2) via libc: bookworm's `mount` binary is not essential, and a fork costs time."""
    flags = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024}
    mflags = 0
    data = []
    for opt in filter(None, options.split(",")):
        if opt in flags:
            mflags |= flags[opt]
        else:
            data.append(opt)
    Path(target).mkdir(parents=True, exist_ok=True)
    if os.path.ismount(target) and fstype not in ("ext4", "virtiofs"):
        return  # the initramfs already moved /sys, /proc and /dev here
    rc = _libc().mount(
        source.encode(),
        target.encode(),
        fstype.encode(),
        ctypes.c_ulong(mflags),
        ",".join(data).encode() or None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        log.warning("mount %s on %s: %s", fstype, target, os.strerror(err))


def mount_kernel_filesystems() -> None:
    _mount("proc", "/proc", "proc", "nosuid,nodev,noexec")
    _mount("sysfs", "/sys", "sysfs", "nosuid,nodev,noexec")
    _mount("devtmpfs", "/dev", "devtmpfs", "mode=0755,nosuid")
    _mount("devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=666")
    _mount("tmpfs", "/dev/shm", "tmpfs", "nosuid,nodev")
    _mount("tmpfs", "/run", "tmpfs", "mode=0755,nosuid,nodev")
    _mount("tmpfs", "/tmp", "tmpfs", "mode=1777,nosuid,nodev")
    _mount("cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate")
    for name in ("/run/sshd", SSH_DIR, "/run/cove", "/run/lock"):
        Path(name).mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.symlink("/proc/self/fd", "/dev/fd")


def block_device(serial: str) -> str | None:
    """/dev/vdX whose virtio serial is *serial* (disk order is not stable across backends)."""
    for dev in sorted(Path("/sys/block").glob("vd*")):
        with contextlib.suppress(OSError):
            if (dev / "serial").read_text().strip() == serial:
                return f"/dev/{dev.name}"
    return None


def apply_seed() -> seedmod.SeedConfig:
    dev = block_device(seedmod.SERIAL_SEED)
    if dev is None:
        log.warning("no seed disk: booting without keys")
        return seedmod.SeedConfig()
    config, files = seedmod.read_seed(dev)
    for name, data in files.items():
        path = Path(SSH_DIR) / name
        path.write_bytes(data)
        path.chmod(0o600 if name in seedmod.SECRET_MEMBERS else 0o644)
    if config.host_time and time.time() < config.host_time:
        # The RTC is normally right; the seed's time is older than this boot, so it only
        # ever moves the clock forward (a guest RTC left behind). The host steps it exactly
        # once SSH is up (vmhost.supervisor).
        set_wall_clock(config.host_time)
    with contextlib.suppress(OSError):
        Path("/proc/sys/kernel/hostname").write_text(config.hostname)
    return config


def _nic() -> str:
    """The first non-loopback interface (eth0 with net.ifnames=0; udev may rename it)."""
    names = sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")
    return names[0] if names else "eth0"


def configure_network(config: seedmod.SeedConfig) -> None:
    nic = _nic()
    cmds = [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", config.address, "dev", nic],
        ["ip", "link", "set", nic, "up"],
        ["ip", "route", "add", "default", "via", config.gateway],
    ]
    for argv in cmds:
        subprocess.run(argv, check=False)


def _has_filesystem(dev: str) -> bool:
    with open(dev, "rb") as f:
        f.seek(1080)  # ext2/3/4 superblock magic
        return f.read(2) == b"\x53\xef"


def mount_data_disk() -> None:
    dev = block_device(seedmod.SERIAL_DATA)
    if dev is None:
        log.warning("no data disk: engine data lives on the throwaway root disk")
        return
    if not _has_filesystem(dev):
        log.info("formatting data disk %s", dev)
        subprocess.run(["mkfs.ext4", "-q", "-L", "cove-data", "-E", "nodiscard", dev], check=True)
    _mount(dev, DATA_DIR, "ext4", "noatime")


def mount_shares(config: seedmod.SeedConfig) -> None:
    """Mount the virtiofs shares EARLY_INIT did not (paths it cannot parse, or no early init)."""
    missing = [s for s in config.shares if not os.path.ismount(s.mountpoint)]
    if missing:
        subprocess.run(["modprobe", "virtiofs"], check=False)
    for share in missing:
        _mount(share.tag, share.mountpoint, "virtiofs")


def mounts_ready() -> None:
    """Let an engine started with ``--start-after MOUNTS_READY`` open its data root."""
    Path(MOUNTS_READY).touch()


def engine_argv(config: seedmod.SeedConfig) -> tuple[str, ...]:
    if config.engine_argv:
        return config.engine_argv
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return tuple(json.loads(Path(GUEST_CONFIG).read_text())["engine_argv"])
    return DEFAULT_ENGINE_ARGV


def start_api_proxy() -> None:
    """The Docker API relay's guest end on 127.0.0.1:API_PORT (a thread of PID 1: no process
    per connection, and no extra Python start-up under TCG). Without the seed's host key
    there is no token, so no listener: the host falls back to ``guestagent dial-stdio``."""
    from guestagent.apiproxy import ApiProxy

    key = Path(API_KEY_FILE).read_bytes()
    ApiProxy(api_preamble(key), engine_socket=ENGINE_SOCKET, port=API_PORT).start()
    log.info("api relay listening on 127.0.0.1:%d", API_PORT)


def _libc_reboot(cmd: int) -> None:
    _libc().reboot(ctypes.c_int(cmd))


def shutdown(services: list[Service]) -> None:
    """Stop services, unmount the data disk, power off (never returns)."""
    log.info("powering off")
    for svc in reversed(services):
        svc.stop(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(s.pid for s in services) and time.monotonic() < deadline:
        reap(services)
        time.sleep(0.1)
    os.kill(-1, signal.SIGKILL)
    os.sync()
    _libc().umount2(DATA_DIR.encode(), ctypes.c_int(2))  # MNT_DETACH
    os.sync()
    _libc_reboot(RB_POWER_OFF)
    sys.exit(0)


def reap(services: list[Service]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for svc in services:
            if svc.pid == pid:
                svc.exited(os.waitstatus_to_exitcode(status))


def _step(fn: Callable[[], T], fallback: T) -> T:
    """Run one boot step; PID 1 must outlive any failure (a dead init panics the kernel)."""
    try:
        return fn()
    except Exception:
        log.exception("boot step %s failed", getattr(fn, "__name__", fn))
        return fallback


# Kernel modules the engine needs as it starts (nftables NAT, the bridge) and the first
# container needs (veth, overlay). Loaded on demand, each is a usermode-helper modprobe
# process while the engine waits: ~15 s in all under TCG. One modprobe at boot, in parallel
# with the engine's Python start-up, costs ~1 s of the other vCPU.
PRELOAD_MODULES = (
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_fib_ipv4",
    "nft_ct",
    "bridge",
    "veth",
    "overlay",
)

# Stage 1 of PID 1, installed as /usr/sbin/cove-init by vmhost.guestimage. busybox sh starts
# in milliseconds where Python takes seconds under TCG. Every fork+exec costs tens of ms under
# TCG, so this uses shell builtins (read, parameter expansion) wherever it can. Order:
#
# 1. the engine first (its Python start-up is the longest step of the boot): it imports its
#    modules, then waits for MOUNTS_READY before it touches /var/lib/cove (--start-after)
# 2. one background modprobe (PRELOAD_MODULES), the seed (keys), the network, sshd
# 3. the data disk and the shares (virtiofs, at the host path, so bind mounts of host paths
#    work), then MOUNTS_READY: the engine can never answer before its mounts are in place
# 4. when the engine listens (or after ~20 s), Python takes over as PID 1 to supervise
#
# Debian's busybox sh runs its own applets first (ip, modprobe, mount...): tools whose
# busybox version lacks something (ip -batch, modprobe's module aliases) go by full path.
EARLY_INIT = r"""#!/bin/busybox sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
bb=/bin/busybox
$bb mount -t proc -o nosuid,nodev,noexec proc /proc
$bb mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
[ -c /dev/null ] || $bb mount -t devtmpfs -o mode=0755,nosuid devtmpfs /dev
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
$bb mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
$bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
$bb mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
$bb mkdir -p /run/sshd /run/cove/ssh /run/lock
engine=0
if [ -f /etc/cove/engine.argv ]; then
  read -r engine_argv < /etc/cove/engine.argv
  $bb setsid $engine_argv </dev/null >/run/cove/engine.log 2>&1 &
  engine=$!
fi
/sbin/modprobe -qa @MODULES@ </dev/null >/dev/null 2>&1 &
find_disk() {  # sets $disk to /dev/vdX whose virtio serial is $1 (no subshell, no fork)
  disk=""
  for s in /sys/block/vd*/serial; do
    v=""; read -r v < "$s"
    if [ "$v" = "$1" ]; then d=${s%/serial}; disk=/dev/${d##*/}; return; fi
  done
}
find_disk cove-seed
[ -n "$disk" ] && $bb tar -xf "$disk" -C /run/cove/ssh 2>/dev/null
cfg=""
[ -f /run/cove/ssh/config.json ] && read -r cfg < /run/cove/ssh/config.json
$bb rm -f /run/cove/ssh/config.json
$bb chmod 600 /run/cove/ssh/ssh_host_ed25519_key 2>/dev/null
# "shares": [{"mountpoint": "/home/me", "tag": "share0"}, ...] (sorted keys, one line).
# Paths JSON escapes (backslash) are left to the Python stage.
shares=""
nl='
'
case "$cfg" in *'"shares": [{'*)
  rest=${cfg#*'"shares": ['}; rest=${rest%%']'*}
  while [ "${rest#*'"mountpoint": "'}" != "$rest" ]; do
    rest=${rest#*'"mountpoint": "'}; mp=${rest%%'"'*}
    rest=${rest#*'"tag": "'}; tag=${rest%%'"'*}
    case "$mp$tag" in *\\*) ;; *) shares="$shares$tag=$mp$nl" ;; esac
  done
  /sbin/modprobe -q virtiofs </dev/null >/dev/null 2>&1 &
  vfs=$!
;; esac
for nic in /sys/class/net/*; do nic=${nic##*/}; [ "$nic" != lo ] && break; done
/bin/ip -batch - <<IP
link set lo up
addr add 10.0.2.15/24 dev $nic
link set $nic up
route add default via 10.0.2.2
IP
$bb setsid /usr/sbin/sshd -D -e </dev/null >/dev/console 2>&1 &
sshd=$!
find_disk cove-data
if [ -n "$disk" ] && ! $bb mount -t ext4 -o noatime "$disk" /var/lib/cove 2>/dev/null; then
  # Format only a new disk: zeros where the ext2/3/4 magic would be (never a disk that has
  # something else there, nor when od fails).
  magic=$($bb od -An -tx1 -j1080 -N2 "$disk")
  if [ "${magic# }" = "00 00" ]; then
    mkfs.ext4 -q -L cove-data -E nodiscard "$disk" &&
      $bb mount -t ext4 -o noatime "$disk" /var/lib/cove
  fi
fi
if [ -n "$shares" ]; then
  wait $vfs
  IFS=$nl
  for s in $shares; do
    $bb mkdir -p "${s#*=}" && $bb mount -t virtiofs "${s%%=*}" "${s#*=}"
  done
  unset IFS
fi
: > @MOUNTS_READY@
if [ $engine -ne 0 ]; then
  # Python as PID 1 costs seconds of CPU under TCG: let the engine have the vCPUs until it
  # listens (at most ~20 s). Sleeping on a fifo read is a builtin: no process per tick.
  $bb mkfifo /run/cove/.tick && exec 3<>/run/cove/.tick
  i=0
  while [ ! -S @ENGINE_SOCKET@ ] && [ $i -lt 200 ]; do read -r -t 0.1 -u 3 _; i=$((i+1)); done
  exec 3<&-
  $bb rm -f /run/cove/.tick
fi
exec /usr/bin/python3 -I -m guestagent init --adopt "sshd=$sshd" --adopt "engine=$engine"
"""
EARLY_INIT = (
    EARLY_INIT.replace("@MODULES@", " ".join(PRELOAD_MODULES))
    .replace("@MOUNTS_READY@", MOUNTS_READY)
    .replace("@ENGINE_SOCKET@", ENGINE_SOCKET)
)


def main(adopt: dict[str, int] | None = None) -> None:
    """PID 1. With *adopt* (from EARLY_INIT), sshd/engine already run: supervise them."""
    logging.basicConfig(level=logging.INFO, format="cove-init: %(message)s", stream=sys.stderr)
    if adopt:
        _adopted(adopt)
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, signal.SIGCHLD})
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    os.environ.setdefault("HOME", "/root")
    t0 = time.monotonic()
    mount_kernel_filesystems()
    with contextlib.suppress(OSError):
        _libc_reboot(RB_DISABLE_CAD)  # Ctrl-Alt-Del becomes SIGINT to us
    config = _step(apply_seed, seedmod.SeedConfig())
    _step(lambda: configure_network(config), None)
    sshd = Service("sshd", ("/usr/sbin/sshd", "-D", "-e"))
    sshd.start()
    log.info("sshd up after %.2fs", time.monotonic() - t0)
    _step(mount_data_disk, None)
    _step(lambda: mount_shares(config), None)
    _step(mounts_ready, None)
    engine = Service("engine", engine_argv(config), log_path=ENGINE_LOG)
    _step(engine.start, None)
    log.info("engine started after %.2fs", time.monotonic() - t0)
    _step(start_api_proxy, None)
    supervise([sshd, engine])


def _adopted(adopt: dict[str, int]) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, signal.SIGCHLD})
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    with contextlib.suppress(OSError):
        _libc_reboot(RB_DISABLE_CAD)
    config = _step(apply_seed, seedmod.SeedConfig())
    now = time.monotonic()
    sshd = Service("sshd", ("/usr/sbin/sshd", "-D", "-e"), pid=adopt.get("sshd", 0), started_at=now)
    engine = Service(
        "engine",
        engine_argv(config),
        log_path=ENGINE_LOG,
        pid=adopt.get("engine", 0),
        started_at=now,
    )
    if not os.path.ismount(DATA_DIR):
        _step(mount_data_disk, None)
    _step(lambda: mount_shares(config), None)
    _step(mounts_ready, None)
    if config.engine_argv or not engine.pid:  # the seed overrides the image's engine
        engine.stop()
        engine.restart_at = now
    _step(start_api_proxy, None)
    log.info("supervising sshd=%d engine=%d", sshd.pid, engine.pid)
    supervise([sshd, engine])


def supervise(services: list[Service]) -> None:
    while True:
        info = signal.sigtimedwait({*STOP_SIGNALS, signal.SIGCHLD}, 1.0)
        if info is not None and info.si_signo in STOP_SIGNALS:
            shutdown(services)
        reap(services)
        now = time.monotonic()
        for svc in services:
            if svc.due(now):
                _step(svc.start, None)


if __name__ == "__main__":
    main()
