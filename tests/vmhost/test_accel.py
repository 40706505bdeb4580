"""Accelerator choice: KVM on Linux (the kvm_pvm probe), HVF on macOS (kern.hv_support),
TCG otherwise and for any foreign-arch guest. The host's platform, machine and sysctl
reader are parameters: each case below is a host this machine is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.api.errors import InvalidArgument
from vmhost.accel import Sysctl, choose, hvf_problem, kvm_problem, problem, qemu_arch, sysctl
from vmhost.hypervisor import Accel


def sysctls(**values: str) -> Sysctl:
    """A sysctl reader answering from *values* (dots as underscores), None otherwise."""

    def read(name: str) -> str | None:
        return values.get(name.replace(".", "_"))

    return read


def good_linux(tmp_path: Path, flags: str = "fpu vmx sse2") -> Path:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kvm").write_text("")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(f"vendor_id : GenuineIntel\nflags : {flags}\n")
    return tmp_path


def test_macos_with_hv_support_picks_hvf() -> None:
    read = sysctls(kern_hv_support="1")
    for machine in ("arm64", "x86_64"):  # Apple Silicon and Intel Macs
        assert choose(Accel.AUTO, platform="darwin", read_sysctl=read, machine=machine) is (
            Accel.HVF
        )
    assert problem(platform="darwin", read_sysctl=read, machine="arm64") is None


def test_macos_without_hv_support_falls_back_to_tcg_with_reason() -> None:
    no = sysctls(kern_hv_support="0")
    assert choose(Accel.AUTO, platform="darwin", read_sysctl=no, machine="arm64") is Accel.TCG
    assert "kern.hv_support=0" in (hvf_problem(no) or "")
    missing = sysctls()
    assert choose(Accel.AUTO, platform="darwin", read_sysctl=missing) is Accel.TCG
    assert "cannot read" in (hvf_problem(missing) or "")


def test_linux_kvm_as_before(tmp_path: Path) -> None:
    root = good_linux(tmp_path)
    never = sysctls(kern_hv_support="1")  # not consulted on Linux
    assert choose(Accel.AUTO, root, platform="linux", read_sysctl=never, machine="x86_64") is (
        Accel.KVM
    )
    (root / "sys/module/kvm_pvm").mkdir(parents=True)
    assert choose(Accel.AUTO, root, platform="linux", machine="x86_64") is Accel.TCG
    assert "kvm_pvm" in (problem(root=root, platform="linux", machine="x86_64") or "")


def test_arm64_linux_kvm_needs_no_vmx_flag(tmp_path: Path) -> None:
    root = good_linux(tmp_path, flags="fp asimd evtstrm aes")
    assert kvm_problem(root, machine="x86_64") == "CPU has no vmx/svm flag"
    assert kvm_problem(root, machine="aarch64") is None
    assert choose(Accel.AUTO, root, platform="linux", machine="aarch64") is Accel.KVM


def test_foreign_arch_guest_is_emulated(tmp_path: Path) -> None:
    root = good_linux(tmp_path)
    on_amd64 = {"platform": "linux", "machine": "x86_64"}
    assert choose(Accel.AUTO, root, guest_arch="arm64", **on_amd64) is Accel.TCG  # type: ignore[arg-type]
    assert choose(Accel.AUTO, root, guest_arch="amd64", **on_amd64) is Accel.KVM  # type: ignore[arg-type]
    assert "aarch64 guest on a x86_64 host" in (
        problem("arm64", root=root, platform="linux", machine="x86_64") or ""
    )
    with pytest.raises(InvalidArgument, match="emulated"):
        choose(Accel.KVM, root, guest_arch="aarch64", platform="linux", machine="x86_64")
    read = sysctls(kern_hv_support="1")
    assert choose(Accel.AUTO, guest_arch="amd64", platform="darwin", read_sysctl=read,
                  machine="arm64") is Accel.TCG


def test_explicit_requests(tmp_path: Path) -> None:
    read = sysctls(kern_hv_support="1")
    assert choose(Accel.TCG, platform="darwin", read_sysctl=read) is Accel.TCG
    assert choose(Accel.HVF, platform="darwin", read_sysctl=read, machine="arm64") is Accel.HVF
    with pytest.raises(InvalidArgument, match="hvf is not available on linux"):
        choose(Accel.HVF, tmp_path, platform="linux", machine="x86_64")
    with pytest.raises(InvalidArgument, match="kvm is not available on darwin"):
        choose(Accel.KVM, platform="darwin", read_sysctl=read, machine="arm64")
    assert choose(Accel.AUTO, platform="win32") is Accel.TCG


def test_arch_names() -> None:
    assert qemu_arch("amd64") == qemu_arch("x86_64") == "x86_64"
    assert qemu_arch("arm64") == qemu_arch("AArch64") == "aarch64"
    with pytest.raises(InvalidArgument):
        qemu_arch("riscv64")


def test_real_sysctl_reader() -> None:
    """The default reader runs sysctl(8); on Linux kern.hv_support does not exist."""
    assert sysctl("kern.hv_support-no-such-key") is None
