"""The Hypervisor seam: what a VM backend must do, and the frozen spec it is given.

A backend turns a :class:`VMSpec` into a running VM and back. It knows nothing about SSH,
the engine or port forwards (the supervisor does); so a Virtualization.framework or Hyper-V
backend only has to map the same spec onto its own API. Glossary:

- *root*: the cached guest image (read-only base); the backend boots a throwaway overlay of it
  (``root_overlay``), recreated by :meth:`Hypervisor.create`, so image upgrades just work.
- *data*: the engine's persistent disk (``/var/lib/cove``), never recreated by a backend.
- *seed*: a small raw disk with keys and settings (``guestagent.seed``), read-only.
- *ssh_port*: 127.0.0.1 port on the host forwarded to the guest's port 22.

Disks carry a ``serial``: the guest finds its disks by serial, not by probe order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable


class VMState(StrEnum):
    ABSENT = "absent"  # no such VM defined
    STOPPED = "stopped"
    RUNNING = "running"
    PAUSED = "paused"
    CRASHED = "crashed"


class Accel(StrEnum):
    AUTO = "auto"
    KVM = "kvm"
    HVF = "hvf"  # macOS Hypervisor.framework (QEMU -accel hvf; libvirt <domain type='hvf'>)
    TCG = "tcg"


@dataclass(frozen=True, slots=True, kw_only=True)
class Disk:
    path: Path
    serial: str
    format: str = "raw"  # raw | qcow2
    readonly: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Share:
    """A host directory shared into the guest (virtiofs on libvirt)."""

    tag: str
    host_path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class VMSpec:
    name: str
    cpus: int
    memory_mib: int
    kernel: Path
    initrd: Path
    cmdline: str
    root_image: Path  # raw base image, never written
    root_overlay: Path  # per-VM throwaway overlay the guest boots from
    data: Disk
    seed: Disk
    serial_log: Path
    ssh_port: int
    shares: tuple[Share, ...] = ()
    accel: Accel = Accel.AUTO
    tb_size_mib: int = 64  # TCG translation cache cap: QEMU's RSS is mostly this under TCG


@dataclass(frozen=True, slots=True, kw_only=True)
class VMStatus:
    state: VMState
    pid: int = 0  # the hypervisor process, when the backend knows it
    accel: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    cpus: int
    memory_mib: int
    host_rss_bytes: int = 0  # the hypervisor process's resident memory


@runtime_checkable
class Hypervisor(Protocol):
    """A VM backend. Calls block until done; errors are runtime.api.errors classes."""

    name: str

    def available(self) -> str | None:
        """None when usable on this host, else why not (for skips and `vm status`)."""
        ...

    def sharing(self) -> str | None:
        """None when host directories can be shared into guests here, else why not."""
        ...

    def create(self, spec: VMSpec) -> None:
        """Define the VM from *spec* and reset its root overlay. Idempotent: redefines a
        stopped VM. Raises Conflict when the VM is running, Unavailable when the backend is."""
        ...

    def start(self, name: str) -> None:
        """Boot a created VM. Idempotent (a running VM is left alone). Raises NotFound."""
        ...

    def stop(self, name: str, *, timeout: float = 20.0) -> None:
        """Ask the guest to power off, force it after *timeout*. Idempotent."""
        ...

    def delete(self, name: str) -> None:
        """Stop and undefine; keeps the files (the instance dir owns them). Idempotent."""
        ...

    def status(self, name: str) -> VMStatus:
        """Current state; never raises for a missing VM (state ABSENT)."""
        ...

    def resources(self, name: str) -> Resources:
        """Configured CPUs/memory and host RSS. Raises NotFound."""
        ...
