"""Pull and push stream: Python-allocated memory stays a few MiB whatever the layer size
(two 24 MiB layers here; pushing them in 16 MiB PATCH chunks once held each chunk)."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.api.reference import parse
from runtime.engine.events import EventBus
from runtime.images.registry.pull import pull_messages
from runtime.images.registry.push import push_messages
from runtime.images.store import ImageStore
from runtime.layout import EngineLayout
from tests.images.layers import add_image, file, tar_bytes
from tests.images.registry import Registry, start_registry

pytestmark = pytest.mark.registry
LAYER_MB = 24


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("memreg"))
    yield reg
    reg.stop()


def _peak_mb(run: Iterator[object]) -> float:
    tracemalloc.start()
    try:
        for _ in run:
            pass
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_push_and_pull_memory_is_bounded(store: ImageStore, registry: Registry,
                                         tmp_path: Path) -> None:
    layers = [tar_bytes([file(f"big{i}", os.urandom(LAYER_MB << 20))]) for i in range(2)]
    add_image(store, layers, f"{registry.host}/mem/big:1", Cmd=["sh"])
    del layers
    push_peak = _peak_mb(push_messages(store, parse(f"{registry.host}/mem/big:1"), None))
    assert push_peak < 8, f"push held {push_peak:.1f} MiB"
    fresh = ImageStore(EngineLayout(tmp_path / "fresh", tmp_path / "fresh-run"), EventBus())
    pull_peak = _peak_mb(pull_messages(fresh, parse(f"{registry.host}/mem/big:1"), None))
    assert pull_peak < 24, f"pull held {pull_peak:.1f} MiB"
    assert fresh.get(f"{registry.host}/mem/big:1").size == 2 * (LAYER_MB << 20)
