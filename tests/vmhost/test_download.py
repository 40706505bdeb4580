"""Release downloads against a local HTTP server on 127.0.0.1: progress, sha256, resume."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runtime.api.errors import InvalidArgument, Unavailable
from vmhost.download import cache_dir, fetch

DATA = bytes(range(256)) * 4096  # 1 MiB


class _RangeHandler(SimpleHTTPRequestHandler):
    ranges: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        _RangeHandler.ranges.append(rng or "")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = DATA[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _RangeHandler.ranges = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/root.raw.zst"
    httpd.shutdown()
    httpd.server_close()


def test_download_verify_and_cache(server: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    sha = hashlib.sha256(DATA).hexdigest()
    path = fetch(server, sha, cache=tmp_path, progress=lambda n, t: seen.append((n, t)))
    assert path.read_bytes() == DATA
    assert seen[-1] == (len(DATA), len(DATA))
    assert fetch(server, sha, cache=tmp_path) == path  # cached: no second request
    assert _RangeHandler.ranges == [""]


def test_resume_interrupted(server: str, tmp_path: Path) -> None:
    d = cache_dir(server, tmp_path)
    d.mkdir(parents=True)
    (d / "data.partial").write_bytes(DATA[:300_000])
    path = fetch(server, hashlib.sha256(DATA).hexdigest(), cache=tmp_path)
    assert path.read_bytes() == DATA
    assert _RangeHandler.ranges == ["bytes=300000-"]


def test_sha_mismatch_discards(server: str, tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="sha256 mismatch"):
        fetch(server, "0" * 64, cache=tmp_path)
    assert not (cache_dir(server, tmp_path) / "data").exists()
    assert not (cache_dir(server, tmp_path) / "data.partial").exists()


def test_republished_url_is_downloaded_again(server: str, tmp_path: Path) -> None:
    """The cache answers only for the sha256 it verified: a manifest that now wants other
    bytes at the same URL gets a fresh download (here: the server's, which do not match)."""
    fetch(server, hashlib.sha256(DATA).hexdigest(), cache=tmp_path)
    with pytest.raises(Unavailable, match="sha256 mismatch"):
        fetch(server, "1" * 64, cache=tmp_path)
    assert _RangeHandler.ranges == ["", ""]
    assert not (cache_dir(server, tmp_path) / "data").exists()


def test_unreachable_server_is_one_readable_line(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/x"
    httpd.server_close()  # nothing listens there now
    with pytest.raises(Unavailable) as e:
        fetch(url, "0" * 64, cache=tmp_path)
    assert str(e.value) == f"download {url}: Connection refused"


def test_release_roundtrip_over_local_http(tmp_path: Path) -> None:
    """write_release -> serve the dir on 127.0.0.1 -> fetch_release unpacks an image dir."""
    from vmhost.guestimage import GuestImage
    from vmhost.release import fetch_release, write_release

    src = tmp_path / "src"
    src.mkdir()
    for name, data in (("root.raw", b"R" * 100_000), ("vmlinuz", b"K"), ("initrd.img", b"I")):
        (src / name).write_bytes(data)
    image = GuestImage(
        key="k",
        root=src / "root.raw",
        kernel=src / "vmlinuz",
        initrd=src / "initrd.img",
        cmdline="console=ttyS0",
    )
    pub = tmp_path / "pub"
    handler = functools.partial(_Quiet, directory=str(pub))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        write_release(image, pub, base, "9.9")
        got = fetch_release(f"{base}/release.json", cache=tmp_path / "cache")
        assert got.root.read_bytes() == b"R" * 100_000
        assert got.kernel.read_bytes() == b"K" and got.cmdline == "console=ttyS0"
        assert fetch_release(f"{base}/release.json", cache=tmp_path / "cache") == got
    finally:
        httpd.shutdown()
        httpd.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class RangeFiles(SimpleHTTPRequestHandler):
    """Static files with Range support; the first GET of each name in ``cut`` sends only
    half of the body (with the full Content-Length), as a dropped connection would.
    Also serves test_release_source.py."""

    cut: set[str] = set()
    requests: list[tuple[str, str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        rng = self.headers.get("Range", "")
        RangeFiles.requests.append((path.name, rng))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if start >= len(data) and rng:
            self.send_error(416)
            return
        body = data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if path.name in RangeFiles.cut:
            RangeFiles.cut.discard(path.name)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)


def small_image(d: Path) -> Path:
    """A real (if tiny) guest image dir: an ext4 root made by mke2fs -d, sparse like the
    real one, plus a kernel and an initrd of random bytes and the build's manifest.json.
    Also used by test_release_source.py."""
    if shutil.which("mke2fs") is None:
        pytest.skip("mke2fs not installed")
    tree = d / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("cove\n")
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/blob").write_bytes(os.urandom(300_000))
    img = d / "image"
    img.mkdir()
    subprocess.run(
        ["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(img / "root.raw"), "32M"],
        check=True,
        capture_output=True,
    )
    (img / "vmlinuz").write_bytes(os.urandom(70_000))
    (img / "initrd.img").write_bytes(os.urandom(20_000))
    manifest = {"key": "image-test", "cmdline": "console=ttyS0 root=/dev/vda", "files": {}}
    (img / "manifest.json").write_text(json.dumps(manifest))
    return img


def _cove(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli.main", "vm", "image", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "COVE_VM_HOME": str(home), "COVE_CACHE": str(home / "cache")},
        timeout=120,
        check=False,
    )


def test_pack_serve_fetch_roundtrip(tmp_path: Path) -> None:
    """`cove vm image pack` -> a 127.0.0.1 HTTP server -> `cove vm image fetch` (the real
    download path: sizes, sha256, a resumed root download) -> the same bytes, still sparse."""
    image = small_image(tmp_path)
    home = tmp_path / "home"
    pub = tmp_path / "srv" / "v1"
    packed = _cove(
        home, "pack", "--image", str(image), "-o", str(pub), "--version", "1.2.3", "--json"
    )
    assert packed.returncode == 0, packed.stderr
    manifest = json.loads(packed.stdout)
    assert manifest == json.loads((pub / "release.json").read_text())
    assert manifest["version"] == "1.2.3" and manifest["format"] == 1
    assert manifest["arch"] in ("amd64", "arm64")
    assert sorted(manifest["files"]) == ["initrd.img", "root.raw.xz", "vmlinuz"]
    for name, f in manifest["files"].items():
        assert f["url"] == name  # relative: the directory can be uploaded anywhere
        assert f["size"] == (pub / name).stat().st_size
        assert f["sha256"] == hashlib.sha256((pub / name).read_bytes()).hexdigest()
    root = image / "root.raw"
    xz = manifest["files"]["root.raw.xz"]
    assert xz["unpacked_size"] == root.stat().st_size == 32 << 20
    assert xz["size"] < 2 << 20  # compressed (the blob is 300 KB of random bytes)

    handler = functools.partial(RangeFiles, directory=str(tmp_path / "srv"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    RangeFiles.requests, RangeFiles.cut = [], {"root.raw.xz"}
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1/release.json"
        first = _cove(home, "fetch", "-q", url)
        assert first.returncode != 0 and "retry to resume" in first.stderr, first.stderr
        second = _cove(home, "fetch", "-q", url)
        assert second.returncode == 0, second.stderr
    finally:
        httpd.shutdown()
        httpd.server_close()
    got = Path(second.stdout.strip())
    assert ("root.raw.xz", "") in RangeFiles.requests
    resumed = [r for n, r in RangeFiles.requests if n == "root.raw.xz" and r]
    assert resumed == [f"bytes={xz['size'] // 2}-"]
    assert (got / "root.raw").read_bytes() == root.read_bytes()
    assert (got / "root.raw").stat().st_blocks * 512 < 8 << 20  # unpacked sparsely
    for name in ("vmlinuz", "initrd.img"):
        assert (got / name).read_bytes() == (image / name).read_bytes()
    from vmhost.guestimage import image_at

    assert image_at(got).cmdline == "console=ttyS0 root=/dev/vda"


def test_fetch_refuses_other_arch(tmp_path: Path) -> None:
    from vmhost.guestimage import image_at
    from vmhost.release import fetch_release, pack

    pub = tmp_path / "pub"
    pack(image_at(small_image(tmp_path)), pub, version="1", arch="riscv64")
    handler = functools.partial(_Quiet, directory=str(pub))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        with pytest.raises(InvalidArgument, match="is for riscv64"):
            fetch_release(f"{base}/release.json", cache=tmp_path / "cache", arch="amd64")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_pack_refuses_a_root_that_changed_since_its_build(tmp_path: Path) -> None:
    image = small_image(tmp_path)
    manifest = json.loads((image / "manifest.json").read_text())
    manifest["files"] = {"root.raw": {"sha256": hashlib.sha256(b"other").hexdigest()}}
    (image / "manifest.json").write_text(json.dumps(manifest))
    out = _cove(tmp_path / "home", "pack", "--image", str(image), "-o", str(tmp_path / "o"))
    assert out.returncode != 0 and "does not match its build manifest" in out.stderr
    assert not (tmp_path / "o/release.json").exists()
    assert not list((tmp_path / "o").glob("root.raw.xz*"))
