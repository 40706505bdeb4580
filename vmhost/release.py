"""Versioned guest-image releases for macOS/Windows hosts (no mmdebstrap there).

A release is a JSON manifest next to its files::

    {"version": "0.1.0", "cmdline": "...",
     "files": {"vmlinuz": {"url": "...", "sha256": "..."},
               "initrd.img": {"url": "...", "sha256": "..."},
               "root.raw.xz": {"url": "...", "sha256": "..."}}}

:func:`fetch_release` downloads each file once (progress, sha256, resume: vmhost.download)
and unpacks ``root.raw.xz`` with the stdlib's lzma into an image dir that
:func:`vmhost.guestimage.image_at` understands. :func:`write_release` makes one from a
locally built image (xz, so that hosts need nothing beyond Python to unpack it).
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import urllib.request
from pathlib import Path

from runtime.api.errors import InvalidArgument, Unavailable
from runtime.fsutil import write_json_atomic
from vmhost import download, layout
from vmhost.guestimage import GuestImage, image_at

ROOT_XZ = layout.IMAGE_ROOT + ".xz"


def _sha256(path: Path) -> str:
    return download._sha256_file(path)


def write_release(image: GuestImage, out: Path, base_url: str, version: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(image.root, "rb") as src, lzma.open(out / ROOT_XZ, "wb", preset=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    shutil.copyfile(image.kernel, out / layout.IMAGE_KERNEL)
    shutil.copyfile(image.initrd, out / layout.IMAGE_INITRD)
    files = {
        n: {"url": f"{base_url.rstrip('/')}/{n}", "sha256": _sha256(out / n)}
        for n in (layout.IMAGE_KERNEL, layout.IMAGE_INITRD, ROOT_XZ)
    }
    manifest = {"version": version, "cmdline": image.cmdline, "files": files}
    write_json_atomic(out / "release.json", manifest)
    return out / "release.json"


def fetch_release(
    manifest_url: str, *, cache: Path | None = None, progress: download.Progress | None = None
) -> GuestImage:
    cache = cache or layout.cache_home()
    try:
        with urllib.request.urlopen(manifest_url, timeout=30) as r:
            manifest = json.loads(r.read())
        version, files = str(manifest["version"]), manifest["files"]
    except (OSError, ValueError, KeyError) as e:
        raise Unavailable(f"guest release {manifest_url}: {e}") from e
    if set(files) != {layout.IMAGE_KERNEL, layout.IMAGE_INITRD, ROOT_XZ}:
        raise InvalidArgument(f"guest release {manifest_url}: unexpected files {sorted(files)}")
    out = cache / "guest" / f"image-release-{version}"
    if (out / layout.IMAGE_MANIFEST).exists():
        return image_at(out)
    got = {
        n: download.fetch(f["url"], f["sha256"], cache=cache, progress=progress)
        for n, f in files.items()
    }
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with lzma.open(got[ROOT_XZ]) as src, open(tmp / layout.IMAGE_ROOT, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    for n in (layout.IMAGE_KERNEL, layout.IMAGE_INITRD):
        shutil.copyfile(got[n], tmp / n)
    write_json_atomic(
        tmp / layout.IMAGE_MANIFEST,
        {"key": out.name, "version": version, "cmdline": manifest.get("cmdline", "")},
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return image_at(out)
