"""Fixtures for the image tests: a store on tmp dirs, and a check that nothing leaks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.engine.events import EventBus
from runtime.images.store import ImageStore
from runtime.layout import EngineLayout


def _mounts(root: Path) -> list[str]:
    """Mounts of ours: under the test's data root or a rootfs view (others run in parallel)."""
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(root) in line or "cove-view-" in line]


@pytest.fixture
def layout(tmp_path: Path) -> EngineLayout:
    return EngineLayout(tmp_path / "data", tmp_path / "run")


@pytest.fixture
def store(layout: EngineLayout) -> Iterator[ImageStore]:
    yield ImageStore(layout, EventBus())
    assert _mounts(layout.data_root) == [], "an image test leaked a mount"
