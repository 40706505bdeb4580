"""Is hardware KVM usable? A real check, not ``os.access('/dev/kvm')``.

Some hosts (these CI machines) expose /dev/kvm backed by ``kvm_pvm``, a software nested-virt
module: KVM_CREATE_VM works, yet stock guest kernels abort or crawl (see vm-notes.md). So:
no /dev/kvm, or ``/sys/module/kvm_pvm`` present, or no vmx/svm CPU flag means TCG.
"""

from __future__ import annotations

import os
from pathlib import Path

from vmhost.hypervisor import Accel


def kvm_problem(root: Path = Path("/")) -> str | None:
    """None when KVM should work, else the reason we fall back to TCG."""
    dev = root / "dev/kvm"
    if not dev.exists():
        return "no /dev/kvm"
    if not os.access(dev, os.R_OK | os.W_OK):
        return "/dev/kvm not accessible"
    if (root / "sys/module/kvm_pvm").exists():
        return "/dev/kvm is kvm_pvm (software PVM), which cannot boot stock kernels"
    try:
        flags = (root / "proc/cpuinfo").read_text()
    except OSError:
        return "cannot read /proc/cpuinfo"
    if " vmx" not in flags and " svm" not in flags:
        return "CPU has no vmx/svm flag"
    return None


def choose(requested: Accel, root: Path = Path("/")) -> Accel:
    if requested is not Accel.AUTO:
        return requested
    return Accel.KVM if kvm_problem(root) is None else Accel.TCG
