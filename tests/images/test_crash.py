"""Bad things on disk and mid-pull: damaged blobs are found when the store loads, and an
engine SIGKILLed during a pull restarts consistent and resumes the download."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.events import EventBus
from runtime.images import digest as dg
from runtime.images.store import ImageStore
from runtime.layout import EngineLayout
from tests.images.layers import add_image, file, tar_bytes
from tests.images.registry import Registry, docker_archive, start_registry

LAYER_MB = 32


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_blobs_are_found_when_the_store_loads(
        layout: EngineLayout, caplog: pytest.LogCaptureFixture) -> None:
    store = ImageStore(layout, EventBus())
    one = add_image(store, [tar_bytes([file("a", b"a" * 5000)])], "one:1")
    two = add_image(store, [tar_bytes([file("b", b"b" * 5000)])], "two:1")
    layer_blob = store.content.path(one.record.layers[0].digest)  # type: ignore[union-attr]
    _flip_byte(layer_blob, 100)
    _flip_byte(store.content.path(two.id), 2)  # the config: the image is unusable
    with caplog.at_level(logging.ERROR):
        reloaded = ImageStore(layout, EventBus())
    assert not layer_blob.exists()
    assert [i.repo_tags for i in reloaded.list()] == [("one:1",)]
    assert not reloaded.exists("two:1")
    assert f"blob {one.record.layers[0].digest} is damaged" in caplog.text  # type: ignore[union-attr]
    assert f"image {two.id}: config blob missing or damaged" in caplog.text
    # Untouched blobs keep their seal: a second load re-hashes nothing.
    assert all(p.stat().st_mtime_ns == 0 for p in (layout.content / "blobs/sha256").iterdir())


@pytest.fixture(scope="module")
def big_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("crashreg")
    reg = start_registry(tmp / "registry")
    try:
        layers = [tar_bytes([file(f"big{i}", os.urandom(LAYER_MB << 20))]) for i in range(3)]
        docker_archive(tmp / "big.tar", layers, Cmd=["sh"])
        del layers
        reg.push_archive(tmp / "big.tar", "crash/big:1")
        (tmp / "big.tar").unlink()
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def own_engine(tmp_path: Path) -> Iterator[Any]:
    """An engine of this test's own: it gets killed."""
    from tests.conftest import is_root
    from tests.harness import EngineProcess

    if not is_root():
        pytest.skip("the engine needs root")
    proc = EngineProcess(tmp_path / "engine")
    try:
        proc.start()
        yield proc
    finally:
        proc.cleanup()


def _partials(engine: Any) -> dict[str, int]:
    out = {}
    for d in (engine.data_root / "content" / "ingest").iterdir():
        data = d / "data"
        if data.exists():
            out[d.name] = data.stat().st_size
    return out


def _pull_path(ref: str) -> str:
    repo, _, tag = ref.rpartition(":")
    return "/images/create?" + urllib.parse.urlencode({"fromImage": repo, "tag": tag})


def _kill_mid_download(engine: Any, ref: str) -> dict[str, int]:
    """Start a pull and SIGKILL the engine once a layer is partly downloaded."""
    threading.Thread(target=lambda: _swallow(engine.request, "POST", _pull_path(ref)),
                     daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partial = {k: v for k, v in _partials(engine).items() if (1 << 20) <= v < LAYER_MB << 20}
        if partial:
            engine.stop(signal.SIGKILL)
            return _partials(engine)
        time.sleep(0.001)
    raise AssertionError("never saw a partial download")


def _swallow(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except (OSError, http.client.HTTPException):
        pass  # the engine died under the request: that is the point


def test_killed_mid_pull_restarts_consistent_and_resumes(own_engine: Any,
                                                         big_registry: Registry) -> None:
    ref = f"{big_registry.host}/crash/big:1"
    partial = _kill_mid_download(own_engine, ref)
    own_engine.start()
    status, images = own_engine.request("GET", "/images/json")
    assert status == 200 and images == []  # nothing half-recorded
    assert list((own_engine.data_root / "snapshots" / "staging").iterdir()) == []
    assert set(_partials(own_engine)) <= set(partial)  # named ingests kept for a resume
    resumable = {k: v for k, v in _partials(own_engine).items() if v < LAYER_MB << 20}
    assert resumable

    status, body = own_engine.request("POST", _pull_path(ref))
    assert status == 200
    messages = [json.loads(line) for line in body.decode().splitlines()]
    assert "Downloaded newer image" in messages[-1]["status"], messages[-3:]
    first_progress: dict[str, int] = {}
    for m in messages:
        if m.get("status") == "Downloading":
            first_progress.setdefault(m["id"], m["progressDetail"]["current"])
    for hex_digest, size in resumable.items():
        short = dg.short("sha256:" + hex_digest)
        # Resumed with Range: the first progress already counts the kept bytes.
        assert first_progress.get(short, size) >= size, (short, size, first_progress)
    assert _partials(own_engine) == {}
    status, image = own_engine.request("GET", f"/images/{ref}/json")
    assert status == 200 and image["Size"] >= 3 * (LAYER_MB << 20)

    # A blob damaged while the engine is down is found when it starts again,
    # and the next pull fetches it again.
    own_engine.stop()
    blob = own_engine.data_root / "content" / "blobs" / "sha256" / image["Id"][7:]
    layer_digests = {p.name for p in blob.parent.iterdir()} - {blob.name}
    victim = blob.parent / max(layer_digests, key=lambda n: (blob.parent / n).stat().st_size)
    _flip_byte(victim, 1000)
    own_engine.start()
    assert "is damaged on disk" in own_engine.log_path.read_text()
    assert not victim.exists()
    status, body = own_engine.request("POST", _pull_path(ref))
    assert status == 200 and b"error" not in body
    assert victim.exists() and victim.stat().st_mtime_ns == 0
