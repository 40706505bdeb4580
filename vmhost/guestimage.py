"""``cove vm image build``: the guest image, in two cached stages.

1. **base** (``packaging/guest/build-base.sh``, mmdebstrap, about a minute): Debian bookworm
   with the cloud kernel, openssh-server, python3 and the engine's tools, as ``base.tar`` plus
   ``vmlinuz``/``initrd.img`` for direct kernel boot. Keyed by the recipe's sha256.
2. **image** (seconds): ``base.tar`` + a wheel of this checkout (``pip wheel --no-deps``),
   unpacked into dist-packages offline, plus ``/usr/sbin/cove-init``; ``mke2fs -d`` turns the
   tree into ``root.raw`` without loop mounts. Keyed by the base key + the sources' sha256.

Timestamps come from SOURCE_DATE_EPOCH and mke2fs gets a fixed UUID and hash seed, so a
rebuild from the same Debian packages gives the same tree (package versions are whatever the
mirror serves at build time). Unpacking keeps file ownership, so stage 2 needs root.
"""

from __future__ import annotations

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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from guestagent.init import EARLY_INIT, MOUNTS_READY
from runtime.api.errors import Forbidden, Internal, InvalidArgument, Unavailable
from runtime.fsutil import write_atomic, write_json_atomic
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
KERNEL_CMDLINE = (
    "console=ttyS0 root=/dev/vda rw rootfstype=ext4 init=/usr/sbin/cove-init "
    "loglevel=4 mitigations=off panic=-1 net.ifnames=0 cryptomgr.notests tsc=reliable"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestImage:
    """A built image: what a VMSpec points at."""

    key: str
    root: Path
    kernel: Path
    initrd: Path
    cmdline: str = KERNEL_CMDLINE


def _hash_files(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def base_key(mirror: str) -> str:
    return _hash_files(sorted(RECIPE_DIR.glob("*.sh")), mirror)


def image_key(mirror: str) -> str:
    sources = [p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py")]
    sources += [ROOT / "pyproject.toml", *(ROOT / p for p in IMAGE_RECIPE)]
    return _hash_files(sources, base_key(mirror))


def _run(argv: list[str], **kw: object) -> None:
    log.debug("run %s", argv)
    try:
        subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]
    except FileNotFoundError as e:
        hint = "see packaging/guest/README.md"
        raise Unavailable(f"guest image: {argv[0]} not found ({hint})") from e
    except subprocess.CalledProcessError as e:
        raise Internal(f"guest image: {' '.join(argv[:3])}: exit status {e.returncode}") from e


def build_base(cache: Path, mirror: str) -> Path:
    out = cache / f"base-{base_key(mirror)}"
    if (out / layout.BASE_TAR).exists():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=cache))
    try:
        _run(
            ["bash", str(RECIPE_DIR / "build-base.sh"), str(tmp), mirror],
            env={**os.environ, "SOURCE_DATE_EPOCH": EPOCH},
        )
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def build_wheel(dest: Path) -> Path:
    if sys.platform == "win32":
        raise Unavailable("guest image: building needs a Linux host (use the release image)")
    import fcntl  # image builds run on Linux only; vmhost itself must import everywhere

    # setuptools builds in the checkout's own build/ folder: two builds at once (two VMs
    # started together, or tests beside a bench) trip over each other's files there.
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir(), f"cove-wheel-{key}.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    *, cache: Path | None = None, mirror: str = "http://deb.debian.org/debian", force: bool = False
) -> GuestImage:
    """Build (or find in the cache) the guest image for this checkout; idempotent."""
    cache = cache or layout.cache_home() / "guest"
    cache.mkdir(parents=True, exist_ok=True)
    key = image_key(mirror)
    out = cache / f"image-{key}"
    if force:
        shutil.rmtree(out, ignore_errors=True)
    if not (out / layout.IMAGE_MANIFEST).exists():
        t0 = time.monotonic()
        base = build_base(cache, mirror)
        t1 = time.monotonic()
        _build_image(base, out, cache)
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
    """Drop all but the *keep* most recently built or used images (running VMs' overlays
    use recent ones)."""
    images = sorted(cache.glob("image-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[keep:]:
        if not old.name.startswith("image-release-"):
            shutil.rmtree(old, ignore_errors=True)


def _build_image(base: Path, out: Path, cache: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".image-", dir=cache))
    try:
        tree = tmp / "tree"
        _unpack(base / layout.BASE_TAR, tree)
        install_wheel(build_wheel(tmp / "wheel"), tree)
        _compile(tree)
        _root_shell(tree)
        write_atomic(tree / "etc/cove/engine.argv", " ".join(ENGINE_ARGV).encode())
        write_atomic(
            tree / "etc/cove/guest.json",
            json.dumps({"cmdline": KERNEL_CMDLINE, "engine_argv": ENGINE_ARGV}).encode(),
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
            {"key": out.name, "files": files, "cmdline": KERNEL_CMDLINE},
        )
        shutil.rmtree(tree)
        shutil.rmtree(tmp / "wheel")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def image_at(path: Path) -> GuestImage:
    manifest = json.loads((path / layout.IMAGE_MANIFEST).read_text())
    return GuestImage(
        key=str(manifest["key"]),
        root=path / layout.IMAGE_ROOT,
        kernel=path / layout.IMAGE_KERNEL,
        initrd=path / layout.IMAGE_INITRD,
        cmdline=str(manifest.get("cmdline", KERNEL_CMDLINE)),
    )


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
