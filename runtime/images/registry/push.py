"""``docker push``: layers (HEAD check, cross-repo mount, monolithic or chunked upload), config,
then the manifest; progress as moby prints it. Uncompressed layers (import, commit,
load) are gzipped into the content store once, before their first push.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from runtime.api import reference
from runtime.api.errors import CoveError, NotFound
from runtime.api.reference import Reference
from runtime.images import digest as dg
from runtime.images.records import (
    MEDIA_DOCKER_GZIP,
    MEDIA_DOCKER_TAR,
    MEDIA_OCI_GZIP,
    MEDIA_OCI_TAR,
    LayerBlob,
)
from runtime.images.registry.auth import Authorizer, Credentials
from runtime.images.registry.client import Transport, check
from runtime.images.registry.progress import Message, Throttle, progress, status
from runtime.images.registry.pull import MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST

if TYPE_CHECKING:
    from runtime.images.store import Image, ImageStore

MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
CHUNK = 16 << 20  # blobs above this go up in PATCH chunks of this size
_BLOCK = 1 << 20  # what a body read hands http.client at a time
WORKERS = 5
_TO_OCI = {MEDIA_DOCKER_GZIP: MEDIA_OCI_GZIP, MEDIA_DOCKER_TAR: MEDIA_OCI_TAR}


def push_messages(store: ImageStore, ref: Reference, creds: Credentials | None, *,
                  all_tags: bool = False) -> Iterator[Message]:
    refs = _refs_to_push(store, ref, all_tags)
    sources = _mount_sources(store, refs)
    scopes = [f"repository:{ref.path}:pull,push"] + [f"repository:{s}:pull" for s in sources]
    auth = Authorizer(creds, scopes)
    t = Transport(store, ref.domain, auth, for_pull=False)
    try:
        yield status(f"The push refers to repository [{ref.name}]")
        for r in refs:
            yield from _push_one(store, r, t, sources)
    finally:
        t.close()


def _refs_to_push(store: ImageStore, ref: Reference, all_tags: bool) -> list[Reference]:
    if not all_tags:
        target = ref if ref.tag or ref.digest else ref.with_tag("latest")
        if not store.exists(str(target)):
            raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
        return [target]
    found = sorted({reference.parse(r) for i in store.list() for r in store.refs_of(i.id)
                    if "@" not in r and reference.parse(r).name == ref.name}, key=str)
    if not found:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    return found


def _mount_sources(store: ImageStore, refs: list[Reference]) -> list[str]:
    """Other repositories on the same registry that hold this image (cross-repo mount)."""
    out: set[str] = set()
    for r in refs:
        for other in store.refs_of(store.get(str(r)).id):
            o = reference.parse(other)
            if o.domain == r.domain and o.path != r.path:
                out.add(o.path)
    return sorted(out)


def _push_one(store: ImageStore, ref: Reference, t: Transport, sources: list[str]
              ) -> Iterator[Message]:
    image = store.get(str(ref))
    layers = compressed_layers(store, image)
    messages: queue.Queue[Message] = queue.Queue()
    for layer in layers:
        yield status("Preparing", dg.short(layer.diff_id))
    yield from _parallel([lambda layer=layer: _push_layer(store, t, ref, layer, sources,  # type: ignore[misc]
                                                          messages.put)
                          for layer in layers], messages)
    config = store.content.read(image.id)
    _upload_if_missing(store, t, ref.path, image.id, len(config), lambda n: None)
    body, media = _manifest(store, image, layers, config)
    resp = t.request("PUT", f"/v2/{ref.path}/manifests/{ref.tag or ref.digest}",
                     {"Content-Type": media, "Content-Length": str(len(body))}, body)
    check(resp, resp.read(1 << 16), f"push manifest {ref.familiar()}")
    digest = dg.sha256(body)
    store.content.put(body)
    store.add_digest_ref(image.id, f"{ref.name}@{digest}", manifest=digest)
    store.events.publish("image", "push", ref.familiar(), name=ref.familiar())
    tag = ref.tag or ""
    yield status(f"{tag}: digest: {digest} size: {len(body)}")
    yield {"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(body)}}


def _parallel(tasks: list[Callable[[], None]], messages: queue.Queue[Message]
              ) -> Iterator[Message]:
    """Run *tasks* on threads, yielding their progress messages as they come."""
    pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="push")
    try:
        pending = {pool.submit(task) for task in tasks}
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=0.1)
            yield from _drain(messages)
            for f in done:
                f.result()
        yield from _drain(messages)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _drain(messages: queue.Queue[Message]) -> Iterator[Message]:
    while True:
        try:
            yield messages.get_nowait()
        except queue.Empty:
            return


def _push_layer(store: ImageStore, base: Transport, ref: Reference, layer: LayerBlob,
                sources: list[str], emit: Callable[[Message], None]) -> None:
    short = dg.short(layer.diff_id)
    t = Transport(store, ref.domain, base.auth, at=base.resolved())
    try:
        if _exists(t, ref.path, layer.digest):
            emit(status("Layer already exists", short))
            return
        for source in sources:
            if _mount(t, ref.path, layer.digest, source):
                emit(status(f"Mounted from {source}", short))
                return
        throttle = Throttle()

        def pushing(n: int) -> None:
            if throttle.ready() or n == layer.size:
                emit(progress("Pushing", short, n, layer.size))

        _upload(store, t, ref.path, layer.digest, layer.size, pushing)
        emit(status("Pushed", short))
    except CoveError:
        raise
    except Exception as e:
        raise CoveError(f"push layer {short}: {e}") from None
    finally:
        t.close()


def _exists(t: Transport, path: str, digest: str) -> bool:
    resp = t.request("HEAD", f"/v2/{path}/blobs/{digest}")
    resp.read()
    return resp.status == 200


def _mount(t: Transport, path: str, digest: str, source: str) -> bool:
    query = urllib.parse.urlencode({"mount": digest, "from": source})
    resp = t.request("POST", f"/v2/{path}/blobs/uploads/?{query}", {"Content-Length": "0"}, b"")
    resp.read()
    return resp.status == 201


def _upload_if_missing(store: ImageStore, t: Transport, path: str, digest: str, size: int,
                       report: Callable[[int], None]) -> None:
    if not _exists(t, path, digest):
        _upload(store, t, path, digest, size, report)


def _upload(store: ImageStore, t: Transport, path: str, digest: str, size: int,
            report: Callable[[int], None]) -> None:
    resp = t.request("POST", f"/v2/{path}/blobs/uploads/", {"Content-Length": "0"}, b"")
    check(resp, resp.read(1 << 16), f"start upload of {dg.short(digest)}")
    location = _location(resp.getheader("Location", ""))
    with store.content.open(digest) as f:
        if size > CHUNK:
            location = _patch_chunks(t, location, f, size, report)
            body: bytes | BinaryIO = b""
            length = 0
        else:
            body, length = _Reporting(f, report), size  # type: ignore[assignment]
        resp = t.request("PUT", _with_query(location, {"digest": digest}),
                         {"Content-Type": "application/octet-stream",
                          "Content-Length": str(length)}, body)
        check(resp, resp.read(1 << 16), f"upload {dg.short(digest)}")


def _patch_chunks(t: Transport, location: str, f: BinaryIO, size: int,
                  report: Callable[[int], None]) -> str:
    sent = 0
    while sent < size:
        length = min(CHUNK, size - sent)
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{sent}-{sent + length - 1}",
                   "Content-Length": str(length)}
        # Streamed from the file, a block at a time: never a whole chunk in memory
        # (five threads holding 16 MiB chunks were most of a push's peak RSS).
        body = _Reporting(f, _offset(report, sent), start=sent, length=length)
        resp = t.request("PATCH", location, headers, cast(BinaryIO, body))
        check(resp, resp.read(1 << 16), "upload chunk")
        location = _location(resp.getheader("Location", "") or location)
        sent += length
    return location


def _offset(report: Callable[[int], None], base: int) -> Callable[[int], None]:
    return lambda n: report(base + n)


def _location(value: str) -> str:
    """Registries answer absolute or relative Locations; we keep path + query."""
    parts = urllib.parse.urlsplit(value)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _with_query(location: str, extra: dict[str, str]) -> str:
    sep = "&" if "?" in location else "?"
    return location + sep + urllib.parse.urlencode(extra)


class _Reporting:
    """A file body for http.client: the window [start, start+length) of *f*, read a
    block at a time, reporting how much has been sent; seek(0) rewinds it for a retry."""

    def __init__(self, f: BinaryIO, report: Callable[[int], None], *, start: int = 0,
                 length: int | None = None) -> None:
        self._f, self._report, self._n = f, report, 0
        self._start, self._length = start, length
        f.seek(start)

    def read(self, n: int = -1) -> bytes:
        n = n if n and n > 0 else _BLOCK
        if self._length is not None:
            n = min(n, self._length - self._n)
        data = self._f.read(n) if n > 0 else b""
        self._n += len(data)
        self._report(self._n)
        return data

    def seek(self, pos: int) -> None:
        self._f.seek(self._start + pos)
        self._n = pos


def compressed_layers(store: ImageStore, image: Image) -> list[LayerBlob]:
    """The image's layers as gzip blobs, compressing (and recording) uncompressed ones."""
    record = store.record(image.id)
    out = []
    for layer in record.layers:
        if layer.media_type in (MEDIA_DOCKER_TAR, MEDIA_OCI_TAR):
            layer = _gzip_blob(store, layer)
        out.append(layer)
    if out != list(record.layers):
        store.set_layers(image.id, out)
    return out


def _gzip_blob(store: ImageStore, layer: LayerBlob) -> LayerBlob:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)
    with store.content.open(layer.digest) as src, store.content.ingest() as ing:
        while chunk := src.read(1 << 20):
            ing.write(z.compress(chunk))
        ing.write(z.flush())
        size = ing.offset
        digest = ing.commit()
    return LayerBlob(digest, MEDIA_DOCKER_GZIP, size, layer.diff_id)


def _manifest(store: ImageStore, image: Image, layers: list[LayerBlob], config: bytes
              ) -> tuple[bytes, str]:
    record = store.record(image.id)
    if record.manifest and store.content.has(record.manifest):
        body = store.content.read(record.manifest)
        doc: dict[str, Any] = json.loads(body)
        if (doc.get("config", {}).get("digest") == image.id
                and [x.get("digest") for x in doc.get("layers", [])] == [x.digest for x in layers]):
            return body, str(doc.get("mediaType") or MEDIA_DOCKER_MANIFEST)
    docker = all(x.media_type.startswith("application/vnd.docker.") for x in layers)
    media = MEDIA_DOCKER_MANIFEST if docker else MEDIA_OCI_MANIFEST
    doc = {
        "schemaVersion": 2, "mediaType": media,
        "config": {"mediaType": MEDIA_DOCKER_CONFIG if docker else MEDIA_OCI_CONFIG,
                   "size": len(config), "digest": image.id},
        "layers": [{"mediaType": x.media_type if docker else _TO_OCI.get(x.media_type,
                                                                          x.media_type),
                    "size": x.size, "digest": x.digest} for x in layers],
    }
    return json.dumps(doc, indent=3).encode(), media

