"""``cove vm image build``: the guest image, in two cached stages.

1. **base** (``packaging/guest/build-base.sh``, mmdebstrap, about a minute; several under
   qemu-user for a foreign arch, see :func:`foreign_exec`): Debian bookworm
   with the cloud kernel, openssh-server, python3 and the engine's tools, as ``base.tar`` plus
   ``vmlinuz`` for direct kernel boot. Keyed by the recipe's sha256 and the arch.
2. **image** (seconds): ``base.tar`` + a wheel of this checkout (``pip wheel --no-deps``),
   unpacked into dist-packages offline, plus ``/usr/sbin/cove-init``; ``mke2fs -d`` turns the
   tree into ``root.raw`` without loop mounts. Keyed by the base key + the sources' sha256.

Timestamps come from SOURCE_DATE_EPOCH and mke2fs gets a fixed UUID and hash seed, so a
rebuild from the same Debian packages gives the same tree (package versions are whatever the
mirror serves at build time). Unpacking keeps file ownership, so stage 2 needs root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from guestagent.init import EARLY_INIT, MOUNTS_READY
from runtime.api.errors import Forbidden, Internal, InvalidArgument, Unavailable
from runtime.fsutil import exclusive_lock, write_atomic, write_json_atomic
from vmhost import layout
from vmhost.initrd import build_initrd

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RECIPE_DIR = ROOT / "packaging" / "guest"
SOURCE_DIRS = ("runtime", "guestagent")
IMAGE_RECIPE = ("vmhost/guestimage.py", "vmhost/initrd.py")
EPOCH = "1700000000"
FS_UUID = "c0ffee00-c0ve-4000-8000-000000000001".replace("ve", "0e")
ROOT_SIZE = "2G"
KEEP_IMAGES = 3
INIT_SCRIPT = EARLY_INIT
# dial-stdio runs once per Docker API connection: under TCG a Python start costs ~1.5 s, so
# the default case is socat (same splice, half-close passed on); Python handles the rest.
AGENT_SCRIPT = """#!/bin/sh
if [ "$1" = dial-stdio ] && [ "$#" -eq 1 ] && [ -x /usr/bin/socat ]; then
  exec /usr/bin/socat -t 30 - UNIX-CONNECT:/run/cove/engine.sock,retry=600,interval=0.1
fi
exec /usr/bin/python3 -I -m guestagent "$@"
"""
CLI_SCRIPT = '#!/bin/sh\nexec /usr/bin/python3 -I -m runtime.cli.main "$@"\n'
ENGINE_ARGV = [
    "/usr/bin/python3",
    "-I",
    "-m",
    "runtime.engine",
    "--host",
    "unix:///run/cove/engine.sock",
    "--data-root",
    "/var/lib/cove",
    "--start-after",  # imports first, the data root once PID 1 has mounted it
    MOUNTS_READY,
]
# Under TCG every boot-time cycle counts: cryptomgr.notests skips the crypto self-tests
# (~1.3 s); tsc=reliable keeps the TSC as clocksource (QEMU's TSC is one host clock for all
# vCPUs, but the boot-time sync check fails under emulation and the kernel falls back to
# HPET, whose every read is an emulated MMIO access, and which has no vDSO fast path).
_CMDLINE_COMMON = (
    "root=/dev/vda rw rootfstype=ext4 init=/usr/sbin/cove-init "
    "loglevel=4 mitigations=off panic=-1 net.ifnames=0 cryptomgr.notests"
)
KERNEL_CMDLINE = f"console=ttyS0 {_CMDLINE_COMMON} tsc=reliable"
# arm64 (QEMU's virt board): the console is the PL011 UART, ttyAMA0; no TSC there.
CMDLINES = {"amd64": KERNEL_CMDLINE, "arm64": f"console=ttyAMA0 {_CMDLINE_COMMON}"}
ARCHES = tuple(CMDLINES)
_DEB_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# qemu-user names, for binfmt_misc (foreign-arch builds)
_QEMU_USER = {"amd64": "x86_64", "arm64": "aarch64"}
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF_DIR = Path("/usr/lib/binfmt.d")  # qemu-user-static's definitions


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestImage:
    """A built image: what a VMSpec points at."""

    key: str
    root: Path
    kernel: Path
    initrd: Path
    cmdline: str = KERNEL_CMDLINE
    # Debian name. Manifests from before arm64 images say nothing: those images were built
    # here or fetched for this host (release.ensure checks), so they are the host's arch.
    arch: str = field(default_factory=lambda: host_arch())


def _hash_files(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def host_arch(machine: str | None = None) -> str:
    """The Debian name of this machine's architecture (amd64, arm64)."""
    import platform

    m = (machine or platform.machine()).lower()
    return _DEB_ARCH.get(m, m)


def deb_arch(arch: str | None) -> str:
    """*arch* (Debian or kernel spelling; None: the host's) as a Debian name we build."""
    name = host_arch() if arch is None else _DEB_ARCH.get(arch.lower(), arch.lower())
    if name not in ARCHES:
        raise InvalidArgument(f"guest image arch {arch!r}: use one of {', '.join(ARCHES)}")
    return name


def base_key(mirror: str, arch: str = "amd64") -> str:
    # amd64 hashes the same inputs as before there were other arches
    extra = mirror if arch == "amd64" else f"{mirror}\0{arch}"
    return _hash_files(sorted(RECIPE_DIR.glob("*.sh")), extra)


def image_key(mirror: str, arch: str = "amd64") -> str:
    sources = [p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py")]
    sources += [ROOT / "pyproject.toml", *(ROOT / p for p in IMAGE_RECIPE)]
    return _hash_files(sources, base_key(mirror, arch))


def _run(argv: list[str], **kw: object) -> None:
    log.debug("run %s", argv)
    try:
        subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]
    except FileNotFoundError as e:
        hint = "see packaging/guest/README.md"
        raise Unavailable(f"guest image: {argv[0]} not found ({hint})") from e
    except subprocess.CalledProcessError as e:
        raise Internal(f"guest image: {' '.join(argv[:3])}: exit status {e.returncode}") from e


def build_base(cache: Path, mirror: str, arch: str = "amd64") -> Path:
    out = cache / f"base-{base_key(mirror, arch)}"
    if (out / layout.BASE_TAR).exists():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=cache))
    try:
        with foreign_exec(arch):
            _run(
                ["bash", str(RECIPE_DIR / "build-base.sh"), str(tmp), mirror, arch],
                env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
            )
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@contextlib.contextmanager
def foreign_exec(
    arch: str,
    *,
    binfmt_dir: Path = BINFMT_DIR,
    conf_dir: Path = BINFMT_CONF_DIR,
    machine: str | None = None,
) -> Iterator[str | None]:
    """Let this host run *arch* binaries for the duration of the block: a foreign-arch build
    runs the packages' maintainer scripts (mmdebstrap) and the guest's python3 (byte-compile)
    under qemu-user, through binfmt_misc. Nothing to do for the host's own arch, nor when an
    enabled binfmt entry already handles that ELF machine (qemu-user-static with
    binfmt-support or systemd-binfmt). Otherwise registers qemu-user-static's own definition
    under the name ``cove-<qemu arch>`` (``F``: the interpreter is opened now, so it works
    inside the chroot) and removes it afterwards, failures included; binfmt_misc is mounted
    for the block when it was not. Yields the name registered, or None."""
    if arch == host_arch(machine):
        yield None
        return
    qarch = _QEMU_USER.get(arch, arch)
    conf = conf_dir / f"qemu-{qarch}.conf"
    try:
        rule = conf.read_text().strip().split(":")  # :name:type:offset:magic:mask:interp:flags
    except OSError as e:
        raise Unavailable(
            f"guest image: building for {arch} on {host_arch(machine)} needs qemu-user-static "
            f"({conf}: {e.strerror})"
        ) from e
    if len(rule) != 8:
        raise Internal(f"guest image: {conf}: not a binfmt_misc rule")
    name = f"cove-{qarch}"
    rule[1] = name
    rule[7] = rule[7] if "F" in rule[7] else rule[7] + "F"
    with _binfmt_lock(qarch), _binfmt_mounted(binfmt_dir):
        if _binfmt_handles(binfmt_dir, rule[4], skip=name):
            yield None
            return
        entry = binfmt_dir / name
        if entry.exists():  # left by a killed build (we hold the lock: nobody uses it)
            entry.write_text("-1")
        try:
            (binfmt_dir / "register").write_text(":".join(rule))
        except OSError as e:
            raise Unavailable(f"guest image: cannot register binfmt_misc {name}: {e}") from e
        try:
            yield name
        finally:
            with contextlib.suppress(FileNotFoundError):
                entry.write_text("-1")


def _magic_hex(escaped: str) -> str:
    """binfmt.d's ``\x7f\x45...`` as /proc's ``7f45...``."""
    return escaped.encode().decode("unicode_escape").encode("latin-1").hex()


def _binfmt_handles(binfmt_dir: Path, magic: str, *, skip: str) -> bool:
    """Whether an enabled entry (other than ours) already matches this ELF magic."""
    want = _magic_hex(magic)
    for entry in binfmt_dir.iterdir():
        if entry.name in ("register", "status", skip):
            continue
        try:
            lines = entry.read_text().splitlines()
        except OSError:
            continue
        if "enabled" in lines and f"magic {want}" in lines:
            return True
    return False


@contextlib.contextmanager
def _binfmt_mounted(binfmt_dir: Path) -> Iterator[None]:
    if (binfmt_dir / "register").exists():
        yield
        return
    out = subprocess.run(
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise Unavailable(f"guest image: cannot mount binfmt_misc: {out.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", str(binfmt_dir)], capture_output=True, check=False)


@contextlib.contextmanager
def _binfmt_lock(qarch: str) -> Iterator[None]:
    """One foreign build of an arch at a time: another's ``cove-<arch>`` entry would vanish
    under it when the first one ends."""
    with exclusive_lock(Path(tempfile.gettempdir(), f"cove-binfmt-{qarch}.lock")):
        yield


def build_wheel(dest: Path) -> Path:
    # setuptools builds in the checkout's own build/ folder: two builds at once (two VMs
    # started together, or tests beside a bench) trip over each other's files there.
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    with exclusive_lock(Path(tempfile.gettempdir(), f"cove-wheel-{key}.lock")):
        _run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest),
             str(ROOT)],
            env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
        )
    wheels = sorted(dest.glob("cove-*.whl"))
    if not wheels:
        raise Internal("guest image: pip wheel produced no cove wheel")
    return wheels[-1]


def install_wheel(wheel: Path, tree: Path) -> None:
    """Install a pure-Python wheel into the tree offline: unzip into dist-packages."""
    site = tree / "usr/lib/python3/dist-packages"
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if name.startswith(("desktop/", "tests/")) or ".data/" in name:
                continue
            zf.extract(name, site)
    scripts = {
        "usr/sbin/cove-init": INIT_SCRIPT,
        "usr/local/bin/guestagent": AGENT_SCRIPT,
        "usr/local/bin/cove": CLI_SCRIPT,
    }
    for rel, text in scripts.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)


def _unpack(base_tar: Path, tree: Path) -> None:
    if not layout.is_root():
        raise Forbidden("guest image: unpacking the root tree needs root (file ownership)")
    with tarfile.open(base_tar) as tar:
        tar.extractall(tree, filter="fully_trusted")


def _compile(tree: Path) -> None:
    """Byte-compile with the guest's own python3: the root overlay is thrown away on every
    start, so .pyc files written at run time never survive and TCG would recompile each boot."""
    pkgs = [f"/usr/lib/python3/dist-packages/{d}" for d in SOURCE_DIRS]
    _run(
        [
            "chroot",
            str(tree),
            "/usr/bin/python3",
            "-m",
            "compileall",
            "-q",
            "-j0",
            "--invalidation-mode",
            "unchecked-hash",
            *pkgs,
        ]
    )


def _root_shell(tree: Path) -> None:
    """sshd runs every exec through the login shell; dash starts far faster than bash under
    TCG, and each Docker API connection is one exec (guestagent dial-stdio)."""
    passwd = tree / "etc/passwd"
    lines = passwd.read_text().splitlines()
    lines = [re.sub(r"^(root:.*:)/bin/bash$", r"\1/bin/sh", line) for line in lines]
    passwd.write_text("\n".join(lines) + "\n")


def _mkfs(tree: Path, out: Path) -> None:
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": EPOCH}
    _run(
        [
            "mke2fs",
            "-q",
            "-t",
            "ext4",
            "-d",
            str(tree),
            "-U",
            FS_UUID,
            "-E",
            f"root_owner=0:0,hash_seed={FS_UUID}",
            "-L",
            "cove-root",
            "-F",
            str(out),
            ROOT_SIZE,
        ],
        env=env,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _allocated(path: Path) -> int:
    if sys.platform == "win32":  # no st_blocks: report the apparent size
        return path.stat().st_size
    return int(path.stat().st_blocks) * 512


def build(
    *,
    cache: Path | None = None,
    mirror: str = "http://deb.debian.org/debian",
    force: bool = False,
    arch: str | None = None,
) -> GuestImage:
    """Build (or find in the cache) the guest image for this checkout and *arch* (Debian
    name; default: this host's); idempotent. A foreign arch is built under qemu-user
    (:func:`foreign_exec`)."""
    arch = deb_arch(arch)
    cache = cache or layout.cache_home() / "guest"
    cache.mkdir(parents=True, exist_ok=True)
    key = image_key(mirror, arch)
    out = cache / f"image-{key}"
    # One build of an image at a time: a second caller (another VM started at once, a test
    # waiting for a prebuild) waits for the first and then finds it in the cache.
    with exclusive_lock(cache / f".image-{key}.lock"):
        return _build_locked(out, mirror, arch, cache, force)


def _build_locked(out: Path, mirror: str, arch: str, cache: Path, force: bool) -> GuestImage:
    if force:
        shutil.rmtree(out, ignore_errors=True)
    if not (out / layout.IMAGE_MANIFEST).exists():
        t0 = time.monotonic()
        base = build_base(cache, mirror, arch)
        t1 = time.monotonic()
        _build_image(base, out, cache, arch)
        manifest = json.loads((out / layout.IMAGE_MANIFEST).read_text())
        took = {"base": round(t1 - t0, 1), "image": round(time.monotonic() - t1, 1)}
        manifest["build_seconds"] = took
        write_json_atomic(out / layout.IMAGE_MANIFEST, manifest)
        prune(cache, keep=KEEP_IMAGES)
    else:
        # prune() keeps the most recently *used* images: a running VM's base must not go
        # because other checkouts built three newer ones meanwhile.
        os.utime(out)
    return image_at(out)


SOURCE_ENV = "COVE_GUEST_SOURCE"  # auto (default), build or release
PINNED_ENV = "COVE_GUEST_IMAGE"  # a built image dir (tests, benchmarks)
SOURCES = ("auto", "build", "release")


def resolve(
    *,
    cache: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    step: Callable[[str], None] | None = None,
) -> GuestImage:
    """The image ``cove vm start`` boots: ``COVE_GUEST_IMAGE`` when set; else built here when
    this host can (:func:`can_build`); else the release for this cove version and arch from
    ``COVE_RELEASE_URL`` (or the project's), downloaded once into the cache
    (:func:`vmhost.release.ensure`; *progress* and *step* report the download).
    ``COVE_GUEST_SOURCE=build`` or ``release`` forces one of the two. Settings travel as
    environment variables: the supervisor, a separate process, resolves the same way."""
    if pinned := os.environ.get(PINNED_ENV):
        return _pinned(Path(pinned))
    cache = cache or layout.cache_home()
    if _builds_here():
        return build(cache=cache / "guest")
    from vmhost import release  # it imports this module

    return release.ensure(cache=cache, progress=progress, step=step)


def prefetch(
    *,
    progress: Callable[[int, int], None] | None = None,
    step: Callable[[str], None] | None = None,
) -> GuestImage | None:
    """For the CLI, before it spawns the supervisor: download the release now, with progress
    on the user's terminal, when :func:`resolve` would download one (the supervisor's own
    ``resolve()`` then finds it cached). A pinned or locally built image: nothing to do here
    (None), the supervisor resolves it as before."""
    if os.environ.get(PINNED_ENV) or _builds_here():
        return None
    return resolve(progress=progress, step=step)


def _builds_here() -> bool:
    source = guest_source()
    return source == "build" or (source == "auto" and can_build())


def guest_source() -> str:
    source = os.environ.get(SOURCE_ENV, "").strip().lower() or "auto"
    if source not in SOURCES:
        raise InvalidArgument(f"{SOURCE_ENV}={source}: use one of {', '.join(SOURCES)}")
    return source


def can_build() -> bool:
    """Whether this host can build the image: Linux, root (unpacking keeps ownership),
    mmdebstrap and mke2fs, and a checkout with the recipe (a wheel install has none)."""
    return (
        sys.platform.startswith("linux")
        and layout.is_root()
        and all(shutil.which(tool) for tool in ("mmdebstrap", "mke2fs"))
        and (RECIPE_DIR / "build-base.sh").is_file()
    )


def _pinned(path: Path) -> GuestImage:
    try:
        return image_at(path)
    except (OSError, ValueError, KeyError) as e:
        raise InvalidArgument(f"{PINNED_ENV}={path}: not a built guest image dir ({e})") from e


def prune(cache: Path, keep: int) -> None:
    """Drop all but the *keep* most recently built or used images of each arch (running
    VMs' overlays use recent ones)."""
    images = sorted(
        (p for p in cache.glob("image-*") if not p.name.startswith("image-release-")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    seen: dict[str, int] = {}
    for image in images:
        arch = image_arch(image)
        seen[arch] = seen.get(arch, 0) + 1
        if seen[arch] > keep:
            shutil.rmtree(image, ignore_errors=True)


def _build_image(base: Path, out: Path, cache: Path, arch: str = "amd64") -> None:
    cmdline = CMDLINES[arch]
    tmp = Path(tempfile.mkdtemp(prefix=".image-", dir=cache))
    try:
        tree = tmp / "tree"
        _unpack(base / layout.BASE_TAR, tree)
        install_wheel(build_wheel(tmp / "wheel"), tree)
        with foreign_exec(arch):
            _compile(tree)
        _root_shell(tree)
        write_atomic(tree / "etc/cove/engine.argv", " ".join(ENGINE_ARGV).encode())
        write_atomic(
            tree / "etc/cove/guest.json",
            json.dumps({"cmdline": cmdline, "engine_argv": ENGINE_ARGV}).encode(),
        )
        _mkfs(tree, tmp / layout.IMAGE_ROOT)
        shutil.copyfile(base / layout.IMAGE_KERNEL, tmp / layout.IMAGE_KERNEL)
        build_initrd(tree, tmp / layout.IMAGE_INITRD)  # Debian's initrd runs udev: 6 s slower
        names = (layout.IMAGE_ROOT, layout.IMAGE_KERNEL, layout.IMAGE_INITRD)
        files = {
            n: {
                "sha256": _sha256(tmp / n),
                "size": (tmp / n).stat().st_size,
                "allocated": _allocated(tmp / n),
            }
            for n in names
        }
        write_json_atomic(
            tmp / layout.IMAGE_MANIFEST,
            {"key": out.name, "arch": arch, "files": files, "cmdline": cmdline},
        )
        shutil.rmtree(tree)
        shutil.rmtree(tmp / "wheel")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def image_at(path: Path) -> GuestImage:
    manifest = json.loads((path / layout.IMAGE_MANIFEST).read_text())
    arch = str(manifest.get("arch") or host_arch())
    return GuestImage(
        key=str(manifest["key"]),
        root=path / layout.IMAGE_ROOT,
        kernel=path / layout.IMAGE_KERNEL,
        initrd=path / layout.IMAGE_INITRD,
        cmdline=str(manifest.get("cmdline", CMDLINES.get(arch, KERNEL_CMDLINE))),
        arch=arch,
    )


def image_arch(path: Path) -> str:
    """The Debian arch of the image dir *path*: the host's when its manifest predates arm64
    images (see :class:`GuestImage`) or is unreadable, so a backend boots it as before."""
    try:
        arch = json.loads((path / layout.IMAGE_MANIFEST).read_text()).get("arch")
    except (OSError, ValueError, AttributeError):
        arch = None
    return str(arch or host_arch())


def compressed_size(image: GuestImage, level: int = 10) -> int:
    """Size of root.raw + kernel + initrd with zstd -<level> (what a release would ship)."""
    out = subprocess.run(
        ["zstd", f"-{level}", "-T0", "-c", str(image.root)], check=True, capture_output=True
    ).stdout
    return len(out) + image.kernel.stat().st_size + image.initrd.stat().st_size


def summary(image: GuestImage) -> dict[str, object]:
    manifest = json.loads((image.root.parent / layout.IMAGE_MANIFEST).read_text())
    return {"key": image.key, "dir": str(image.root.parent), **manifest}


__all__ = [
    "GuestImage",
    "asdict",
    "build",
    "compressed_size",
    "image_at",
    "prefetch",
    "resolve",
    "summary",
]
