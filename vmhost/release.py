"""Versioned guest-image releases for macOS/Windows hosts (no mmdebstrap there).

A release is a directory of files plus ``release.json``, served from any static web host::

    {"format": 1, "version": "0.1.0", "arch": "amd64", "cmdline": "...", "key": "image-...",
     "files": {"vmlinuz":     {"url": "vmlinuz", "size": 14155776, "sha256": "..."},
               "initrd.img":  {"url": "initrd.img", "size": 1153433, "sha256": "..."},
               "root.raw.xz": {"url": "root.raw.xz", "size": 64172032, "sha256": "...",
                               "unpacked_size": 2147483648, "unpacked_sha256": "..."}}}

``url`` is resolved against the manifest's own URL, so a packed directory can be uploaded
anywhere unchanged (an absolute URL works too). :func:`pack` (``cove vm image pack``) makes
one from a built image; the root disk is xz so that hosts need nothing beyond Python's lzma to
unpack it (the kernel is already compressed). :func:`fetch_release` downloads each file once
(progress, size, sha256, resume: :mod:`vmhost.download`), unpacks the root sparsely, checks
its sha256 and leaves an image dir that :func:`vmhost.guestimage.image_at` understands.

``cove vm start`` on a host that cannot build (:func:`vmhost.guestimage.resolve`) calls
:func:`ensure`: the release for this cove version and arch under ``<base>/<version>/<arch>/``
(``COVE_RELEASE_URL`` or :data:`RELEASE_BASE_URL`), installed once as
``<cache>/guest/image-release-<version>-<arch>/`` and reused without network afterwards.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import json
import lzma
import os
import platform
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from runtime.api.errors import Internal, InvalidArgument, NotFound, Unavailable
from runtime.fsutil import exclusive_lock, write_json_atomic
from vmhost import download, guestimage, layout
from vmhost.guestimage import GuestImage, image_at

FORMAT = 1
MANIFEST = "release.json"
ROOT_XZ = layout.IMAGE_ROOT + ".xz"
FILES = (layout.IMAGE_KERNEL, layout.IMAGE_INITRD, ROOT_XZ)
BLOCK = 1 << 20
XZ_PRESET = 6  # -9 saves ~3 % more and takes twice as long; unpacking speed is the same
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
RELEASE_PREFIX = "image-release-"
KEEP_RELEASES = 2
# Where `cove vm start` finds released images when this host cannot build one (see
# manifest_url for the layout under it); COVE_RELEASE_URL points elsewhere (a mirror, tests).
RELEASE_BASE_URL = "https://releases.cove.dev/guest"
RELEASE_URL_ENV = "COVE_RELEASE_URL"
PINNED_IMAGE_ENV = "COVE_GUEST_IMAGE"

Step = Callable[[str], None]


def host_arch() -> str:
    """The Debian name of this machine's architecture (the guest runs the same one)."""
    return guestimage.host_arch(platform.machine())


@dataclass(frozen=True, slots=True, kw_only=True)
class PackedFile:
    name: str
    size: int
    sha256: str


def _sha256(path: Path) -> str:
    return download._sha256_file(path)


def _copy_hashing(src: BinaryIO, dst: BinaryIO) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    while block := src.read(BLOCK):
        h.update(block)
        dst.write(block)
        n += len(block)
    return n, h.hexdigest()


def _built_sha256(image: GuestImage) -> str | None:
    """The root disk's sha256 as the image build recorded it (None when it did not)."""
    try:
        manifest = json.loads((image.root.parent / layout.IMAGE_MANIFEST).read_text())
        return str(manifest["files"][layout.IMAGE_ROOT]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pack(
    image: GuestImage,
    out: Path,
    *,
    version: str,
    arch: str | None = None,
    preset: int = XZ_PRESET,
    step: Step | None = None,
) -> Path:
    """Write the release files and ``release.json`` into *out*; returns the manifest path.
    A half-written release never carries a manifest: it is written last, atomically."""
    if not VERSION_RE.fullmatch(version):
        raise InvalidArgument(f"release version {version!r}: use letters, digits and ._+-")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # an interrupted re-pack must not look complete
    if step:
        step(f"compressing {image.root.name} (xz -{preset})")
    tmp = out / (ROOT_XZ + ".tmp")
    with open(image.root, "rb") as src, lzma.open(tmp, "wb", preset=preset) as dst:
        root_size, root_sha = _copy_hashing(src, dst)  # type: ignore[arg-type]
    built = _built_sha256(image)
    if built is not None and built != root_sha:
        tmp.unlink()
        raise Internal(
            f"{image.root} does not match its build manifest (sha256 {root_sha}, built as "
            f"{built}): rebuild it with `cove vm image build --force`"
        )
    os.replace(tmp, out / ROOT_XZ)
    for name, path in ((layout.IMAGE_KERNEL, image.kernel), (layout.IMAGE_INITRD, image.initrd)):
        shutil.copyfile(path, out / name)
    files: dict[str, dict[str, Any]] = {}
    for name in FILES:
        if step:
            step(f"hashing {name}")
        files[name] = {
            "url": name,
            "size": (out / name).stat().st_size,
            "sha256": _sha256(out / name),
        }
    files[ROOT_XZ] |= {"unpacked_size": root_size, "unpacked_sha256": root_sha}
    manifest = {
        "format": FORMAT,
        "version": version,
        "arch": arch or image.arch,  # the image's own (an arm64 image packed on amd64)
        "key": image.key,
        "cmdline": image.cmdline,
        "files": files,
    }
    write_json_atomic(out / MANIFEST, manifest)
    return out / MANIFEST


def write_release(image: GuestImage, out: Path, base_url: str, version: str) -> Path:
    """:func:`pack` with absolute URLs under *base_url* (for hosts that rewrite paths)."""
    path = pack(image, out, version=version)
    manifest = json.loads(path.read_text())
    for name, f in manifest["files"].items():
        f["url"] = f"{base_url.rstrip('/')}/{name}"
    write_json_atomic(path, manifest)
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    version: str
    arch: str
    cmdline: str
    files: dict[str, dict[str, Any]]


def parse_manifest(raw: bytes, where: str) -> Release:
    try:
        m = json.loads(raw)
        release = Release(
            version=str(m["version"]),
            arch=str(m.get("arch", "amd64")),  # format 0 manifests were amd64 only
            cmdline=str(m.get("cmdline", "")),
            files={str(n): dict(f) for n, f in m["files"].items()},
        )
        for f in release.files.values():
            str(f["url"]), str(f["sha256"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InvalidArgument(f"guest release {where}: bad manifest: {e}") from e
    if int(m.get("format", 0)) > FORMAT:
        raise InvalidArgument(f"guest release {where}: format {m['format']} is newer than cove")
    if not VERSION_RE.fullmatch(release.version):
        raise InvalidArgument(f"guest release {where}: bad version {release.version!r}")
    if set(release.files) != set(FILES):
        raise InvalidArgument(f"guest release {where}: unexpected files {sorted(release.files)}")
    return release


def _unpack_sparse(src: Path, dst: Path, want_size: int | None, want_sha: str | None) -> None:
    """xz -> raw, seeking over all-zero blocks so a 2 GiB disk costs only its data."""
    h, n, zero = hashlib.sha256(), 0, bytes(BLOCK)
    with lzma.open(src) as xz, open(dst, "wb") as out:
        while block := xz.read(BLOCK):
            h.update(block)
            n += len(block)
            if block == zero[: len(block)]:
                out.seek(len(block), os.SEEK_CUR)
            else:
                out.write(block)
        out.truncate(n)
    if want_size is not None and n != want_size:
        raise Unavailable(f"guest release: {src.name} unpacked to {n} bytes, want {want_size}")
    if want_sha is not None and h.hexdigest() != want_sha:
        raise Unavailable(f"guest release: {src.name} unpacked sha256 mismatch")


def fetch_release(
    manifest_url: str,
    *,
    cache: Path | None = None,
    progress: download.Progress | None = None,
    arch: str | None = None,
    version: str | None = None,
    step: Step | None = None,
) -> GuestImage:
    """Download the release at *manifest_url* into the image cache (once) and return it.
    *version*, when given, must be the manifest's: a mislabelled upload is refused. A failure
    leaves no image dir behind, only verified downloads and resumable ``.partial`` files."""
    cache = cache or layout.cache_home()
    release = parse_manifest(_get(manifest_url), manifest_url)
    want_arch = arch or host_arch()
    if release.arch != want_arch:
        raise InvalidArgument(
            f"guest release {manifest_url} is for {release.arch}, this host needs {want_arch}"
        )
    if version is not None and release.version != version:
        raise InvalidArgument(
            f"guest release {manifest_url} is version {release.version}, this cove needs {version}"
        )
    out = release_dir(cache, release.version, release.arch)
    if (out / layout.IMAGE_MANIFEST).exists():
        return image_at(out)
    urls = {n: urllib.parse.urljoin(manifest_url, f["url"]) for n, f in release.files.items()}
    got: dict[str, Path] = {}
    for name in FILES:
        f = release.files[name]
        if step:
            step(f"{name}: downloading {human_size(int(f.get('size') or 0))}")
        got[name] = download.fetch(
            urls[name], f["sha256"], size=f.get("size"), cache=cache, progress=progress
        )
    try:
        _install(release, got, out, step)
    except Unavailable:
        _discard(urls.values(), cache)  # verified downloads of an inconsistent release
        raise
    _discard(urls.values(), cache)  # unpacked now: the compressed copies are dead weight
    return image_at(out)


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return bytes(r.read())
    except urllib.error.HTTPError as e:
        error = NotFound if e.code == 404 else Unavailable
        raise error(f"guest release {url}: {download.describe(e)}") from e
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise Unavailable(f"guest release {url}: {download.describe(e)}") from e


def _install(release: Release, got: dict[str, Path], out: Path, step: Step | None) -> None:
    """Unpack and verify into a hidden temporary dir, then rename it into place: an image
    dir with a manifest is always complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        if step:
            step(f"{ROOT_XZ}: unpacking and verifying")
        root = release.files[ROOT_XZ]
        _unpack_sparse(
            got[ROOT_XZ],
            tmp / layout.IMAGE_ROOT,
            root.get("unpacked_size"),
            root.get("unpacked_sha256"),
        )
        for n in (layout.IMAGE_KERNEL, layout.IMAGE_INITRD):
            shutil.copyfile(got[n], tmp / n)
        write_json_atomic(
            tmp / layout.IMAGE_MANIFEST,
            {
                "key": out.name,
                "version": release.version,
                "arch": release.arch,  # the backend boots the guest as this arch
                "cmdline": release.cmdline,
            },
        )
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _discard(urls: Iterable[str], cache: Path) -> None:
    for url in urls:
        download.discard(url, cache)


def release_dir(cache: Path, version: str, arch: str) -> Path:
    return cache / "guest" / f"{RELEASE_PREFIX}{version}-{arch}"


def release_base_url() -> str:
    """Where releases live: ``COVE_RELEASE_URL`` (a mirror, a test server) or the project's."""
    return os.environ.get(RELEASE_URL_ENV) or RELEASE_BASE_URL


def manifest_url(base_url: str, version: str, arch: str) -> str:
    """``<base>/<version>/<arch>/release.json``: ``cove vm image pack -o <dir>/<version>/<arch>``
    then uploading ``<dir>`` as is publishes a release."""
    return f"{base_url.rstrip('/')}/{version}/{arch}/{MANIFEST}"


def cove_version() -> str:
    """This cove's version: the guest must run the same engine as the host's CLI expects."""
    try:
        return importlib.metadata.version("cove")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def ensure(
    *,
    base_url: str | None = None,
    version: str | None = None,
    arch: str | None = None,
    cache: Path | None = None,
    progress: download.Progress | None = None,
    step: Step | None = None,
) -> GuestImage:
    """The released image for this cove version and arch: from the cache (no network), else
    downloaded once from :func:`manifest_url` and verified (:func:`fetch_release`)."""
    cache = cache or layout.cache_home()
    version = version or cove_version()
    arch = arch or host_arch()
    out = release_dir(cache, version, arch)
    if not (out / layout.IMAGE_MANIFEST).exists():
        # Two `cove vm start`s at once would append to the same .partial files.
        with exclusive_lock(out.with_name(f".{out.name}.lock")):
            if not (out / layout.IMAGE_MANIFEST).exists():
                url = manifest_url(base_url or release_base_url(), version, arch)
                _download_release(url, out, version, arch, cache, progress, step)
    os.utime(out)  # most recently used: pruning keeps it
    return image_at(out)


def _download_release(
    url: str,
    out: Path,
    version: str,
    arch: str,
    cache: Path,
    progress: download.Progress | None,
    step: Step | None,
) -> None:
    for leftover in out.parent.glob(f".{out.name}-*"):  # a killed unpack (we hold the lock)
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        fetch_release(url, cache=cache, progress=progress, arch=arch, version=version, step=step)
    except NotFound as e:
        raise NotFound(
            f"no guest image release {version} for {arch} at {url} (HTTP 404): set "
            f"{RELEASE_URL_ENV} to a mirror, or {PINNED_IMAGE_ENV} to a built image dir"
        ) from e
    prune_releases(out.parent, keep=KEEP_RELEASES)


def prune_releases(guest_cache: Path, keep: int) -> None:
    """Drop all but the *keep* most recently used release images (older cove versions')."""
    images = sorted(
        (p for p in guest_cache.glob(f"{RELEASE_PREFIX}*") if p.is_dir()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in images[keep:]:
        shutil.rmtree(old, ignore_errors=True)


class TextProgress:
    """Download progress for a terminal, drawn like ``docker pull``'s: each step is a line,
    redrawn in place with the bytes so far; on a pipe only the step lines (logs stay
    readable). ``step`` and ``progress`` are the callbacks :func:`ensure` takes."""

    def __init__(self, out: TextIO | None = None, prefix: str = "") -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.prefix = prefix
        self.label = ""  # the step line the cursor is on (tty only)

    def step(self, what: str) -> None:
        self.close()
        self.label = self.prefix + what
        self.out.write(self.label + ("" if self.tty else "\n"))
        self.out.flush()

    def progress(self, done: int, total: int) -> None:
        if not self.tty:
            return
        of = f" / {human_size(total)}" if total else ""
        self.out.write(f"\r\x1b[2K{self.label} {_bar(done, total)} {human_size(done)}{of}")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.label:
            self.out.write("\n")
            self.out.flush()
        self.label = ""


def human_size(n: int) -> str:
    return f"{n / 2**10:.0f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"


def _bar(done: int, total: int, width: int = 30) -> str:
    if not total:
        return ""
    filled = min(width, width * done // total)
    return "[" + "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1) + "]"
