"""Release downloads against a local HTTP server on 127.0.0.1: progress, sha256, resume."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runtime.api.errors import Unavailable
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


def test_release_roundtrip_over_local_http(tmp_path: Path) -> None:
    """write_release -> serve the dir on 127.0.0.1 -> fetch_release unpacks an image dir."""
    import functools

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
