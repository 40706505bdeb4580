"""New images from one new layer plus a config: ``docker import``, ``docker commit`` and the
public layering API the builder uses (:func:`add_layer`, :func:`add_empty_layer`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from runtime.api import reference
from runtime.images.changes import apply_changes
from runtime.images.compression import sniff
from runtime.images.difftar import Writer, write_tree
from runtime.images.platforms import host
from runtime.images.records import LAYER_MEDIA, LayerBlob
from runtime.images.snapshots import LayerInfo

if TYPE_CHECKING:
    from runtime.images.idshift import IdShift
    from runtime.images.store import Image, ImageStore

# A new layer: a function writing its uncompressed tar, or a stream of the tar (maybe
# compressed), copied as is.
LayerSource = Callable[[Writer], None] | BinaryIO
_HISTORY_KEYS = ("created", "created_by", "author", "comment")


def _ref(ref: str | None) -> list[str]:
    return [str(reference.parse(ref, default_tag=True))] if ref else []


def store_layer(store: ImageStore, blob: str, parent: str, diff_id: str | None = None
                ) -> tuple[LayerBlob, LayerInfo]:
    """Unpack the stored *blob* above chain *parent*; the caller holds a lease on *blob*."""
    with store.content.open(blob) as f:
        info = store.snapshots.apply(parent, f, diff_id)
    return blob_layer(store, blob, info.diff_id), info


def blob_layer(store: ImageStore, blob: str, diff_id: str) -> LayerBlob:
    """The record of a stored layer blob; its media type from its compression."""
    with store.content.open(blob) as f:
        kind = sniff(f.read(4))
    return LayerBlob(blob, LAYER_MEDIA[kind], store.content.size(blob), diff_id)


def empty_config() -> dict[str, Any]:
    """The config of an image with no layers and no history (``FROM scratch``)."""
    plat = host()
    config: dict[str, Any] = {
        "architecture": plat.architecture, "os": plat.os, "config": {},
        "rootfs": {"type": "layers", "diff_ids": []}, "history": [],
    }
    if plat.variant:
        config["variant"] = plat.variant
    return config


def child_config(parent: Image | None, section: dict[str, Any], history: dict[str, Any],
                 diff_id: str | None) -> dict[str, Any]:
    """*parent*'s config with a new ``config`` section, one more history entry and
    (unless *diff_id* is None: a metadata-only step) one more layer."""
    from runtime.images.store import now_rfc3339

    base = json.loads(json.dumps(parent.config)) if parent else empty_config()
    now = str(history.get("created") or now_rfc3339())
    base.pop("container", None)
    base.pop("container_config", None)
    base["created"] = now
    base["config"] = section
    # The image's author is the commit's (docker's builder: the stage's MAINTAINER), not
    # inherited from the parent.
    if history.get("author"):
        base["author"] = history["author"]
    else:
        base.pop("author", None)
    base.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    if diff_id is not None:
        base["rootfs"]["diff_ids"] = [*base["rootfs"].get("diff_ids", []), diff_id]
    entry = {k: history[k] for k in _HISTORY_KEYS if history.get(k)} | {"created": now}
    if diff_id is None:
        entry["empty_layer"] = True
    base["history"] = [*(base.get("history") or []), entry]
    return base


def add_empty_layer(store: ImageStore, parent: Image | None, config: dict[str, Any],
                    history: dict[str, Any], *, refs: Sequence[str] = ()) -> Image:
    """An image with *parent*'s layers, the ``config`` section *config* and a history
    entry (``created_by``, ``comment``, ``author``) marked ``empty_layer``."""
    full = child_config(parent, config, history, None)
    layers = list(parent.record.layers) if parent and parent.record else []
    return store.add(_dump(full), layers, refs=refs, parent=parent.id if parent else "")


def add_layer(store: ImageStore, parent: Image | None, source: LayerSource,
              config: dict[str, Any], history: dict[str, Any], *,
              refs: Sequence[str] = ()) -> Image:
    """An image with one more layer above *parent*'s, from *source* (see LayerSource)."""
    with store.content.ingest() as ing:
        if callable(source):
            source(ing)
        else:
            ing.copy_from(source)
        blob = ing.commit()
    chain = parent.chain_ids if parent else []
    with store.lease(blob):
        layer, info = store_layer(store, blob, chain[-1] if chain else "")
        with store.lease(info.chain_id):
            full = child_config(parent, config, history, info.diff_id)
            layers = [*(parent.record.layers if parent and parent.record else ()), layer]
            return store.add(_dump(full), layers, refs=refs, parent=parent.id if parent else "")


def import_tar(store: ImageStore, stream: BinaryIO, ref: str | None, changes: list[str],
               message: str) -> Image:
    from runtime.images.store import now_rfc3339

    refs = _ref(ref)  # validate before reading a possibly large body
    config_section = apply_changes({}, changes)
    with store.content.ingest() as ing:
        ing.copy_from(stream)
        blob = ing.commit()
    with store.lease(blob):
        layer, info = store_layer(store, blob, "")
        with store.lease(info.chain_id):
            now = now_rfc3339()
            plat = host()
            config: dict[str, Any] = {
                "architecture": plat.architecture, "os": plat.os, "created": now,
                "config": config_section,
                "rootfs": {"type": "layers", "diff_ids": [info.diff_id]},
                "history": [{"created": now, "comment": message or "Imported from -"}],
            }
            if plat.variant:
                config["variant"] = plat.variant
            image = store.add(_dump(config), [layer], refs=refs)
    store.events.publish("image", "import", image.id, name=image.id)
    return image


def commit(store: ImageStore, container_id: str, parent: Image, *, ref: str | None,
           changes: list[str], comment: str, author: str,
           config_overrides: dict[str, Any] | None, shift: IdShift | None = None) -> Image:
    from runtime.images.store import now_rfc3339

    refs = _ref(ref)
    base = dict(parent.config.get("config") or {})
    base.update(config_overrides or {})
    section = apply_changes(base, changes)
    with store.content.ingest() as ing:
        write_tree(store.rootfs_upper(container_id), ing, shift=shift)
        blob = ing.commit()
    chain = parent.chain_ids
    with store.lease(blob):
        layer, info = store_layer(store, blob, chain[-1] if chain else "")
        with store.lease(info.chain_id):
            now = now_rfc3339()
            config = json.loads(json.dumps(parent.config))
            config.update(created=now, config=section, container=container_id)
            config.pop("container_config", None)
            if author:
                config["author"] = author
            if comment:
                config["comment"] = comment
            config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
            config["rootfs"]["diff_ids"] = [*parent.diff_ids, info.diff_id]
            entry = {"created": now, "author": author, "comment": comment}
            config["history"] = [*config.get("history", []),
                                 {k: v for k, v in entry.items() if v}]
            layers = [*(parent.record.layers if parent.record else ()), layer]
            image = store.add(_dump(config), layers, refs=refs, parent=parent.id)
    return image


def _dump(config: dict[str, Any]) -> bytes:
    return json.dumps(config, separators=(",", ":")).encode()
