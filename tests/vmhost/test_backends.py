"""Hypervisor contract on FakeHypervisor, libvirt domain XML (pure), KVM probe, registry."""

from __future__ import annotations

import shutil
import subprocess
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
    assert "vmx" in (kvm_problem(tmp_path, machine="x86_64") or "")
    (tmp_path / "proc/cpuinfo").write_text("flags : fpu vmx sse2\n")
    assert kvm_problem(tmp_path) is None
    assert choose(Accel.AUTO, tmp_path, platform="linux", machine="x86_64") is Accel.KVM
    assert choose(Accel.TCG, tmp_path, platform="linux", machine="x86_64") is Accel.TCG


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


ARCH_ACCELS = [(a, c) for a in ("x86_64", "aarch64") for c in (Accel.TCG, Accel.KVM, Accel.HVF)]


@pytest.mark.parametrize(("arch", "accel"), ARCH_ACCELS, ids=lambda v: str(v))
def test_libvirt_domain_xml_per_arch_and_accel(tmp_path: Path, arch: str, accel: Accel) -> None:
    pytest.importorskip("libvirt")
    from vmhost.backends.libvirt import domain_xml

    s = spec(tmp_path, shares=(Share(tag="share0", host_path=tmp_path),))
    xml = domain_xml(s, accel, as_root=True, arch=arch)
    root = ET.fromstring(xml)
    ostype = root.find("os/type")
    assert ostype is not None and ostype.get("arch") == arch
    assert root.get("type") == {Accel.TCG: "qemu", Accel.KVM: "kvm", Accel.HVF: "hvf"}[accel]
    tb = root.find("features/tcg/tb-cache")
    assert (tb is not None) is (accel is Accel.TCG)
    cpu = root.find("cpu")
    assert cpu is not None
    if accel is Accel.TCG:
        assert cpu.get("mode") == ("maximum" if arch == "x86_64" else "custom")
    else:
        assert cpu.get("mode") == "host-passthrough"
    if arch == "x86_64":
        assert ostype.get("machine") == "q35"
        assert root.find("features/acpi") is not None and root.find("features/gic") is None
    else:
        assert ostype.get("machine") == "virt"
        assert root.find("features/acpi") is None  # libvirt: ACPI on aarch64 needs UEFI
        gic = root.find("features/gic")
        assert gic is not None and gic.get("version") == ("host" if accel is Accel.KVM else "3")
    # virtio disks and the slirp NIC on the PCIe root bus, on both machines
    assert all(d.find("target").get("bus") == "virtio" for d in root.iterfind("devices/disk"))  # type: ignore[union-attr]
    args = [a.get("value") for a in root.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert "virtio-net-pci,netdev=covenet,bus=pcie.0,addr=0x10" in args
    _validate(xml, tmp_path)


def _validate(xml: str, tmp_path: Path) -> None:
    """libvirt's own schema (virt-xml-validate, libvirt-clients + xmllint) when installed,
    and a define on libvirt's test driver in any case."""
    import libvirt

    if shutil.which("virt-xml-validate") and shutil.which("xmllint"):
        path = tmp_path / "domain.xml"
        path.write_text(xml)
        out = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True,
                             text=True, check=False)
        assert out.returncode == 0, out.stderr
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(xml)
        assert dom.name() == "cove-t"
        dom.undefine()
    finally:
        conn.close()


def test_domain_xml_validation_can_fail(tmp_path: Path) -> None:
    """The schema check above is a real one: a domain type libvirt does not know fails."""
    pytest.importorskip("libvirt")
    if not (shutil.which("virt-xml-validate") and shutil.which("xmllint")):
        pytest.skip("virt-xml-validate/xmllint not installed (libvirt-clients, libxml2-utils)")
    from vmhost.backends.libvirt import domain_xml

    xml = domain_xml(spec(tmp_path), Accel.TCG, as_root=False, arch="aarch64")
    with pytest.raises(AssertionError):
        _validate(xml.replace("type='qemu'", "type='warp'", 1), tmp_path)


def test_domain_xml_unknown_arch(tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    from vmhost.backends.libvirt import domain_xml

    with pytest.raises(InvalidArgument, match="riscv64"):
        domain_xml(spec(tmp_path), Accel.TCG, as_root=False, arch="riscv64")
