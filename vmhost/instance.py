"""Instance directories: create/load/delete a VM's files (see :mod:`vmhost.layout`).

``vm.json`` holds the user's choices (:class:`InstanceConfig`); the :class:`VMSpec` is
derived from it at each start (fresh SSH port, current guest image), so an image upgrade is
a restart, and so is a change of CPUs or memory (:func:`reconfigure` rewrites ``vm.json``;
the backend redefines the stopped domain from the next spec). The data disk is created once,
only ever grown (:func:`grow_data_disk`), and only removed by ``vm rm``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from guestagent import seed as seedmod
from runtime.api.errors import Conflict, Internal, InvalidArgument, NotFound, Unavailable
from runtime.fsutil import read_json, write_atomic, write_json_atomic
from vmhost import keys, layout
from vmhost.hypervisor import Accel, Disk, Share, VMSpec

NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
EXT_MAGIC_OFFSET = 1080  # the ext2/3/4 superblock magic, 0xEF53 little-endian
EXT_MAGIC = b"\x53\xef"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceConfig:
    name: str = "default"
    cpus: int = 2
    memory_mib: int = 1024
    disk_gib: int = 20
    accel: str = "auto"
    shares: tuple[str, ...] = ()  # host dirs shared with virtiofs at the same path

    def validate(self) -> None:
        if not self.name or not set(self.name) <= NAME_OK or len(self.name) > 40:
            raise InvalidArgument(f"vm name {self.name!r}: use a-z, 0-9 and '-'")
        if not 1 <= self.cpus <= 64 or not 256 <= self.memory_mib <= 262144:
            raise InvalidArgument("vm: cpus must be 1-64 and memory 256 MiB-256 GiB")
        if not 1 <= self.disk_gib <= 65536:
            raise InvalidArgument("vm: the data disk must be 1 GiB-64 TiB")
        try:
            Accel(self.accel)
        except ValueError as e:
            raise InvalidArgument(
                f"vm: accel {self.accel!r}: use {', '.join(a.value for a in Accel)}"
            ) from e


def create(config: InstanceConfig) -> layout.InstanceLayout:
    """Create the instance dir, keys and data disk; idempotent for an identical config."""
    config.validate()
    lay = layout.InstanceLayout.named(config.name)
    lay.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if lay.vm_json.exists():
        existing = load(config.name)
        if existing != config:
            raise Conflict(f"vm {config.name} exists with other settings (vm rm it first)")
        return lay
    keys.generate_ed25519(lay.client_key, f"cove@{config.name}")
    keys.generate_ed25519(lay.host_key, f"cove-host@{config.name}")
    if not lay.data_disk.exists():
        with open(lay.data_disk, "wb") as f:
            f.truncate(config.disk_gib << 30)  # sparse; the guest formats it on first boot
    write_json_atomic(lay.vm_json, asdict(config))
    return lay


def reconfigure(config: InstanceConfig) -> layout.InstanceLayout:
    """Make a stopped instance's ``vm.json`` say *config* (CPUs, memory, disk, accel,
    shares), applied at its next boot. The data disk only grows: a smaller ``disk_gib``
    raises InvalidArgument and changes nothing. The caller checks that the VM is stopped."""
    config.validate()
    current = load(config.name)
    lay = layout.InstanceLayout.named(config.name)
    if config == current:
        return lay
    if config.disk_gib < current.disk_gib:
        raise InvalidArgument(
            f"vm {config.name}: the data disk is {current.disk_gib} GiB and cannot shrink to "
            f"{config.disk_gib} GiB (keep --disk {current.disk_gib} or more, or vm rm it)"
        )
    if config.disk_gib > current.disk_gib:
        grow_data_disk(lay.data_disk, config.disk_gib << 30)
    write_json_atomic(lay.vm_json, asdict(config))
    return lay


def differences(old: InstanceConfig, new: InstanceConfig) -> str:
    """``cpus 2 -> 4, memory_mib 1024 -> 2048``: what *new* changes (for messages)."""
    a, b = asdict(old), asdict(new)
    return ", ".join(f"{k} {a[k]} -> {b[k]}" for k in a if a[k] != b[k])


def grow_data_disk(path: Path, size: int) -> None:
    """Grow the (stopped) VM's raw data disk to *size* bytes, filesystem included.

    A disk the guest has not formatted yet is just extended (sparse; the first boot formats
    all of it). A formatted one is checked and resized offline on the host (e2fsck, then
    resize2fs on the file: no loop device, no guest step), after the tools are found and
    before the file changes, so a missing tool leaves the disk as it was."""
    if not _has_ext_fs(path):
        if path.stat().st_size < size:
            with open(path, "r+b") as f:
                f.truncate(size)
        return
    search = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))
    e2fsck, resize2fs = (shutil.which(t, path=search) for t in ("e2fsck", "resize2fs"))
    if e2fsck is None or resize2fs is None:
        raise Unavailable(f"growing {path} needs e2fsck and resize2fs (e2fsprogs) on this host")
    # e2fsck exits 1 when it fixed something: fine; resize2fs refuses an unchecked fs.
    _run_e2fs([e2fsck, "-f", "-p", str(path)], ok=(0, 1))
    if path.stat().st_size < size:
        with open(path, "r+b") as f:
            f.truncate(size)
    # Also when an earlier resize2fs failed after the file grew: it fills the file.
    _run_e2fs([resize2fs, str(path)], ok=(0,))


def _has_ext_fs(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(EXT_MAGIC_OFFSET)
        return f.read(2) == EXT_MAGIC


def _run_e2fs(argv: list[str], *, ok: tuple[int, ...]) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode not in ok:
        raise Internal(f"{' '.join(argv)}: exit {out.returncode}: {out.stderr.strip()[-400:]}")


def load(name: str) -> InstanceConfig:
    lay = layout.InstanceLayout.named(name)
    try:
        obj = read_json(lay.vm_json)
    except FileNotFoundError as e:
        raise NotFound(f"no such vm: {name}") from e
    obj["shares"] = tuple(obj.get("shares", ()))
    return InstanceConfig(**obj)


def names() -> list[str]:
    root = layout.data_home() / layout.VMS_DIR
    return (
        sorted(p.name for p in root.iterdir() if (p / layout.VM_JSON).exists())
        if root.exists()
        else []
    )


def remove(name: str) -> None:
    lay = layout.InstanceLayout.named(name)
    with contextlib.suppress(FileNotFoundError):
        lay.relay_socket.unlink()
    shutil.rmtree(lay.dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stable_port(lay: layout.InstanceLayout) -> int:
    """The SSH port used last time if it is still free (keeps the domain XML unchanged)."""
    try:
        port = int(lay.ssh_port.read_text())
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # QEMU's hostfwd binds with SO_REUSEADDR too: TIME_WAIT left by the last boot's
            # connections must not make us pick a new port (a new port means a redefine).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        return port
    except (OSError, ValueError):
        return free_port()


def write_seed(lay: layout.InstanceLayout, config: InstanceConfig) -> None:
    files = {
        seedmod.AUTHORIZED_KEYS: lay.client_key.with_name(layout.CLIENT_KEY + ".pub").read_bytes(),
        seedmod.HOST_KEY: lay.host_key.read_bytes(),
        seedmod.HOST_KEY_PUB: lay.host_key.with_name(layout.HOST_KEY + ".pub").read_bytes(),
    }
    shares = tuple(
        seedmod.Share(tag=f"share{i}", mountpoint=p) for i, p in enumerate(config.shares)
    )
    buf = io.BytesIO()
    cfg = seedmod.SeedConfig(hostname=f"cove-{config.name}", host_time=time.time(), shares=shares)
    seedmod.write_seed(buf, cfg, files)
    write_atomic(lay.seed, buf.getvalue(), mode=0o600)


def host_key_line(lay: layout.InstanceLayout) -> str:
    return lay.host_key.with_name(layout.HOST_KEY + ".pub").read_text().strip()


def spec_for(
    lay: layout.InstanceLayout,
    config: InstanceConfig,
    *,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    root_image: Path,
    ssh_port: int,
) -> VMSpec:
    return VMSpec(
        name=config.name,
        cpus=config.cpus,
        memory_mib=config.memory_mib,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
        root_image=root_image,
        root_overlay=lay.root_overlay,
        data=Disk(path=lay.data_disk, serial=seedmod.SERIAL_DATA),
        seed=Disk(path=lay.seed, serial=seedmod.SERIAL_SEED, readonly=True),
        serial_log=lay.serial_log,
        ssh_port=ssh_port,
        shares=tuple(
            Share(tag=f"share{i}", host_path=Path(p)) for i, p in enumerate(config.shares)
        ),
        accel=Accel(config.accel),
    )


def write_known_hosts(lay: layout.InstanceLayout, port: int) -> None:
    write_atomic(
        lay.known_hosts, keys.known_hosts_line("127.0.0.1", port, host_key_line(lay)).encode()
    )
    write_atomic(lay.ssh_port, f"{port}\n".encode())


def read_pid(path: Path) -> int:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return 0
