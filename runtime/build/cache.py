"""The build cache: step key → image ID, persisted under the data root; plus ``--cache-from``.

A step's key is the parent image ID, the step's history text (``created_by``,
which for RUN carries the build args it sees and for COPY/ADD the content
hash of its files) and the resulting image config, so a hit is exactly an
image the same step produced from the same parent. Entries whose image was
deleted are ignored (and dropped on the next save).

``--cache-from`` images are matched the way moby's classic builder does it:
by history — an image whose history extends the parent's with an entry whose
``created_by`` equals this step's can stand in for it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from runtime.api.errors import CoveError
from runtime.build.layers import Section, restored_image
from runtime.fsutil import write_json_atomic
from runtime.images.store import Image, ImageStore


def step_key(parent_id: str, created_by: str, section: Section) -> str:
    blob = json.dumps([parent_id, created_by, section], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class BuildCache:
    def __init__(self, path: Path, store: ImageStore) -> None:
        self.path = path
        self.store = store
        self._lock = threading.Lock()
        try:
            self._map: dict[str, str] = dict(json.loads(path.read_bytes()))
        except (FileNotFoundError, ValueError):
            self._map = {}

    def get(self, key: str) -> Image | None:
        with self._lock:
            image_id = self._map.get(key)
        if image_id is None:
            return None
        try:
            return self.store.get(image_id)
        except CoveError:
            return None

    def put(self, key: str, image_id: str) -> None:
        with self._lock:
            self._map[key] = image_id
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        live = {k: v for k, v in self._map.items() if self.store.exists(v)}
        self._map = live
        write_json_atomic(self.path, live)

    def prune(self) -> tuple[list[str], int]:
        """Delete the images only the cache keeps, and forget their entries.

        Those are the cached step images that are untagged, used by no container and
        parent of no other image. A tagged image's steps stay, and stay cached: as in
        docker, whose classic cache is the images themselves. Deleting a leaf can make
        its parent step a leaf, so this repeats until nothing changes. Returns the image
        IDs deleted and the bytes their layers freed.
        """
        with self._lock:
            todo = set(self._map.values())
        deleted: list[str] = []
        freed = 0
        while todo:
            gone = [image_id for image_id in sorted(todo) if self._drop_if_dangling(image_id)]
            if not gone:
                break
            deleted += gone
            todo.difference_update(gone)
            freed += self.store.gc()[1]
        with self._lock:
            self._save()  # drops the entries of the deleted images
        return deleted, freed

    def _drop_if_dangling(self, image_id: str) -> bool:
        store = self.store
        with store.lock:
            if not store.exists(image_id):
                return False
            if (store.refs_of(image_id) or store.children(image_id)
                    or store.in_use(image_id)):
                return False
            store.drop_record(image_id)
        return True


def _history(image: Image | None) -> list[dict[str, Any]]:
    return list(image.config.get("history") or []) if image else []


def from_sources(store: ImageStore, sources: list[Image], parent: Image | None,
                 created_by: str, section: Section) -> Image | None:
    """An image standing for this step, taken from a ``--cache-from`` image's history."""
    base = _history(parent)
    diff_ids = parent.diff_ids if parent else []
    for target in sources:
        history = _history(target)
        if len(history) <= len(base) or target.diff_ids[: len(diff_ids)] != diff_ids:
            continue
        if [h.get("created_by") for h in history[: len(base)]] != [
                h.get("created_by") for h in base]:
            continue
        entry = history[len(base)]
        if entry.get("created_by") != created_by:
            continue
        layers = len(diff_ids) + (0 if entry.get("empty_layer") else 1)
        if layers > len(target.diff_ids):
            continue
        if len(history) == len(base) + 1 and (target.config.get("config") or {}) == section:
            return target
        return restored_image(store, target, parent, history[: len(base) + 1], layers, section)
    return None
