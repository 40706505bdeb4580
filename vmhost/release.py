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
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import platform
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from runtime.api.errors import Internal, InvalidArgument, Unavailable
from runtime.fsutil import write_json_atomic
from vmhost import download, layout
from vmhost.guestimage import GuestImage, image_at

FORMAT = 1
MANIFEST = "release.json"
ROOT_XZ = layout.IMAGE_ROOT + ".xz"
FILES = (layout.IMAGE_KERNEL, layout.IMAGE_INITRD, ROOT_XZ)
BLOCK = 1 << 20
XZ_PRESET = 6  # -9 saves ~3 % more and takes twice as long; unpacking speed is the same
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}

Step = Callable[[str], None]


def host_arch() -> str:
    """The Debian name of this machine's architecture (the guest runs the same one)."""
    m = platform.machine().lower()
    return _ARCHES.get(m, m)


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
        "arch": arch or host_arch(),
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
) -> GuestImage:
    cache = cache or layout.cache_home()
    try:
        with urllib.request.urlopen(manifest_url, timeout=30) as r:
            raw = r.read()
    except (OSError, ValueError) as e:
        raise Unavailable(f"guest release {manifest_url}: {e}") from e
    release = parse_manifest(raw, manifest_url)
    want_arch = arch or host_arch()
    if release.arch != want_arch:
        raise InvalidArgument(
            f"guest release {manifest_url} is for {release.arch}, this host needs {want_arch}"
        )
    out = cache / "guest" / f"image-release-{release.version}-{release.arch}"
    if (out / layout.IMAGE_MANIFEST).exists():
        return image_at(out)
    got = {
        n: download.fetch(
            urllib.parse.urljoin(manifest_url, f["url"]),
            f["sha256"],
            size=f.get("size"),
            cache=cache,
            progress=progress,
        )
        for n, f in release.files.items()
    }
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
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
        {"key": out.name, "version": release.version, "cmdline": release.cmdline},
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return image_at(out)
