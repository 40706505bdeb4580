"""The image store: records, references, removal and garbage collection over blobs and snapshots.

An image is a config blob (its sha256 is the image ID), an ordered list of
layer blobs, and the unpacked layer snapshots (by chain ID). References map
names to image IDs. Blobs and layer snapshots are shared; they are freed by
:meth:`ImageStore.gc` once no image record, container snapshot or pull in
progress (a *lease*) needs them.

Heavier verbs live in their own modules and are reached through this facade:
import/commit (:mod:`.build`), save/load (:mod:`.archive`), pull/push
(:mod:`.registry`), rm/prune (:mod:`.remove`).
"""

from __future__ import annotations

import builtins
import collections
import contextlib
import datetime
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from runtime.api import reference
from runtime.api.errors import InvalidArgument, NotFound
from runtime.engine.events import EventBus
from runtime.images import digest as dg
from runtime.images.content import ContentStore
from runtime.images.records import ImageRecord, Index, LayerBlob
from runtime.images.snapshots import Snapshotter
from runtime.layout import EngineLayout
from runtime.spec import Mount

if TYPE_CHECKING:
    from runtime.images.build import LayerSource
    from runtime.images.idshift import IdShift

log = logging.getLogger(__name__)
_HEX_PREFIX = re.compile(r"^(sha256:)?[a-f0-9]{1,64}$")


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    config: dict[str, Any]
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    record: ImageRecord | None = None

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids") or [])

    @property
    def chain_ids(self) -> list[str]:
        return dg.chain_ids(self.diff_ids)

    @property
    def created(self) -> str:
        return str(self.config.get("created") or "")

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})


class Lease:
    """Names (digests, chain IDs) held back from gc; more can be added while it is open."""

    def __init__(self, store: ImageStore, names: list[str]) -> None:
        self._store = store
        self.names = names

    def add(self, name: str) -> str:
        with self._store.lock:
            self._store._leases[name] += 1
            self.names.append(name)
        return name


def now_rfc3339() -> str:
    return rfc3339_nano(time.time_ns())


def rfc3339_nano(ns: int) -> str:
    dt = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


class ImageStore:
    def __init__(self, layout: EngineLayout, events: EventBus) -> None:
        self.layout = layout
        self.events = events
        self.content = ContentStore(layout.content)
        self.snapshots = Snapshotter(layout.snapshots)
        layout.images.mkdir(parents=True, exist_ok=True)
        self._index = Index.load(layout.images / "index.json")
        self.lock = threading.RLock()
        self._config_cache: dict[str, tuple[bytes, int]] = {}
        self._leases: collections.Counter[str] = collections.Counter()
        self.in_use: Callable[[str], list[str]] = lambda image_id: []
        # Set by the engine: whether a container is running (rmi's hard conflict).
        self.is_running: Callable[[str], bool] = lambda container_id: False
        # Engine options the registry client reads.
        self.insecure_registries: tuple[str, ...] = ()
        self.registry_mirrors: tuple[str, ...] = ()
        self.content.clean_ingests()
        self._forget_damaged(self.content.verify())

    def _forget_damaged(self, damaged: builtins.list[str]) -> None:
        """Drop images whose config blob is gone or was damaged on disk, so that the
        next pull fetches them again. A missing layer blob only costs a re-download
        (a pull checks for it) and the unpacked layer still serves containers."""
        lost = [i for i in self._index.images if i in damaged or not self.content.has(i)]
        for image_id in lost:
            log.error("image %s: config blob missing or damaged; removed (pull it again)",
                      image_id)
            for ref in self._index.refs_of(image_id):
                del self._index.refs[ref]
            del self._index.images[image_id]
        if lost:
            self._index.save()

    # -- lookup --
    def get(self, ref_or_id: str) -> Image:
        with self.lock:
            return self._image(self._resolve(ref_or_id)[0])

    def list(self) -> builtins.list[Image]:
        with self.lock:
            return [self._image(i) for i in self._index.images]

    def exists(self, ref_or_id: str) -> bool:
        try:
            self.get(ref_or_id)
        except (NotFound, InvalidArgument):
            return False
        return True

    def _resolve(self, text: str) -> tuple[str, str | None]:
        """(image ID, the normalised reference matched or None when matched by ID)."""
        idx = self._index
        if text.startswith("sha256:") and text in idx.images:
            return text, None
        if len(text) == 64 and ("sha256:" + text) in idx.images:
            return "sha256:" + text, None
        try:
            ref = str(reference.parse(text, default_tag=True))
        except InvalidArgument:
            ref = None
        if ref is not None and ref in idx.refs:
            return idx.refs[ref], ref
        if _HEX_PREFIX.match(text):
            prefix = text if text.startswith("sha256:") else "sha256:" + text
            found = [i for i in idx.images if i.startswith(prefix)]
            if len(found) == 1:
                return found[0], None
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {text}")
        raise NotFound(f"No such image: {text}")

    def _image(self, image_id: str) -> Image:
        record = self._index.images[image_id]
        raw, size = self._config_and_size(image_id)
        config = json.loads(raw)  # a fresh dict per call: callers may change theirs
        refs = self._index.refs_of(image_id)
        tags = tuple(reference.parse(r).familiar() for r in refs if "@" not in r)
        digests = tuple(reference.parse(r).familiar() for r in refs if "@" in r)
        return Image(image_id, config, tags, digests, size, record)

    def _config_and_size(self, image_id: str) -> tuple[bytes, int]:
        """The config blob and layer size, cached: both are fixed by the image's digest.

        Container lists look every container's image up, and reading the blob and
        stat-ing each layer per lookup dominated them.
        """
        cached = self._config_cache.get(image_id)
        if cached is not None:
            return cached
        raw = self.content.read(image_id)
        chains = dg.chain_ids(json.loads(raw).get("rootfs", {}).get("diff_ids") or [])
        present = [c for c in chains if self.snapshots.has_layer(c)]
        size = sum(self.snapshots.layer(c).size for c in present)
        if len(present) == len(chains):  # only a complete image's size is final
            self._config_cache[image_id] = (raw, size)
        return raw, size

    def record(self, image_id: str) -> ImageRecord:
        with self.lock:
            try:
                return self._index.images[image_id]
            except KeyError:
                raise NotFound(f"No such image: {image_id}") from None

    def known_layer(self, diff_id: str) -> LayerBlob | None:
        """A stored blob of the layer *diff_id*, from any image that has one."""
        with self.lock:
            for rec in self._index.images.values():
                for layer in rec.layers:
                    if layer.diff_id == diff_id and self.content.has(layer.digest):
                        return layer
        return None

    def refs_of(self, image_id: str) -> builtins.list[str]:
        with self.lock:
            return self._index.refs_of(image_id)

    # -- adding --
    def add(self, config: bytes, layers: builtins.list[LayerBlob], *, refs: Sequence[str] = (),
            manifest: str = "", parent: str = "") -> Image:
        """Record an image whose config blob, layer blobs and snapshots are already stored."""
        image_id = self.content.put(config)
        diff_ids = json.loads(config).get("rootfs", {}).get("diff_ids") or []
        if [layer.diff_id for layer in layers] != list(diff_ids):
            raise InvalidArgument("image layers do not match the config's rootfs.diff_ids")
        for chain_id in dg.chain_ids(diff_ids):
            if not self.snapshots.has_layer(chain_id):
                raise NotFound(f"layer {chain_id} not unpacked")
        with self.lock:
            old = self._index.images.get(image_id)
            record = ImageRecord(
                image_id, tuple(layers), manifest or (old.manifest if old else ""),
                parent or (old.parent if old else ""),
                old.last_tag_time if old else "", old.added_ns if old else time.time_ns())
            self._index.images[image_id] = record
            for ref in refs:
                self._set_ref(str(reference.parse(ref, default_tag=True)), image_id)
            self._index.save()
            return self._image(image_id)

    def tag(self, ref_or_id: str, new_ref: str) -> Image:
        with self.lock:
            image_id = self._resolve(ref_or_id)[0]
            ref = str(reference.parse(new_ref, default_tag=True))
            self._set_ref(ref, image_id)
            self._index.save()
        self.events.publish("image", "tag", image_id, name=reference.parse(ref).familiar())
        return self.get(image_id)

    def _set_ref(self, ref: str, image_id: str) -> None:
        """Point *ref* at *image_id* (caller holds the lock and saves)."""
        self._index.refs[ref] = image_id
        if "@" not in ref:
            rec = self._index.images[image_id]
            self._index.images[image_id] = rec.with_(last_tag_time=now_rfc3339())

    def add_digest_ref(self, image_id: str, ref: str, *, manifest: str) -> None:
        """Record a pushed manifest: ``name@digest`` and the record's manifest digest."""
        with self.lock:
            self._index.refs[ref] = image_id
            rec = self._index.images[image_id]
            self._index.images[image_id] = rec.with_(manifest=manifest)
            self._index.save()

    def set_layers(self, image_id: str, layers: builtins.list[LayerBlob]) -> None:
        """Swap the layer blobs of an image for equivalent ones (same DiffIDs)."""
        with self.lock:
            rec = self._index.images[image_id]
            if [x.diff_id for x in layers] != [x.diff_id for x in rec.layers]:
                raise InvalidArgument("replacement layers have different DiffIDs")
            self._index.images[image_id] = rec.with_(layers=tuple(layers))
            self._index.save()

    def untag(self, ref: str) -> str:
        """Drop one reference; returns the image ID it pointed to."""
        with self.lock:
            image_id = self._index.refs.pop(ref)
            self._index.save()
        self.events.publish("image", "untag", image_id, name=image_id)
        return image_id

    def drop_record(self, image_id: str) -> None:
        with self.lock:
            for ref in self._index.refs_of(image_id):
                del self._index.refs[ref]
            self._index.images.pop(image_id, None)
            self._index.save()
        self.events.publish("image", "delete", image_id, name=image_id)

    # -- garbage collection --
    @contextlib.contextmanager
    def lease(self, *names: str) -> Iterator[Lease]:
        """Protect blobs / chain IDs a verb is creating from gc until it has recorded them."""
        lease = Lease(self, list(names))
        with self.lock:
            self._leases.update(names)
        try:
            yield lease
        finally:
            with self.lock:
                self._leases.subtract(lease.names)
                self._leases += collections.Counter()  # drop zero counts

    def gc(self) -> tuple[builtins.list[str], int]:
        """Free layers and blobs nothing references; returns (removed chain IDs, bytes)."""
        with self.lock:
            keep_layers, keep_blobs = set(self._leases), set(self._leases)
            for rec in self._index.images.values():
                keep_blobs.add(rec.id)
                if rec.manifest:
                    keep_blobs.add(rec.manifest)
                keep_blobs.update(layer.digest for layer in rec.layers)
                keep_layers.update(dg.chain_ids([layer.diff_id for layer in rec.layers]))
            for key in self.snapshots.active_keys():
                keep_layers.update(self.snapshots.active_chain(key))
            freed, removed = 0, []
            for info in self.snapshots.layers():
                if info.chain_id not in keep_layers:
                    freed += info.size
                    removed.append(info.chain_id)
                    self.snapshots.remove_layer(info.chain_id)
            for blob in self.content.digests() - keep_blobs:
                self.content.delete(blob)
            return removed, freed

    # -- container snapshots --
    def prepare_rootfs(self, container_id: str, image: Image) -> tuple[Mount, ...]:
        with self.lock:
            return (self.snapshots.prepare(container_id, image.chain_ids),)

    def remove_rootfs(self, container_id: str) -> None:
        with self.lock:
            self.snapshots.remove_active(container_id)

    def rootfs_upper(self, container_id: str) -> Path:
        return self.snapshots.upper(container_id)

    def rootfs_view(self, container_id: str
                    ) -> contextlib.AbstractContextManager[Path]:
        """The container's merged root, mounted privately for the duration (export, cp)."""
        from runtime.images.view import mounted_view

        chain = self.snapshots.active_chain(container_id)
        return mounted_view(self.snapshots.mount(container_id, chain))

    # -- layering (the builder's API) --
    def add_layer(self, parent: Image | None, source: LayerSource, config: dict[str, Any],
                  history: dict[str, Any], *, refs: Sequence[str] = ()) -> Image:
        """A child of *parent* with one more layer; see :func:`.build.add_layer`."""
        from runtime.images.build import add_layer

        return add_layer(self, parent, source, config, history, refs=refs)

    def add_empty_layer(self, parent: Image | None, config: dict[str, Any],
                        history: dict[str, Any], *, refs: Sequence[str] = ()) -> Image:
        """A child of *parent* with a new config and no new layer (ENV, CMD, ...)."""
        from runtime.images.build import add_empty_layer

        return add_empty_layer(self, parent, config, history, refs=refs)

    def layer_dirs(self, image: Image | None) -> builtins.list[Path]:
        """The image's unpacked layer directories (read-only), top first."""
        if image is None:
            return []
        return [self.snapshots.layer_fs(c) for c in reversed(image.chain_ids)]

    def children(self, image_id: str) -> builtins.list[str]:
        """Images recorded as built or committed on top of *image_id*."""
        with self.lock:
            return [i for i, rec in self._index.images.items() if rec.parent == image_id]

    # -- the verbs in other modules --
    def delete(self, ref_or_id: str, *, force: bool = False) -> builtins.list[dict[str, str]]:
        from runtime.images.remove import delete

        return delete(self, ref_or_id, force=force)

    def prune(self, filters: dict[str, builtins.list[str]]) -> dict[str, Any]:
        from runtime.images.remove import prune

        return prune(self, filters)

    def import_tar(self, stream: BinaryIO, ref: str | None, changes: builtins.list[str],
                   message: str) -> Image:
        from runtime.images.build import import_tar

        return import_tar(self, stream, ref, changes, message)

    def commit(self, container_id: str, parent: Image, *, ref: str | None,
               changes: builtins.list[str], comment: str, author: str,
               config_overrides: dict[str, Any] | None, shift: IdShift | None = None) -> Image:
        """*shift*: a remapped container's maps; its layer then records its own ids."""
        from runtime.images.build import commit

        return commit(self, container_id, parent, ref=ref, changes=changes, comment=comment,
                      author=author, config_overrides=config_overrides, shift=shift)
