"""``docker save`` / ``docker load``: docker-archive and OCI image layout in one tar.

Saved like Docker 25+: ``blobs/sha256/<hex>`` holds configs, OCI manifests and
*uncompressed* layer tars (named by DiffID), ``index.json`` + ``oci-layout``
make it an OCI layout (skopeo ``oci-archive:``), ``manifest.json`` +
``repositories`` make it a docker-archive (``docker load``, skopeo
``docker-archive:``). The tar is streamed: layer sizes come from the snapshot
records, so nothing is staged on disk.

Load reads either format (and the pre-25 ``<id>/layer.tar`` one) in one pass:
every file goes into the content store (verified when named by digest), the
small JSON documents stay in memory, and the images are assembled at the end.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from runtime.api import reference
from runtime.api.errors import InvalidArgument, NotFound
from runtime.images import digest as dg
from runtime.images.build import blob_layer, store_layer
from runtime.images.compression import HashingReader, decompressed
from runtime.images.records import LayerBlob

if TYPE_CHECKING:
    from runtime.images.store import Image, ImageStore, Lease

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_DOCS = {"manifest.json", "index.json", "repositories", "oci-layout"}
_MAX_DOC = 64 << 20
_CHUNK = 1 << 20


# -- save --
def save(store: ImageStore, names: list[str]) -> Iterator[bytes]:
    """The tar stream of *names* (references or IDs); raises NotFound before any byte."""
    chosen: list[tuple[Image, list[str]]] = []
    for name in names:
        image = store.get(name)
        tags = _tags_for(store, name, image)
        for i, (img, t) in enumerate(chosen):
            if img.id == image.id:
                chosen[i] = (img, t + [x for x in tags if x not in t])
                break
        else:
            chosen.append((image, tags))
    return _save_stream(store, chosen)


def _tags_for(store: ImageStore, name: str, image: Image) -> list[str]:
    _, matched = store._resolve(name)
    if matched is None or "@" in matched:
        return []
    return [matched]


def _save_stream(store: ImageStore, chosen: list[tuple[Image, list[str]]]) -> Iterator[bytes]:
    written: set[str] = set()
    manifests, index_entries = [], []
    repositories: dict[str, dict[str, str]] = {}
    yield _dir("blobs/")
    yield _dir("blobs/sha256/")
    for image, tags in chosen:
        config = store.content.read(image.id)
        yield from _blob_once(written, image.id, config)
        for diff_id, blob in zip(image.diff_ids, _layer_blobs(store, image), strict=True):
            if diff_id not in written:
                written.add(diff_id)
                yield from _layer_member(store, image, diff_id, blob)
        manifest = _oci_manifest(store, image, config)
        mdigest = dg.sha256(manifest)
        yield from _blob_once(written, mdigest, manifest)
        familiar = [reference.parse(t).familiar() for t in tags]
        manifests.append({"Config": _blob_path(image.id), "RepoTags": familiar or None,
                          "Layers": [_blob_path(d) for d in image.diff_ids]})
        for t in tags:
            ref = reference.parse(t)
            repositories.setdefault(ref.familiar_name, {})[ref.tag or "latest"] = (
                dg.hex_of(image.diff_ids[-1]) if image.diff_ids else "")
            index_entries.append(_index_entry(mdigest, len(manifest), ref))
        if not tags:
            index_entries.append({"mediaType": MEDIA_OCI_MANIFEST, "digest": mdigest,
                                  "size": len(manifest)})
    index = {"schemaVersion": 2, "mediaType": MEDIA_OCI_INDEX, "manifests": index_entries}
    yield from _file("index.json", json.dumps(index).encode())
    yield from _file("manifest.json", json.dumps(manifests).encode())
    yield from _file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    if repositories:
        yield from _file("repositories", json.dumps(repositories).encode())
    yield b"\0" * 1024


def _index_entry(mdigest: str, size: int, ref: reference.Reference) -> dict[str, Any]:
    return {"mediaType": MEDIA_OCI_MANIFEST, "digest": mdigest, "size": size,
            "annotations": {"io.containerd.image.name": str(ref),
                            "org.opencontainers.image.ref.name": ref.tag or "latest"}}


def _layer_blobs(store: ImageStore, image: Image) -> list[LayerBlob]:
    record = image.record or store.record(image.id)
    return list(record.layers)


def _oci_manifest(store: ImageStore, image: Image, config: bytes) -> bytes:
    layers = []
    for diff_id, chain in zip(image.diff_ids, image.chain_ids, strict=True):
        layers.append({"mediaType": MEDIA_OCI_LAYER, "digest": diff_id,
                       "size": store.snapshots.layer(chain).tar_size})
    return json.dumps({
        "schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": image.id, "size": len(config)},
        "layers": layers,
    }).encode()


def _layer_member(store: ImageStore, image: Image, diff_id: str, blob: LayerBlob
                  ) -> Iterator[bytes]:
    chain = image.chain_ids[image.diff_ids.index(diff_id)]
    size = store.snapshots.layer(chain).tar_size
    yield _header(_blob_path(diff_id), size)
    with store.content.open(blob.digest) as f:
        raw, _ = decompressed(f)
        reader = HashingReader(raw)
        sent = 0
        buf = bytearray(_CHUNK)
        while n := reader.readinto(buf):
            if sent + n > size:
                raise InvalidArgument(f"layer {diff_id} is larger than recorded")
            sent += n
            yield bytes(buf[:n])
        raw.close()
    if sent != size or reader.digest != diff_id:
        raise InvalidArgument(f"layer {diff_id} does not match its blob {blob.digest}")
    yield _pad(size)


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + dg.hex_of(digest)


def _blob_once(written: set[str], digest: str, data: bytes) -> Iterator[bytes]:
    if digest not in written:
        written.add(digest)
        yield from _file(_blob_path(digest), data)


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE, mode: int = 0o444) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
    return info.tobuf(tarfile.PAX_FORMAT)


def _dir(name: str) -> bytes:
    return _header(name, 0, tarfile.DIRTYPE, 0o755)


def _pad(size: int) -> bytes:
    return b"\0" * (-size % 512)


def _file(name: str, data: bytes) -> Iterator[bytes]:
    yield _header(name, len(data)) + data + _pad(len(data))


# -- load --
@dataclass
class _Loaded:
    paths: dict[str, str] = field(default_factory=dict)  # archive path -> blob digest
    links: dict[str, str] = field(default_factory=dict)  # symlinked path -> target path
    docs: dict[str, bytes] = field(default_factory=dict)

    def digest_of(self, path: str) -> str:
        path = self.links.get(path, path)
        try:
            return self.paths[path]
        except KeyError:
            raise InvalidArgument(f"invalid archive: {path} is missing") from None


def load(store: ImageStore, stream: BinaryIO) -> list[str]:
    """Load every image in the archive; returns the lines moby prints ("Loaded image: x")."""
    loaded = _Loaded()
    with store.lease() as lease:
        try:
            _read_archive(store, stream, loaded, lease)
            images = _images_in(store, loaded)
        except (tarfile.TarError, EOFError) as e:
            raise InvalidArgument(f"invalid archive: {e}") from None
        lines = [line for spec in images for line in _load_image(store, *spec)]
    store.gc()
    return lines


def _read_archive(store: ImageStore, stream: BinaryIO, loaded: _Loaded, lease: Lease) -> None:
    raw, _ = decompressed(stream)
    with tarfile.open(fileobj=raw, mode="r|", bufsize=1 << 16) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.issym() or member.islnk():
                base = name.rsplit("/", 1)[0] + "/" if "/" in name and member.issym() else ""
                loaded.links[name] = _normalise(base + member.linkname)
            elif not member.isreg():
                continue
            elif name in _DOCS or (name.endswith(".json") and "/" not in name
                                   and member.size < _MAX_DOC and not _is_blob(name)):
                f = tar.extractfile(member)
                assert f is not None
                data = f.read(_MAX_DOC + 1)
                loaded.docs[name] = data
                loaded.paths[name] = lease.add(store.content.put(data))
            else:
                loaded.paths[name] = lease.add(_ingest_member(store, tar, member, name))
    raw.close()


def _normalise(path: str) -> str:
    parts: list[str] = []
    for p in path.split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p not in ("", "."):
            parts.append(p)
    return "/".join(parts)


def _is_blob(name: str) -> bool:
    return name.startswith("blobs/sha256/")


def _ingest_member(store: ImageStore, tar: tarfile.TarFile, member: tarfile.TarInfo,
                   name: str) -> str:
    expected = "sha256:" + name.rsplit("/", 1)[1] if _is_blob(name) else None
    if expected is not None and store.content.has(expected):
        return expected
    f = tar.extractfile(member)
    assert f is not None
    with store.content.ingest(expected, member.size) as ing:
        ing.copy_from(f)  # type: ignore[arg-type]
        return ing.commit()


def _images_in(store: ImageStore, loaded: _Loaded) -> list[tuple[str, list[str], list[str]]]:
    """(config digest, layer digests, references) for each image in the archive."""
    if "manifest.json" in loaded.docs:
        out = []
        for entry in json.loads(loaded.docs["manifest.json"]):
            config = loaded.digest_of(entry["Config"])
            layers = [loaded.digest_of(p) for p in entry.get("Layers") or []]
            out.append((config, layers, list(entry.get("RepoTags") or [])))
        return out
    if "index.json" in loaded.docs:
        return _oci_images(store, json.loads(loaded.docs["index.json"]), "")
    raise InvalidArgument("invalid archive: no manifest.json or index.json "
                          "(is it a docker save / OCI archive?)")


def _oci_images(store: ImageStore, index: dict[str, Any], name: str
                ) -> list[tuple[str, list[str], list[str]]]:
    from runtime.images.platforms import host

    out: list[tuple[str, list[str], list[str]]] = []
    plat = host()
    for desc in index.get("manifests") or []:
        notes = desc.get("annotations") or {}
        ref = notes.get("io.containerd.image.name") or name
        if not ref and "org.opencontainers.image.ref.name" in notes:
            ref = notes["org.opencontainers.image.ref.name"]
        doc = json.loads(store.content.read(dg.check(desc["digest"])))
        if "manifests" in doc:
            out += _oci_images(store, doc, ref)
            continue
        if "platform" in desc and not plat.matches(desc["platform"]):
            continue
        layers = [dg.check(layer["digest"]) for layer in doc.get("layers") or []]
        refs = [ref] if ref and _valid_ref(ref) else []
        out.append((dg.check(doc["config"]["digest"]), layers, refs))
    return out


def _valid_ref(text: str) -> bool:
    try:
        reference.parse(text)
    except InvalidArgument:
        return False
    return True


def _load_image(store: ImageStore, config_digest: str, layer_digests: list[str],
                refs: list[str]) -> list[str]:
    try:
        config = store.content.read(config_digest)
    except NotFound:
        raise InvalidArgument(f"invalid archive: config {config_digest} missing") from None
    diff_ids = json.loads(config).get("rootfs", {}).get("diff_ids") or []
    if len(diff_ids) != len(layer_digests):
        raise InvalidArgument("invalid archive: layer count does not match the config")
    layers, parent = [], ""
    for blob, diff_id in zip(layer_digests, diff_ids, strict=True):
        chain = dg.chain_ids([parent, diff_id])[1] if parent else diff_id
        with store.lease(chain):
            if store.snapshots.has_layer(chain):
                layers.append(blob_layer(store, blob, diff_id))
            else:
                layer, _info = store_layer(store, blob, parent, diff_id)
                layers.append(layer)
        parent = chain
    with store.lease(*dg.chain_ids(diff_ids)):
        image = store.add(config, layers, refs=refs)
    store.events.publish("image", "load", image.id, name=image.id)
    if refs:
        return [f"Loaded image: {reference.parse(r).familiar()}" for r in refs]
    return [f"Loaded image ID: {image.id}"]
