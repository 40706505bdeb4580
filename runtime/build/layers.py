"""New images for build steps: metadata-only (no layer) or one new layer, with docker's history.

Built on the image store's own pieces (content ingest, ``store_layer``,
``ImageStore.add``) rather than ``ImageStore.commit`` because a build step
needs to set the history's ``created_by`` and ``empty_layer`` like docker's
classic builder, and to write a layer from a tar it generated itself (COPY).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from runtime.images.build import store_layer
from runtime.images.difftar import write_tree
from runtime.images.platforms import host
from runtime.images.store import Image, ImageStore, now_rfc3339

Section = dict[str, Any]


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


def empty_base() -> dict[str, Any]:
    """The config of ``FROM scratch``: no layers, no history."""
    plat = host()
    config: dict[str, Any] = {
        "architecture": plat.architecture, "os": plat.os, "config": {},
        "rootfs": {"type": "layers", "diff_ids": []}, "history": [],
    }
    if plat.variant:
        config["variant"] = plat.variant
    return config


def _config(parent: Image | None, section: Section, created_by: str, empty: bool,
            diff_id: str | None) -> dict[str, Any]:
    base = json.loads(json.dumps(parent.config)) if parent else empty_base()
    now = now_rfc3339()
    base.pop("container", None)
    base.pop("container_config", None)
    base["created"] = now
    base["config"] = section
    base.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    if diff_id is not None:
        base["rootfs"]["diff_ids"] = [*base["rootfs"].get("diff_ids", []), diff_id]
    entry: dict[str, Any] = {"created": now, "created_by": created_by}
    if empty:
        entry["empty_layer"] = True
    base["history"] = [*(base.get("history") or []), entry]
    return base


def _dump(config: dict[str, Any]) -> bytes:
    return json.dumps(config, separators=(",", ":")).encode()


def metadata_image(store: ImageStore, parent: Image | None, section: Section,
                   created_by: str) -> Image:
    """An image with the parent's layers and a new config (ENV, CMD, LABEL, ...)."""
    config = _config(parent, section, created_by, True, None)
    layers = list(parent.record.layers) if parent and parent.record else []
    return store.add(_dump(config), layers, parent=parent.id if parent else "")


def layer_image(store: ImageStore, parent: Image | None, section: Section, created_by: str,
                write: Callable[[Writer], None]) -> Image:
    """An image with one more layer, whose uncompressed tar *write* produces."""
    with store.content.ingest() as ing:
        write(ing)
        blob = ing.commit()
    chain = parent.chain_ids if parent else []
    with store.lease(blob):
        layer, info = store_layer(store, blob, chain[-1] if chain else "")
        with store.lease(info.chain_id):
            config = _config(parent, section, created_by, False, info.diff_id)
            layers = [*(parent.record.layers if parent and parent.record else ()), layer]
            return store.add(_dump(config), layers, parent=parent.id if parent else "")


def upper_image(store: ImageStore, parent: Image | None, section: Section, created_by: str,
                upper: Path) -> Image:
    """RUN's result: the container's writable layer, or no layer when it changed nothing."""
    if not any(upper.iterdir()):
        return metadata_image(store, parent, section, created_by)
    return layer_image(store, parent, section, created_by, lambda out: write_tree(upper, out))


def layer_dirs(store: ImageStore, image: Image | None) -> list[Path]:
    """The image's unpacked layer directories, top first (a :class:`LayerTree`'s input)."""
    if image is None:
        return []
    return [store.snapshots.layer_fs(c) for c in reversed(image.chain_ids)]


def restored_image(store: ImageStore, source: Image, parent: Image | None,
                   history: list[dict[str, Any]], layers: int, section: Section) -> Image:
    """The image a step would have made, rebuilt from a longer ``--cache-from`` image."""
    base = json.loads(json.dumps(parent.config)) if parent else empty_base()
    base["config"] = section
    base["history"] = history
    base["created"] = history[-1].get("created") or now_rfc3339()
    base["rootfs"] = {"type": "layers", "diff_ids": source.diff_ids[:layers]}
    blobs = list(source.record.layers[:layers]) if source.record else []
    return store.add(_dump(base), blobs, parent=parent.id if parent else "")
