"""Release artefacts for macOS/Windows hosts: download once, verify sha256, resume.

Cache shape (Lima's downloader): ``<cache>/downloads/by-url-sha256/<sha256(url)>/`` with
``url``, ``data`` (complete and verified), ``sha256`` (what ``data`` was verified against) and
``data.partial`` (an interrupted download, resumed with an HTTP Range request). A server that
ignores Range gets a fresh download. Nothing unverified is ever named ``data``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from runtime.api.errors import InvalidArgument, Unavailable
from runtime.fsutil import write_atomic
from vmhost import layout

Progress = Callable[[int, int], None]  # (bytes so far, total or 0)
CHUNK = 256 * 1024
VERIFIED = "sha256"


def cache_dir(url: str, cache: Path) -> Path:
    return cache / layout.DOWNLOADS / hashlib.sha256(url.encode()).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(
    url: str,
    sha256: str,
    *,
    cache: Path | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
    size: int | None = None,
) -> Path:
    """Return the path of the verified file for *url*, downloading what is missing.
    *size*, when known, stops a server that sends more than that early (and gives
    *progress* a total when the server sends no Content-Length)."""
    if len(sha256) != 64:
        raise InvalidArgument(f"download {url}: sha256 must be 64 hex digits")
    d = cache_dir(url, cache or layout.cache_home())
    data, partial = d / "data", d / "data.partial"
    if _verified(d, sha256):
        return data
    d.mkdir(parents=True, exist_ok=True)
    write_atomic(d / "url", url.encode())
    have = partial.stat().st_size if partial.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # already complete
            return _finish(partial, data, sha256, url, size)
        raise Unavailable(f"download {url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise Unavailable(f"download {url}: {describe(e)}") from e
    with resp:
        resumed = have and resp.status == 206
        if not resumed:
            have = 0
        length = int(resp.headers.get("Content-Length") or 0)
        total = have + length if length else size or 0
        with open(partial, "ab" if resumed else "wb") as out:
            try:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    have += len(chunk)
                    if size is not None and have > size:
                        break
                    if progress:
                        progress(have, total)
            except (OSError, http.client.HTTPException) as e:  # IncompleteRead: cut short
                raise Unavailable(f"download {url}: interrupted at {have} bytes: {e}") from e
    return _finish(partial, data, sha256, url, size)


def _finish(partial: Path, data: Path, sha256: str, url: str, size: int | None = None) -> Path:
    have = partial.stat().st_size
    if size is not None and have < size:  # the server closed early: keep it for a resume
        raise Unavailable(f"download {url}: incomplete ({have} of {size} bytes), retry to resume")
    if size is not None and have > size:
        partial.unlink()
        raise Unavailable(f"download {url}: more than the {size} bytes announced")
    got = _sha256_file(partial)
    if got != sha256.lower():
        partial.unlink()
        raise Unavailable(f"download {url}: sha256 mismatch (got {got}, want {sha256})")
    os.replace(partial, data)
    write_atomic(data.with_name(VERIFIED), sha256.lower().encode())
    return data


def _verified(d: Path, sha256: str) -> bool:
    """Whether ``data`` is there and was verified against *sha256*: a URL republished with
    other content (a new manifest, same file name) must not get the old bytes."""
    data = d / "data"
    if not data.exists():
        return False
    try:
        recorded = (d / VERIFIED).read_text().strip()
    except FileNotFoundError:
        recorded = _sha256_file(data)  # a cache from before the sha256 file: check it once
    if recorded == sha256.lower():
        return True
    data.unlink()
    (d / VERIFIED).unlink(missing_ok=True)
    return False


def discard(url: str, cache: Path | None = None) -> None:
    """Forget *url*'s download (once its contents live elsewhere, e.g. an unpacked image)."""
    shutil.rmtree(cache_dir(url, cache or layout.cache_home()), ignore_errors=True)


def describe(e: BaseException) -> str:
    """One readable line for a network error (urllib's own repr nests the reason)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        reason = e.reason
        return reason.strerror or str(reason) if isinstance(reason, OSError) else str(reason)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
