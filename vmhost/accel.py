"""Which accelerator a guest gets: hardware (KVM on Linux, HVF on macOS) or TCG emulation.

Linux: a real KVM check, not ``os.access('/dev/kvm')``. Some hosts (these CI machines)
expose /dev/kvm backed by ``kvm_pvm``, a software nested-virt module: KVM_CREATE_VM works, yet
stock guest kernels abort or crawl (see vm-notes.md). So: no /dev/kvm, or
``/sys/module/kvm_pvm`` present, or no vmx/svm CPU flag means TCG.

macOS: Hypervisor.framework when ``sysctl -n kern.hv_support`` says 1 (Apple Silicon, and
Intel Macs with VT-x), else TCG.

A guest of another architecture than the host's (an arm64 guest on an amd64 host) can only
be emulated: TCG whatever the host offers.
"""

from __future__ import annotations

import os
import platform as _platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from runtime.api.errors import InvalidArgument
from vmhost.hypervisor import Accel

Sysctl = Callable[[str], str | None]  # name -> value (None: no such key / no sysctl)

# Debian and QEMU spellings of the architectures a guest image exists for.
QEMU_ARCH = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}


def qemu_arch(arch: str) -> str:
    """``amd64``/``x86_64`` -> ``x86_64``; ``arm64``/``aarch64`` -> ``aarch64``."""
    try:
        return QEMU_ARCH[arch.lower()]
    except KeyError as e:
        raise InvalidArgument(f"guest arch {arch!r}: use amd64 or arm64") from e


def sysctl(name: str) -> str | None:
    """``sysctl -n NAME`` (macOS, BSDs); None when the key or the tool is missing."""
    try:
        out = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def kvm_problem(root: Path = Path("/"), *, machine: str | None = None) -> str | None:
    """None when KVM should work, else the reason we fall back to TCG."""
    dev = root / "dev/kvm"
    if not dev.exists():
        return "no /dev/kvm"
    if not os.access(dev, os.R_OK | os.W_OK):
        return "/dev/kvm not accessible"
    if (root / "sys/module/kvm_pvm").exists():
        return "/dev/kvm is kvm_pvm (software PVM), which cannot boot stock kernels"
    if host_qemu_arch(machine) != "x86_64":
        return None  # arm64 cpuinfo names no virtualisation flag: /dev/kvm itself is the test
    try:
        flags = (root / "proc/cpuinfo").read_text()
    except OSError:
        return "cannot read /proc/cpuinfo"
    if " vmx" not in flags and " svm" not in flags:
        return "CPU has no vmx/svm flag"
    return None


def hvf_problem(read_sysctl: Sysctl = sysctl) -> str | None:
    """None when Hypervisor.framework is usable (macOS), else the reason for TCG."""
    value = read_sysctl("kern.hv_support")
    if value is None:
        return "cannot read sysctl kern.hv_support"
    if value.strip() != "1":
        return f"Hypervisor.framework unsupported (kern.hv_support={value.strip()})"
    return None


def hardware(platform: str = sys.platform) -> Accel | None:
    """The hardware accelerator this kind of host has at best (None: emulation only)."""
    if platform.startswith("linux"):
        return Accel.KVM
    if platform == "darwin":
        return Accel.HVF
    return None


def host_qemu_arch(machine: str | None = None) -> str:
    m = (machine or _platform.machine()).lower()
    return QEMU_ARCH.get(m, m)


def problem(
    guest_arch: str | None = None,
    *,
    root: Path = Path("/"),
    platform: str = sys.platform,
    read_sysctl: Sysctl = sysctl,
    machine: str | None = None,
) -> str | None:
    """None when a guest of *guest_arch* (default: the host's) gets hardware acceleration
    here, else why it is emulated (TCG)."""
    host = host_qemu_arch(machine)
    if guest_arch is not None and qemu_arch(guest_arch) != host:
        return f"a {qemu_arch(guest_arch)} guest on a {host} host is emulated"
    hw = hardware(platform)
    if hw is Accel.KVM:
        return kvm_problem(root, machine=machine)
    if hw is Accel.HVF:
        return hvf_problem(read_sysctl)
    return f"no hardware accelerator known on {platform}"


def choose(
    requested: Accel,
    root: Path = Path("/"),
    *,
    guest_arch: str | None = None,
    platform: str = sys.platform,
    read_sysctl: Sysctl = sysctl,
    machine: str | None = None,
) -> Accel:
    """AUTO: the host's hardware accelerator when :func:`problem` finds none, else TCG.
    An explicit request is kept, unless it cannot work at all (HVF off macOS, KVM on
    macOS, hardware acceleration of a foreign-arch guest): InvalidArgument says why."""
    why = problem(guest_arch, root=root, platform=platform, read_sysctl=read_sysctl,
                  machine=machine)
    if requested is Accel.AUTO:
        hw = hardware(platform)
        return hw if why is None and hw is not None else Accel.TCG
    if requested is Accel.TCG:
        return requested
    host = host_qemu_arch(machine)
    if guest_arch is not None and qemu_arch(guest_arch) != host:
        raise InvalidArgument(f"accel {requested}: {why}; use --accel tcg or auto")
    if hardware(platform) is not requested:
        raise InvalidArgument(f"accel {requested} is not available on {platform}")
    return requested
