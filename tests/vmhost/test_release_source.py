"""Where `cove vm start` gets its guest image (guestimage.resolve) when it downloads the
release: a packed tiny image served by a Range-capable 127.0.0.1 server, fetched once,
verified, resumed after a cut, reused without network, refused when it is the wrong one."""

from __future__ import annotations

import functools
import io
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from runtime.api.errors import InvalidArgument, NotFound, Unavailable
from tests.vmhost.test_download import RangeFiles, small_image
from vmhost import guestimage, release
from vmhost.guestimage import image_at

VERSION = release.cove_version()
ARCH = release.host_arch()
IMAGE_FILES = ("root.raw", "vmlinuz", "initrd.img")


@dataclass(frozen=True)
class Served:
    image: Path  # the image dir that was packed
    srv: Path  # the server's document root: <srv>/<version>/<arch>/release.json
    url: str  # COVE_RELEASE_URL
    cache: Path  # COVE_CACHE


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    image = small_image(tmp_path)
    srv = tmp_path / "srv"
    release.pack(image_at(image), srv / VERSION / ARCH, version=VERSION)
    handler = functools.partial(RangeFiles, directory=str(srv))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    RangeFiles.requests, RangeFiles.cut = [], set()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    cache = tmp_path / "cache"
    monkeypatch.delenv(guestimage.PINNED_ENV, raising=False)
    monkeypatch.setenv(guestimage.SOURCE_ENV, "release")
    monkeypatch.setenv(release.RELEASE_URL_ENV, url)
    monkeypatch.setenv("COVE_CACHE", str(cache))
    try:
        yield Served(image=image, srv=srv, url=url, cache=cache)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _installed(cache: Path) -> Path:
    return release.release_dir(cache, VERSION, ARCH)


def _assert_nothing_installed(cache: Path) -> None:
    """No image dir, no half-unpacked temporary dir: only the lock and download records."""
    guest = cache / "guest"
    entries = sorted(p.name for p in guest.iterdir()) if guest.exists() else []
    assert entries in ([], [f".{_installed(cache).name}.lock"]), entries


def _partials(cache: Path) -> list[Path]:
    return sorted(cache.glob("downloads/by-url-sha256/*/data.partial"))


def test_downloads_once_then_reuses_the_cache(served: Served) -> None:
    steps: list[str] = []
    seen: list[tuple[int, int]] = []
    image = guestimage.resolve(step=steps.append, progress=lambda n, t: seen.append((n, t)))

    assert image.root.parent == _installed(served.cache)
    for name in IMAGE_FILES:
        got, packed = image.root.parent / name, served.image / name
        assert got.read_bytes() == packed.read_bytes(), name
    assert image.root.stat().st_blocks * 512 < 8 << 20  # unpacked sparsely (32 MiB disk)
    assert image.cmdline == "console=ttyS0 root=/dev/vda"
    assert sorted(n for n, _ in RangeFiles.requests) == [
        "initrd.img",
        "release.json",
        "root.raw.xz",
        "vmlinuz",
    ]
    assert [s.split(":")[0] for s in steps] == [
        "vmlinuz",
        "initrd.img",
        "root.raw.xz",
        "root.raw.xz",  # 3 downloads, then the unpack
    ]
    xz = json.loads((served.srv / VERSION / ARCH / "release.json").read_text())["files"]
    assert (xz["root.raw.xz"]["size"],) * 2 in seen  # progress reached each file's total
    assert not list(served.cache.glob("downloads/by-url-sha256/*"))  # unpacked: dropped

    RangeFiles.requests.clear()
    again = guestimage.resolve()
    assert again == image
    assert RangeFiles.requests == []  # no network once cached


def test_two_starts_at_once_download_once(served: Served) -> None:
    """Two `cove vm start`s racing (separate lock opens, as two processes would): one
    downloads, the other waits for it and reuses the result."""
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(guestimage.resolve())) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2 and results[0] == results[1]
    names = [n for n, _ in RangeFiles.requests]
    assert sorted(names) == ["initrd.img", "release.json", "root.raw.xz", "vmlinuz"]


def test_interrupted_download_resumes(served: Served) -> None:
    RangeFiles.cut = {"root.raw.xz"}
    with pytest.raises(Unavailable, match="retry to resume") as first:
        guestimage.resolve()
    assert "\n" not in str(first.value)
    _assert_nothing_installed(served.cache)
    assert len(_partials(served.cache)) == 1  # kept for the resume

    image = guestimage.resolve()
    size = (served.srv / VERSION / ARCH / "root.raw.xz").stat().st_size
    resumed = [r for n, r in RangeFiles.requests if n == "root.raw.xz" and r]
    assert resumed == [f"bytes={size // 2}-"]
    assert image.root.read_bytes() == (served.image / "root.raw").read_bytes()


def test_checksum_mismatch_leaves_the_cache_clean(served: Served) -> None:
    xz = served.srv / VERSION / ARCH / "root.raw.xz"
    data = bytearray(xz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the sha256 can tell
    xz.write_bytes(bytes(data))
    with pytest.raises(Unavailable, match=r"root\.raw\.xz: sha256 mismatch") as e:
        guestimage.resolve()
    assert "\n" not in str(e.value)
    _assert_nothing_installed(served.cache)
    assert _partials(served.cache) == []


def test_unpacked_root_mismatch_leaves_the_cache_clean(served: Served) -> None:
    """The compressed file is the one published but unpacks to other bytes than the
    manifest says: no image, no temporary unpack dir, no downloads kept."""
    path = served.srv / VERSION / ARCH / "release.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["root.raw.xz"]["unpacked_sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    with pytest.raises(Unavailable, match="unpacked sha256 mismatch"):
        guestimage.resolve()
    _assert_nothing_installed(served.cache)
    assert not list(served.cache.glob("downloads/by-url-sha256/*"))


def test_no_release_for_this_version(served: Served) -> None:
    (served.srv / VERSION).rename(served.srv / "0.0.0-other")
    with pytest.raises(NotFound) as e:
        guestimage.resolve()
    msg = str(e.value)
    assert msg.startswith(f"no guest image release {VERSION} for {ARCH} at {served.url}")
    assert "HTTP 404" in msg and "COVE_RELEASE_URL" in msg and "\n" not in msg
    _assert_nothing_installed(served.cache)


def test_mislabelled_version_is_refused(served: Served) -> None:
    """A manifest for another version at this version's URL is refused before any download."""
    shutil.rmtree(served.srv / VERSION)
    release.pack(image_at(served.image), served.srv / VERSION / ARCH, version="9.9.9")
    with pytest.raises(InvalidArgument, match=f"is version 9.9.9, this cove needs {VERSION}"):
        guestimage.resolve()
    assert [n for n, _ in RangeFiles.requests] == ["release.json"]
    _assert_nothing_installed(served.cache)


def test_other_arch_is_refused(served: Served) -> None:
    shutil.rmtree(served.srv / VERSION)
    release.pack(
        image_at(served.image), served.srv / VERSION / ARCH, version=VERSION, arch="riscv64"
    )
    with pytest.raises(InvalidArgument, match=f"is for riscv64, this host needs {ARCH}"):
        guestimage.resolve()
    assert [n for n, _ in RangeFiles.requests] == ["release.json"]
    _assert_nothing_installed(served.cache)


def test_no_server_is_one_readable_line(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeFiles)
    closed = f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.server_close()  # nothing listens there now
    monkeypatch.setenv(release.RELEASE_URL_ENV, closed)
    with pytest.raises(Unavailable) as e:
        guestimage.resolve()
    assert str(e.value) == (
        f"guest release {closed}/{VERSION}/{ARCH}/release.json: Connection refused"
    )
    _assert_nothing_installed(served.cache)


def test_auto_downloads_where_this_host_cannot_build(
    served: Served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """auto (the default) on a host without mmdebstrap: the release, as on macOS."""
    monkeypatch.delenv(guestimage.SOURCE_ENV)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert not guestimage.can_build()
    image = guestimage.resolve()
    assert image.root.parent == _installed(served.cache)


def test_pinned_image_wins_without_network(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(guestimage.PINNED_ENV, str(served.image))
    assert guestimage.resolve() == image_at(served.image)
    assert RangeFiles.requests == []
    monkeypatch.setenv(guestimage.PINNED_ENV, str(served.srv))
    with pytest.raises(InvalidArgument, match="not a built guest image dir"):
        guestimage.resolve()


def test_prefetch_downloads_only_what_resolve_would(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's early download (progress on its terminal): the release when resolve()
    would fetch one, nothing at all for a pinned image or a local build."""
    monkeypatch.setenv(guestimage.PINNED_ENV, str(served.image))
    assert guestimage.prefetch() is None
    monkeypatch.delenv(guestimage.PINNED_ENV)
    monkeypatch.setenv(guestimage.SOURCE_ENV, "build")
    assert guestimage.prefetch() is None
    assert RangeFiles.requests == []
    monkeypatch.setenv(guestimage.SOURCE_ENV, "release")
    image = guestimage.prefetch()
    assert image is not None and image == guestimage.resolve()


def test_unknown_source_is_refused(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(guestimage.SOURCE_ENV, "mirror")
    with pytest.raises(InvalidArgument, match="use one of auto, build, release"):
        guestimage.resolve()


def test_older_releases_are_pruned(served: Served) -> None:
    guest = served.cache / "guest"
    for old in ("0.0.1", "0.0.2"):
        (guest / f"{release.RELEASE_PREFIX}{old}-{ARCH}").mkdir(parents=True)
    guestimage.resolve()
    kept = sorted(p.name for p in guest.glob(f"{release.RELEASE_PREFIX}*"))
    assert len(kept) == release.KEEP_RELEASES and _installed(served.cache).name in kept


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_text_progress_on_a_terminal_and_on_a_pipe() -> None:
    pipe, tty = io.StringIO(), _Terminal()
    for p in (release.TextProgress(pipe), release.TextProgress(tty)):
        p.step("vmlinuz: downloading 1.0 MiB")
        p.progress(1 << 19, 1 << 20)
        p.progress(1 << 20, 1 << 20)
        p.step("root.raw.xz: unpacking and verifying")
        p.close()
    assert pipe.getvalue() == (
        "vmlinuz: downloading 1.0 MiB\nroot.raw.xz: unpacking and verifying\n"
    )
    lines = tty.getvalue().split("\n")
    assert lines[0].endswith("] 1.0 MiB / 1.0 MiB") and "\r\x1b[2K" in lines[0]
    assert "[===============>" in lines[0]  # drawn at half way, then redrawn
    assert lines[1:] == ["root.raw.xz: unpacking and verifying", ""]
