"""New images for build steps: metadata-only (no layer) or one new layer, with docker's history.

Built on the image store's public layering API (:meth:`ImageStore.add_layer`,
:meth:`ImageStore.add_empty_layer`), which records ``created_by`` and
``empty_layer`` like docker's classic builder and takes a layer tar we write
ourselves (COPY, RUN's upper dir).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from runtime.images.build import empty_config
from runtime.images.difftar import write_tree
from runtime.images.idshift import IdShift
from runtime.images.store import Image, ImageStore, now_rfc3339

Section = dict[str, Any]


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


def empty_base() -> dict[str, Any]:
    """The config of ``FROM scratch``: no layers, no history."""
    return empty_config()


def _dump(config: dict[str, Any]) -> bytes:
    return json.dumps(config, separators=(",", ":")).encode()


def _history(created_by: str, author: str) -> dict[str, Any]:
    # The stage's MAINTAINER is every later step's author (history and config), as moby
    # commits each step with the dispatch state's maintainer.
    return {"created_by": created_by, "author": author} if author else {"created_by": created_by}


def metadata_image(store: ImageStore, parent: Image | None, section: Section,
                   created_by: str, author: str = "") -> Image:
    """An image with the parent's layers and a new config (ENV, CMD, LABEL, ...)."""
    return store.add_empty_layer(parent, section, _history(created_by, author))


def layer_image(store: ImageStore, parent: Image | None, section: Section, created_by: str,
                write: Callable[[Writer], None], author: str = "") -> Image:
    """An image with one more layer, whose uncompressed tar *write* produces."""
    return store.add_layer(parent, write, section, _history(created_by, author))


def upper_image(store: ImageStore, parent: Image | None, section: Section, created_by: str,
                upper: Path, author: str = "", shift: IdShift | None = None) -> Image:
    """RUN's result: the container's writable layer, or no layer when it changed nothing.
    *shift*: the RUN container was remapped; the layer records its ids, not the host's."""
    if not any(upper.iterdir()):
        return metadata_image(store, parent, section, created_by, author)
    return layer_image(store, parent, section, created_by,
                       lambda out: write_tree(upper, out, shift=shift), author)


def layer_dirs(store: ImageStore, image: Image | None) -> list[Path]:
    """The image's unpacked layer directories, top first (a :class:`LayerTree`'s input)."""
    return store.layer_dirs(image)


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
