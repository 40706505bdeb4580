"""Image records and references, persisted as one JSON index written atomically.

``images/index.json`` holds every image record (by image ID) and every
reference (``docker.io/library/busybox:latest`` or ``...@sha256:..`` → image
ID). The image's config, manifest and layer blobs live in the content store;
a record only names them, so the index stays small and a rewrite is cheap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from runtime.fsutil import write_json_atomic

MEDIA_DOCKER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
LAYER_MEDIA = {
    "none": MEDIA_DOCKER_TAR, "gzip": MEDIA_DOCKER_GZIP, "zstd": MEDIA_OCI_ZSTD,
}


@dataclass(frozen=True, slots=True)
class LayerBlob:
    """A layer as stored and distributed: its blob (maybe compressed) and its DiffID."""

    digest: str
    media_type: str
    size: int
    diff_id: str


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: str
    layers: tuple[LayerBlob, ...] = ()
    manifest: str = ""  # digest of the manifest pulled or pushed last ("" if none)
    parent: str = ""  # image committed from (Docker's "Parent")
    last_tag_time: str = ""  # RFC 3339, Metadata.LastTagTime
    added_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> ImageRecord:
        layers = tuple(LayerBlob(**layer) for layer in data.get("layers", ()))
        return ImageRecord(**{**data, "layers": layers})

    def with_(self, **changes: Any) -> ImageRecord:
        return replace(self, **changes)


@dataclass
class Index:
    """The mutable in-memory index; the store saves it after every change (under its lock)."""

    path: Path
    images: dict[str, ImageRecord] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def load(path: Path) -> Index:
        index = Index(path)
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return index
        index.images = {k: ImageRecord.from_json(v) for k, v in data["images"].items()}
        index.refs = dict(data["refs"])
        return index

    def save(self) -> None:
        write_json_atomic(self.path, {
            "images": {k: v.to_json() for k, v in self.images.items()},
            "refs": self.refs,
        })

    def refs_of(self, image_id: str) -> list[str]:
        return sorted(r for r, i in self.refs.items() if i == image_id)
