"""LibvirtHypervisor: a VMSpec as a libvirt domain. The only module that imports libvirt.

Domain shape (see vm-notes.md for why):

- The guest image's arch: q35 for x86_64, ``virt`` (GICv3, no ACPI) for aarch64; direct
  kernel boot; ``type='qemu'`` (TCG) unless :mod:`vmhost.accel` trusts KVM (Linux) or HVF
  (macOS), which a foreign-arch guest never gets; under TCG ``<tcg><tb-cache>`` caps the
  translation cache (most of QEMU's RSS).
- virtio-blk disks with serials; the root is a qcow2 overlay recreated on every create().
- Networking: libvirt's ``<interface type='user'>`` cannot forward ports, so the slirp netdev
  with ``hostfwd=tcp:127.0.0.1:PORT-:22`` goes to QEMU through ``<qemu:commandline>``, with an
  explicit PCI address (without it, it takes slot 1 and pcie-root-port fails).
- Shares: virtiofs (needs shared memfd memory backing).
- ``defineXML`` is skipped when the domain already matches the spec (a digest in
  ``<metadata>``): on hosts where /dev/kvm is accessible but unusable (kvm_pvm), libvirt 9.0
  re-probes QEMU's capabilities on every define, which takes 50-80 s on a busy 2-core box.
  So a restart with the same spec costs only ``create()``; the supervisor keeps the SSH port.
- As root on ``qemu:///system``, QEMU runs as root (static DAC label) so instance dirs under
  /root need no relabelling; as a user, ``qemu:///session`` runs it as that user anyway.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

import libvirt

from runtime.api.errors import Conflict, Internal, InvalidArgument, NotFound, Unavailable
from vmhost import accel as accelmod
from vmhost import guestimage
from vmhost.hypervisor import Accel, Disk, Resources, VMSpec, VMState, VMStatus
from vmhost.layout import is_root

log = logging.getLogger(__name__)

PREFIX = "cove-"
NS = "https://cove.invalid/vm/1"
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"
_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: VMState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: VMState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: VMState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: VMState.RUNNING,
    libvirt.VIR_DOMAIN_SHUTOFF: VMState.STOPPED,
    libvirt.VIR_DOMAIN_CRASHED: VMState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: VMState.PAUSED,
}


def default_uri() -> str:
    return "qemu:///system" if is_root() else "qemu:///session"


def _q(value: object) -> str:
    return quoteattr(str(value))


def _disk_xml(disk: Disk, dev: str) -> str:
    ro = "<readonly/>" if disk.readonly else ""
    return (
        f"<disk type='file' device='disk'><driver name='qemu' type={_q(disk.format)}/>"
        f"<source file={_q(disk.path)}/><target dev={_q(dev)} bus='virtio'/>"
        f"<serial>{disk.serial}</serial>{ro}</disk>"
    )


_KIND = {Accel.TCG: "qemu", Accel.KVM: "kvm", Accel.HVF: "hvf"}
# aarch64 under TCG: a Cortex-A72 rather than ``max``: ``max`` has pointer authentication,
# whose QARMA cipher QEMU computes on every signed return. Measured here (2 vCPUs, first
# boot to engine-ready): max 24.6/28.7 s, cortex-a72 12.2/11.7 s.
_TCG_CPU = {
    "x86_64": "<cpu mode='maximum'/>",
    "aarch64": "<cpu mode='custom' match='exact'><model fallback='forbid'>cortex-a72</model></cpu>",
}


def _machine(arch: str, accel: Accel) -> tuple[str, str]:
    """``<os><type>`` and the arch-specific ``<features>``.

    x86_64: q35 with ACPI. aarch64: ``virt``, no ``<acpi/>`` (libvirt only allows ACPI on
    aarch64 with UEFI; direct kernel boot uses the device tree QEMU generates) and a GICv3
    (QEMU's emulated one under TCG and HVF; the host's own under KVM)."""
    if arch == "x86_64":
        return "<type arch='x86_64' machine='q35'>hvm</type>", "<acpi/>"
    if arch == "aarch64":
        gic = "host" if accel is Accel.KVM else "3"
        return "<type arch='aarch64' machine='virt'>hvm</type>", f"<gic version='{gic}'/>"
    raise InvalidArgument(f"libvirt: no domain shape for guest arch {arch!r}")


def domain_xml(spec: VMSpec, accel: Accel, *, as_root: bool, arch: str = "x86_64") -> str:
    """The libvirt domain for *spec* (pure: tested without libvirt). *arch* is the guest's
    QEMU architecture (``x86_64``, ``aarch64``), from the guest image."""
    tcg = accel is Accel.TCG
    kind = _KIND[accel]
    ostype, arch_features = _machine(arch, accel)
    cpu = _TCG_CPU[arch] if tcg else "<cpu mode='host-passthrough'/>"
    tcg_features = f"<tcg><tb-cache unit='MiB'>{spec.tb_size_mib}</tb-cache></tcg>" if tcg else ""
    membacking = (
        "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
        if spec.shares
        else ""
    )
    shares = "".join(
        "<filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/>"
        f"<binary path={_q(VIRTIOFSD)}/><source dir={_q(s.host_path)}/>"
        f"<target dir={_q(s.tag)}/></filesystem>"
        for s in spec.shares
    )
    seclabel = (
        "<seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>"
        if as_root
        else ""
    )
    root = Disk(path=spec.root_overlay, serial="cove-root", format="qcow2")
    netdev = f"user,id=covenet,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22"
    # The serial port: an isa-serial (ttyS0) on q35, the virt board's PL011 (ttyAMA0) on
    # aarch64; libvirt picks the device from the machine, the image's cmdline names it.
    return f"""<domain type='{kind}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{PREFIX}{spec.name}</name>
  <metadata/>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>{spec.cpus}</vcpu>
  <os>{ostype}
    <kernel>{spec.kernel}</kernel><initrd>{spec.initrd}</initrd><cmdline>{spec.cmdline}</cmdline>
  </os>
  <features>{arch_features}{tcg_features}</features>
  {cpu}{membacking}
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    {_disk_xml(root, "vda")}
    {_disk_xml(spec.data, "vdb")}
    {_disk_xml(spec.seed, "vdc")}
    {shares}
    <serial type='file'><source path={_q(spec.serial_log)} append='off'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  {seclabel}
  <qemu:commandline>
    <qemu:arg value='-netdev'/><qemu:arg value={_q(netdev)}/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=covenet,bus=pcie.0,addr=0x10'/>
  </qemu:commandline>
</domain>
"""


def make_overlay(base: Path, overlay: Path) -> None:
    overlay.unlink(missing_ok=True)
    try:
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base), str(overlay)],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError as e:
        raise Unavailable("libvirt: qemu-img not installed (apt-get install qemu-utils)") from e
    except subprocess.CalledProcessError as e:
        raise Internal(f"create overlay {overlay}: {e.stderr.decode().strip()}") from e


class LibvirtHypervisor:
    name = "libvirt"

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri or default_uri()
        self._conn: libvirt.virConnect | None = None
        self.accel_used: Accel | None = None

    def available(self) -> str | None:
        try:
            self._connect()
        except Unavailable as e:
            return str(e)
        return None

    def sharing(self) -> str | None:
        if not os.access(VIRTIOFSD, os.X_OK):
            return f"no virtiofs daemon at {VIRTIOFSD} (Debian: apt install qemu-system-common)"
        return None

    def _connect(self) -> libvirt.virConnect:
        if self._conn is not None and self._conn.isAlive():
            return self._conn
        if self.uri == "qemu:///system":
            from vmhost.backends.libvirtd import ensure_system_daemons

            ensure_system_daemons()
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # no stderr spam
        try:
            self._conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            raise Unavailable(f"libvirt {self.uri}: {e.get_error_message()}") from e
        return self._conn

    def _lookup(self, name: str) -> libvirt.virDomain | None:
        try:
            return self._connect().lookupByName(PREFIX + name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise Internal(f"libvirt lookup {name}: {e.get_error_message()}") from e

    def create(self, spec: VMSpec) -> None:
        dom = self._lookup(spec.name)
        if dom is not None and dom.isActive():
            raise Conflict(f"vm {spec.name} is running")
        arch = accelmod.qemu_arch(guestimage.image_arch(spec.root_image.parent))
        accel = accelmod.choose(spec.accel, guest_arch=arch)
        self.accel_used = accel
        make_overlay(spec.root_image, spec.root_overlay)
        spec.serial_log.unlink(missing_ok=True)
        xml = domain_xml(spec, accel, as_root=is_root(), arch=arch)
        digest = hashlib.sha256(xml.encode()).hexdigest()[:16]
        if dom is not None and f">{digest}</cove:spec>" in dom.XMLDesc(0):
            return  # unchanged: skip defineXML (see the module docstring: it can take a minute)
        if dom is not None:  # redefine from the new spec (ports, image) rather than merge
            try:
                dom.undefine()
            except libvirt.libvirtError as e:
                raise Internal(f"libvirt undefine {spec.name}: {e.get_error_message()}") from e
        xml = xml.replace(
            "<metadata/>", f"<metadata><cove:spec xmlns:cove='{NS}'>{digest}</cove:spec></metadata>"
        )
        log.debug("define %s (%s)", spec.name, accel)
        try:
            self._connect().defineXML(xml)
        except libvirt.libvirtError as e:
            raise Internal(f"libvirt define {spec.name}: {e.get_error_message()}") from e

    def start(self, name: str) -> None:
        dom = self._lookup(name)
        if dom is None:
            raise NotFound(f"no such vm: {name}")
        if dom.isActive():
            return
        try:
            dom.create()
        except libvirt.libvirtError as e:
            raise Internal(f"libvirt start {name}: {e.get_error_message()}") from e

    def stop(self, name: str, *, timeout: float = 20.0) -> None:
        dom = self._lookup(name)
        if dom is None or not dom.isActive():
            return
        try:
            dom.shutdown()
        except libvirt.libvirtError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not dom.isActive():
                return
            time.sleep(0.2)
        try:
            dom.destroy()
        except libvirt.libvirtError as e:
            if dom.isActive():
                raise Internal(f"libvirt destroy {name}: {e.get_error_message()}") from e

    def delete(self, name: str) -> None:
        self.stop(name, timeout=0)
        dom = self._lookup(name)
        if dom is not None:
            try:
                dom.undefine()
            except libvirt.libvirtError as e:
                raise Internal(f"libvirt undefine {name}: {e.get_error_message()}") from e

    def status(self, name: str) -> VMStatus:
        dom = self._lookup(name)
        if dom is None:
            return VMStatus(state=VMState.ABSENT)
        state = _STATES.get(dom.state()[0], VMState.STOPPED)
        pid = _qemu_pid(dom.name()) if state is VMState.RUNNING else 0
        desc = dom.XMLDesc(0)
        kind = "tcg" if "type='qemu'" in desc else "hvf" if "type='hvf'" in desc else "kvm"
        return VMStatus(state=state, pid=pid, accel=kind)

    def resources(self, name: str) -> Resources:
        dom = self._lookup(name)
        if dom is None:
            raise NotFound(f"no such vm: {name}")
        _state, max_kib, _mem, vcpus, _cpu = dom.info()
        pid = _qemu_pid(dom.name()) if dom.isActive() else 0
        return Resources(cpus=vcpus, memory_mib=max_kib // 1024, host_rss_bytes=_rss(pid))


def _qemu_pid(domain: str) -> int:
    for run in (
        Path("/run/libvirt/qemu"),
        Path(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent")) / "libvirt/qemu/run",
    ):
        try:
            return int((run / f"{domain}.pid").read_text().strip())
        except (OSError, ValueError):
            continue
    return 0


def _rss(pid: int) -> int:
    if not pid:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
