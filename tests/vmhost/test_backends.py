"""Hypervisor contract on FakeHypervisor, libvirt domain XML (pure), KVM probe, registry."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from runtime.api.errors import Conflict, InvalidArgument, NotFound
from vmhost import backends
from vmhost.accel import choose, kvm_problem
from vmhost.hypervisor import Accel, Disk, Hypervisor, Share, VMSpec, VMState
from vmhost.testing import FakeHypervisor


def spec(tmp_path: Path, **kw: object) -> VMSpec:
    base: dict[str, object] = {
        "name": "t",
        "cpus": 2,
        "memory_mib": 1024,
        "kernel": tmp_path / "vmlinuz",
        "initrd": tmp_path / "initrd",
        "cmdline": "console=ttyS0",
        "root_image": tmp_path / "root.raw",
        "root_overlay": tmp_path / "o.qcow2",
        "data": Disk(path=tmp_path / "data.raw", serial="cove-data"),
        "seed": Disk(path=tmp_path / "seed.tar", serial="cove-seed", readonly=True),
        "serial_log": tmp_path / "serial.log",
        "ssh_port": 2222,
    }
    base.update(kw)
    return VMSpec(**base)  # type: ignore[arg-type]


def test_fake_lifecycle_contract(tmp_path: Path) -> None:
    hv: Hypervisor = FakeHypervisor()
    assert isinstance(hv, Hypervisor)
    assert hv.status("t").state is VMState.ABSENT
    with pytest.raises(NotFound):
        hv.start("t")
    hv.create(spec(tmp_path))
    hv.create(spec(tmp_path))  # idempotent while stopped
    hv.start("t")
    hv.start("t")
    assert hv.status("t").state is VMState.RUNNING
    with pytest.raises(Conflict):
        hv.create(spec(tmp_path))
    assert hv.resources("t").cpus == 2
    hv.stop("t")
    hv.stop("t")
    hv.delete("t")
    hv.delete("t")
    assert hv.status("t").state is VMState.ABSENT


def test_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVE_VM_BACKEND", "fake")
    assert backends.get().name == "fake"
    with pytest.raises(InvalidArgument):
        backends.get("nope")


def test_kvm_probe_sees_through_kvm_pvm(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "sys/module/kvm_pvm").mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("flags : fpu vme sse2\n")
    assert kvm_problem(tmp_path) == "no /dev/kvm"
    (tmp_path / "dev/kvm").write_text("")
    assert "kvm_pvm" in (kvm_problem(tmp_path) or "")
    (tmp_path / "sys/module/kvm_pvm").rmdir()
    assert "vmx" in (kvm_problem(tmp_path) or "")
    (tmp_path / "proc/cpuinfo").write_text("flags : fpu vmx sse2\n")
    assert kvm_problem(tmp_path) is None
    assert choose(Accel.AUTO, tmp_path) is Accel.KVM
    assert choose(Accel.TCG, tmp_path) is Accel.TCG


def test_libvirt_domain_xml(tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    from vmhost.backends.libvirt import domain_xml

    s = spec(tmp_path, shares=(Share(tag="share0", host_path=tmp_path),))
    xml = domain_xml(s, Accel.TCG, as_root=False)
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("os/kernel") == str(tmp_path / "vmlinuz")
    assert root.find("features/tcg/tb-cache").text == "64"  # type: ignore[union-attr]
    serials = [d.findtext("serial") for d in root.iterfind("devices/disk")]
    assert serials == ["cove-root", "cove-data", "cove-seed"]
    assert root.find("devices/disk[3]/readonly") is not None
    assert root.find("devices/filesystem/driver").get("type") == "virtiofs"  # type: ignore[union-attr]
    assert root.find("memoryBacking/access").get("mode") == "shared"  # type: ignore[union-attr]
    args = [a.get("value") for a in root.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert "user,id=covenet,hostfwd=tcp:127.0.0.1:2222-:22" in args
    assert any("addr=0x10" in (a or "") for a in args)
    kvm = ET.fromstring(domain_xml(spec(tmp_path), Accel.KVM, as_root=True))
    assert kvm.get("type") == "kvm" and kvm.find("features/tcg") is None
    assert kvm.find("memoryBacking") is None and kvm.find("seclabel") is not None
