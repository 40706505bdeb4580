"""Small generated layers and images for the image tests (tarfile, in memory)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from runtime.images import digest as dg
from runtime.images.records import MEDIA_DOCKER_GZIP, LayerBlob
from runtime.images.store import Image, ImageStore


@dataclass
class Entry:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)


def file(name: str, data: bytes = b"", mode: int = 0o644, *, uid: int = 0, gid: int = 0,
         pax: dict[str, str] | None = None) -> Entry:
    return Entry(name, data=data, mode=mode, uid=uid, gid=gid, pax=dict(pax or {}))


def dir_(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target)


def tar_bytes(entries: Sequence[Entry], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.type, info.mode, info.uid, info.gid = e.type, e.mode, e.uid, e.gid
            info.linkname, info.mtime = e.linkname, 1_700_000_000
            info.devmajor, info.devminor = e.devmajor, e.devminor
            info.pax_headers = dict(e.pax)
            if e.type == tarfile.REGTYPE:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def config_for(diff_ids: list[str], **section: object) -> bytes:
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123456789Z",
        "config": dict(section), "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"}
                    for i in range(len(diff_ids))],
    }).encode()


def add_image(store: ImageStore, layer_tars: Sequence[bytes], ref: str | None = None,
              **section: object) -> Image:
    """Store gzip blobs, unpack them and record the image (what a pull ends with)."""
    blobs: list[LayerBlob] = []
    parent = ""
    for raw in layer_tars:
        blob = gz(raw)
        digest = store.content.put(blob)
        with store.content.open(digest) as f:
            info = store.snapshots.apply(parent, f, dg.sha256(raw))
        parent = info.chain_id
        blobs.append(LayerBlob(digest, MEDIA_DOCKER_GZIP, len(blob), info.diff_id))
    config = config_for([b.diff_id for b in blobs], **section)
    return store.add(config, blobs, refs=[ref] if ref else [])
