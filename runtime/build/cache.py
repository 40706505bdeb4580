"""The build cache: step key → image ID, persisted under the data root; plus ``--cache-from``.

A step's key is the parent image ID, the step's history text (``created_by``,
which for RUN carries the build args it sees and for COPY/ADD the content
hash of its files) and the resulting image config, so a hit is exactly an
image the same step produced from the same parent. Entries whose image was
deleted are ignored (and dropped on the next save).

``--cache-from`` switches to moby's classic ``ImageCache`` (daemon/internal/image/cache):

* the sources are the ``--cache-from`` references (tags or IDs) that exist
  locally; a missing one is skipped (moby logs a warning), and with none left
  *nothing* is cached, not even what the local cache holds;
* a local cache hit counts only when it is in the parent chain of a source
  (a source itself, or an image it was built from);
* otherwise a source whose history starts with exactly the parent's history
  (every entry equal, and the parent's layers first) and continues with an
  entry whose ``created_by`` is this step's stands in for it: the source itself
  when that entry is its last, else an image restored from its history and
  layers; from then on only that source is consulted (moby: "avoid jumping to
  different target"). Neither is added to the local cache: moby does not count
  them as built locally.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from runtime.api.errors import CoveError
from runtime.build.layers import Section, restored_image
from runtime.fsutil import write_json_atomic
from runtime.images.store import Image, ImageStore

log = logging.getLogger(__name__)


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


class CacheFrom:
    """The image cache of one build with ``--cache-from`` (moby's ``ImageCache``)."""

    def __init__(self, store: ImageStore, refs: tuple[str, ...] | list[str]) -> None:
        self.store = store
        self.sources = []
        for ref in refs:
            if store.exists(ref):
                self.sources.append(store.get(ref))
            else:
                log.warning("could not look up %s for cache resolution, skipping", ref)

    def get(self, local_hit: Image | None, parent: Image | None, created_by: str,
            section: Section) -> Image | None:
        if local_hit is not None and any(self._in_chain(local_hit.id, source)
                                         for source in self.sources):
            return local_hit
        for target in self.sources:
            found = _from_history(self.store, target, parent, created_by, section)
            if found is None:
                continue
            if found.id != target.id:
                self.sources = [target]
            return found
        return None

    def _in_chain(self, image_id: str, source: Image) -> bool:
        """Whether *image_id* is *source* or one of the images it was built from."""
        current, seen = source.id, set()
        while current and current not in seen:
            if current == image_id:
                return True
            seen.add(current)
            try:
                current = self.store.record(current).parent
            except CoveError:
                return False
        return False


def _history(image: Image | None) -> list[dict[str, Any]]:
    return list(image.config.get("history") or []) if image else []


def _from_history(store: ImageStore, target: Image, parent: Image | None, created_by: str,
                  section: Section) -> Image | None:
    """The image *target*'s history says this step made on *parent*, if it says so."""
    base = _history(parent)
    diff_ids = parent.diff_ids if parent else []
    history = _history(target)
    if len(history) <= len(base) or target.diff_ids[: len(diff_ids)] != diff_ids:
        return None
    if history[: len(base)] != base:
        return None
    entry = history[len(base)]
    if entry.get("created_by") != created_by:
        return None
    layers = len(diff_ids) + (0 if entry.get("empty_layer") else 1)
    if layers > len(target.diff_ids):
        return None
    if len(history) == len(base) + 1 and (target.config.get("config") or {}) == section:
        return target
    return restored_image(store, target, parent, history[: len(base) + 1], layers, section)
