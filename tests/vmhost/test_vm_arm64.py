"""An arm64 guest on this (amd64) host: the image cross-built under qemu-user, booted under
TCG (qemu-system-aarch64 through libvirt), and the usual seed/SSH/engine/relay flow.

The image is pinned with ``COVE_GUEST_IMAGE``; the backend reads the guest's arch from the
image manifest, so nothing else has to say "arm64". Numbers (build cold/warm, sizes, boot to
engine-ready) are printed (``-s``). Also here: the binfmt_misc registration a foreign build
makes, checked on the real kernel, including that it is gone (and binfmt_misc unmounted,
when it was) after a failing build.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmhost import backends, control, guestimage, instance
from vmhost.hypervisor import VMState

pytestmark = [pytest.mark.timeout(2400)]
ROOT = Path(__file__).resolve().parents[2]
NAME = "arm64-boot"  # host-wide libvirt domain name: not the e2e test's
BINFMT = guestimage.BINFMT_DIR
RULE = guestimage.BINFMT_CONF_DIR / "qemu-aarch64.conf"


def _foreign_exec_why_not() -> str | None:
    if guestimage.host_arch() == "arm64":
        return "this host runs arm64 natively"
    if os.geteuid() != 0:
        return "registering binfmt_misc needs root"
    if not RULE.exists():
        return f"{RULE} missing (apt-get install qemu-user-static)"
    if "binfmt_misc" not in Path("/proc/filesystems").read_text():
        return "the kernel has no binfmt_misc"
    return None


def _boot_why_not() -> str | None:
    tools = ("qemu-system-aarch64", "qemu-img", "mmdebstrap", "arch-test", "mke2fs", "debugfs")
    search = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))
    for tool in tools:
        if shutil.which(tool, path=search) is None:
            return f"{tool} not installed (packaging/deps.sh test)"
    if not os.path.exists("/usr/sbin/libvirtd"):
        return "libvirt-daemon-system not installed"
    try:
        import libvirt  # noqa: F401
        import paramiko  # noqa: F401
    except ImportError:
        return "pip extras [vm] (paramiko, libvirt-python) not installed"
    if guestimage.host_arch() != "arm64":
        return _foreign_exec_why_not()
    return None


def _exit42_aarch64() -> bytes:
    """A 132-byte static aarch64 ELF: exit(42). Runs here only through binfmt_misc."""
    code = struct.pack("<3I", 0xD2800540, 0xD2800BA8, 0xD4000001)  # x0=42; x8=93 (exit); svc
    entry = 0x400000 + 64 + 56
    ehdr = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 183, 1, entry, 64, 0, 0, 64, 56, 1, 0, 0, 0
    )
    size = 64 + 56 + len(code)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, size, size, 0x1000)
    return ehdr + phdr + code


def _binfmt_state() -> tuple[bool, frozenset[str]]:
    mounted = (BINFMT / "register").exists()
    return mounted, frozenset(p.name for p in BINFMT.iterdir()) if mounted else frozenset()


def test_foreign_exec_registers_for_the_block_only(tmp_path: Path) -> None:
    why = _foreign_exec_why_not()
    if why:
        pytest.skip(why)
    before = _binfmt_state()
    prog = tmp_path / "exit42"
    prog.write_bytes(_exit42_aarch64())
    prog.chmod(0o755)
    if any(n != "cove-aarch64" for n in before[1] - {"register", "status"}):
        pytest.skip(f"binfmt_misc already has entries here ({sorted(before[1])})")
    with (
        pytest.raises(RuntimeError, match="build failed"),
        guestimage.foreign_exec("arm64") as name,
    ):
        assert name == "cove-aarch64"
        lines = (BINFMT / name).read_text().splitlines()
        assert "enabled" in lines and any(x.startswith("flags:") and "F" in x for x in lines)
        assert subprocess.run([str(prog)], check=False).returncode == 42
        raise RuntimeError("build failed")
    assert _binfmt_state() == before  # entry removed; binfmt_misc unmounted if it was
    with pytest.raises(OSError):  # and so the binary no longer runs
        subprocess.run([str(prog)], check=False)


def test_foreign_exec_leaves_an_existing_registration_alone(tmp_path: Path) -> None:
    why = _foreign_exec_why_not()
    if why:
        pytest.skip(why)
    before = _binfmt_state()
    with guestimage._binfmt_mounted(BINFMT):
        rule = RULE.read_text().strip().split(":")
        rule[1], rule[7] = "cove-test-preexisting", "F"
        (BINFMT / "register").write_text(":".join(rule))
        try:
            with guestimage.foreign_exec("arm64") as name:
                assert name is None  # someone else's entry does the job
                assert not (BINFMT / "cove-aarch64").exists()
            assert (BINFMT / "cove-test-preexisting").exists()
        finally:
            (BINFMT / "cove-test-preexisting").write_text("-1")
    assert _binfmt_state() == before


def test_foreign_exec_needs_qemu_user_static(tmp_path: Path) -> None:
    from runtime.api.errors import Unavailable

    with (
        pytest.raises(Unavailable, match="qemu-user-static"),
        guestimage.foreign_exec("arm64", conf_dir=tmp_path, machine="x86_64"),
    ):
        pass
    with guestimage.foreign_exec("amd64", conf_dir=tmp_path, machine="x86_64") as name:
        assert name is None  # the host's own arch: nothing to register


def _cove(sock: str, *args: str, stdin: bytes | None = None, timeout: float = 300) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "-H", sock, *args],
        input=stdin, capture_output=True, timeout=timeout, cwd=ROOT, check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode()


def _busybox_rootfs(image: guestimage.GuestImage, tmp: Path) -> bytes:
    """busybox:latest for arm64: the guest image's own busybox-static (Debian's arm64 build,
    read from root.raw with debugfs: no mount, no network), in packaging/busybox-rootfs.sh."""
    bb = tmp / "busybox-arm64"
    subprocess.run(
        ["debugfs", "-R", f"dump /usr/bin/busybox {bb}", str(image.root)],
        check=True, capture_output=True,
    )
    head = bb.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and struct.unpack("<H", head[18:20])[0] == 183  # aarch64
    return subprocess.run(
        ["bash", str(ROOT / "packaging/busybox-rootfs.sh")],
        env={**os.environ, "BUSYBOX": str(bb)}, capture_output=True, check=True,
    ).stdout


@pytest.fixture(scope="module")
def arm64_image() -> Iterator[guestimage.GuestImage]:
    why = _boot_why_not()
    if why:
        pytest.skip(why)
    t0 = time.monotonic()
    image = guestimage.build(arch="arm64")
    first = time.monotonic() - t0
    t0 = time.monotonic()
    assert guestimage.build(arch="arm64") == image
    warm = time.monotonic() - t0
    manifest = guestimage.summary(image)
    files = manifest["files"]
    assert isinstance(files, dict)
    print(f"\narm64 image {image.key}: build {first:.1f}s (steps {manifest.get('build_seconds')}),"
          f" cached {warm:.2f}s; root.raw {files['root.raw']['allocated'] / 2**20:.0f} MiB "
          f"allocated, vmlinuz {files['vmlinuz']['size'] / 2**20:.1f} MiB, "
          f"initrd {files['initrd.img']['size'] / 2**20:.1f} MiB")
    yield image


def test_image_is_arm64(arm64_image: guestimage.GuestImage) -> None:
    assert arm64_image.arch == "arm64"
    assert "console=ttyAMA0" in arm64_image.cmdline and "ttyS0" not in arm64_image.cmdline
    assert guestimage.image_arch(arm64_image.root.parent) == "arm64"
    kernel = arm64_image.kernel.read_bytes()[:64]
    # Debian's arm64 vmlinuz: a gzip-compressed Image, or the Image itself ("ARM\x64" at 56)
    assert kernel[:2] == b"\x1f\x8b" or kernel[56:60] == b"ARM\x64", kernel[:8]


def test_arm64_vm_boots_and_runs_containers(
    arm64_image: guestimage.GuestImage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COVE_VM_HOME", str(tmp_path / "vmhome"))
    monkeypatch.setenv("COVE_GUEST_IMAGE", str(arm64_image.root.parent))
    config = instance.InstanceConfig(name=NAME, cpus=2, memory_mib=1024, disk_gib=2)
    try:
        t0 = time.monotonic()
        sock = control.start(config, timeout=900)
        boot = time.monotonic() - t0
        info = control.status(NAME)
        print(f"\narm64 boot to engine-ready (TCG, first boot: formats the data disk): "
              f"{boot:.1f}s; QEMU RSS {info.host_rss_bytes / 2**20:.0f} MiB")
        assert info.accel == "tcg"  # a foreign-arch guest is always emulated
        assert _cove(sock, "version", "--format", "{{.Server.Arch}}").strip() == "arm64"
        _cove(sock, "import", "-", "busybox:latest", stdin=_busybox_rootfs(arm64_image, tmp_path))
        t0 = time.monotonic()
        assert _cove(sock, "run", "--rm", "busybox", "uname", "-m").strip() == "aarch64"
        print(f"cove run --rm busybox uname -m: {time.monotonic() - t0:.1f}s")
        control.stop(NAME)
        assert control.status(NAME).state == "stopped"
    finally:
        control.remove(NAME, force=True)
    assert backends.get().status(NAME).state is VMState.ABSENT  # the domain is gone too


def test_arm64_release_pack_and_fetch_keep_the_arch(tmp_path: Path) -> None:
    """`cove vm image pack` labels a release with the image's arch (not the packing host's),
    `cove vm image fetch --arch arm64` installs it with that arch recorded (so the backend
    boots it as aarch64), and a fetch for this host's arch refuses it."""
    import functools
    import json
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from tests.vmhost.test_download import small_image

    image = small_image(tmp_path)
    manifest = json.loads((image / "manifest.json").read_text())
    (image / "manifest.json").write_text(json.dumps({**manifest, "arch": "arm64"}))
    env = {**os.environ, "COVE_VM_HOME": str(tmp_path / "home"),
           "COVE_CACHE": str(tmp_path / "cache")}

    def vm_image(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runtime.cli.main", "vm", "image", *args],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
        )

    packed = vm_image("pack", "--image", str(image), "-o", str(tmp_path / "srv/1/arm64"),
                      "--version", "1", "--json")
    assert packed.returncode == 0, packed.stderr
    assert json.loads(packed.stdout)["arch"] == "arm64"

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path / "srv"))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/1/arm64/release.json"
        if guestimage.host_arch() != "arm64":
            refused = vm_image("fetch", "-q", url)
            assert refused.returncode != 0 and "is for arm64" in refused.stderr
        got = vm_image("fetch", "-q", "--arch", "arm64", url)
        assert got.returncode == 0, got.stderr
    finally:
        httpd.shutdown()
        httpd.server_close()
    installed = Path(got.stdout.strip())
    assert guestimage.image_arch(installed) == "arm64"
    assert guestimage.image_at(installed).arch == "arm64"
