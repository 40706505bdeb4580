"""``docker pull``: resolve the manifest (and platform), fetch config and layers, unpack, record.

Layers download on a few threads, each straight into the content store
(verified by digest and size; an interrupted download resumes with ``Range``)
and is unpacked into its own snapshot as soon as it is complete (layers are
independent directories, so unpacking needs no order). Progress goes through
a queue to the generator, which yields moby's JSON messages.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from runtime.api.errors import CoveError, InvalidArgument, NotFound
from runtime.api.reference import Reference
from runtime.images import digest as dg
from runtime.images import platforms
from runtime.images.build import blob_layer
from runtime.images.content import DigestMismatch
from runtime.images.records import LayerBlob
from runtime.images.registry.auth import Authorizer, Credentials, TokenRefused, Unauthorized
from runtime.images.registry.client import (
    Endpoint,
    RegistryError,
    Transport,
    check,
    endpoints,
    open_url,
)
from runtime.images.registry.progress import Message, Throttle, progress, status

if TYPE_CHECKING:
    from runtime.images.store import ImageStore, Lease

log = logging.getLogger(__name__)
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join((MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST))
WORKERS = 3
RETRIES = 3
_CHUNK = 1 << 20
_MAX_MANIFEST = 4 << 20


@dataclass(frozen=True, slots=True)
class Manifest:
    body: bytes
    digest: str
    doc: dict[str, Any]


def pull_messages(store: ImageStore, ref: Reference, creds: Credentials | None,
                  platform: str = "") -> Iterator[Message]:
    """The pull as moby's progress stream; raises CoveError (in band once started)."""
    plat = platforms.parse(platform)
    auth = Authorizer(creds, [f"repository:{ref.path}:pull"])
    transport, manifest = _resolve_any(store, ref, plat, auth)
    try:
        with store.lease() as lease:
            yield from _pull(store, ref, manifest, transport, lease)
    finally:
        transport.close()


def _resolve_any(store: ImageStore, ref: Reference, plat: platforms.Platform,
                 auth: Authorizer) -> tuple[Transport, Manifest]:
    """The manifest from the first endpoint that has it: mirrors in order, then the origin.

    A mirror that is down, refuses us or lacks the image is skipped (Docker's
    fallback); the origin's error is the one reported.
    """
    candidates = endpoints(store, ref.domain, for_pull=True)
    for i, at in enumerate(candidates):
        t = Transport(store, ref.domain, auth, at=at)
        try:
            return t, resolve(t, ref, plat)
        except CoveError as e:
            t.close()
            if not at.mirror or i == len(candidates) - 1:
                raise
            log.info("mirror %s: %s; trying the next endpoint", at.host, e.message)
    raise AssertionError("unreachable: the origin is always the last endpoint")


def _pull(store: ImageStore, ref: Reference, manifest: Manifest, t: Transport,
          lease: Lease) -> Iterator[Message]:
    layer_descs = manifest.doc.get("layers") or []
    config_desc = manifest.doc.get("config") or {}
    yield status(f"Pulling from {ref.path}", ref.tag or ref.digest or "latest")
    config = fetch_small_blob(store, t, ref.path, config_desc, lease)
    diff_ids = json.loads(config).get("rootfs", {}).get("diff_ids") or []
    if len(diff_ids) != len(layer_descs):
        raise InvalidArgument("image config and manifest disagree on the number of layers")
    chains = dg.chain_ids(diff_ids)
    fresh = not _have_image(store, dg.sha256(config), chains)
    layers: list[LayerBlob | None] = [None] * len(layer_descs)
    todo = []
    for i, desc in enumerate(layer_descs):
        local = _local_layer(store, desc, diff_ids[i], chains[i])
        if local is not None:
            layers[i] = local
            lease.add(chains[i])
            yield status("Already exists", dg.short(desc["digest"]))
        else:
            todo.append(i)
            yield status("Pulling fs layer", dg.short(desc["digest"]))
    job = _Job(store, ref, auth=t.auth, lease=lease, at=t.resolved())
    yield from job.run(todo, layer_descs, diff_ids, chains)
    for i, layer in job.results.items():
        layers[i] = layer
    refs = [f"{ref.name}@{manifest.digest}"] + ([str(ref)] if ref.tag else [])
    store.add(config, [x for x in layers if x is not None], refs=refs, manifest=manifest.digest)
    store.events.publish("image", "pull", ref.familiar(), name=ref.familiar())
    yield status(f"Digest: {manifest.digest}")
    word = "Downloaded newer image for" if fresh else "Image is up to date for"
    yield status(f"Status: {word} {ref.familiar()}")


def _have_image(store: ImageStore, image_id: str, chains: list[str]) -> bool:
    return store.exists(image_id) and all(store.snapshots.has_layer(c) for c in chains)


def _local_layer(store: ImageStore, desc: dict[str, Any], diff_id: str, chain: str
                 ) -> LayerBlob | None:
    """The layer if it is already unpacked and some blob of it is stored."""
    if not store.snapshots.has_layer(chain):
        return None
    digest = dg.check(str(desc.get("digest", "")))
    if store.content.has(digest):
        return LayerBlob(digest, str(desc.get("mediaType", "")), store.content.size(digest),
                         diff_id)
    known = store.known_layer(diff_id)
    return known if known is not None and store.content.has(known.digest) else None


def resolve(t: Transport, ref: Reference, plat: platforms.Platform) -> Manifest:
    """The image manifest for *ref*, choosing *plat* from a manifest list / OCI index."""
    manifest = fetch_manifest(t, ref, ref.digest or ref.tag or "latest")
    media = manifest.doc.get("mediaType", "")
    if "manifests" in manifest.doc or media in (MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX):
        entries = manifest.doc.get("manifests") or []
        matches = [e for e in entries if plat.matches(e.get("platform") or {})]
        exact = [e for e in matches if (e.get("platform") or {}).get("variant", "") == plat.variant]
        chosen = (exact or matches or [None])[0]
        if chosen is None:
            raise NotFound(f"no matching manifest for {plat} in the manifest list entries")
        manifest = fetch_manifest(t, ref, dg.check(chosen["digest"]))
    if manifest.doc.get("schemaVersion") == 1:
        raise InvalidArgument(f"{ref.familiar()}: schema 1 image manifests are not supported")
    if "layers" not in manifest.doc or "config" not in manifest.doc:
        raise InvalidArgument(f"{ref.familiar()}: unsupported manifest type {media!r}")
    return manifest


def fetch_manifest(t: Transport, ref: Reference, tag_or_digest: str) -> Manifest:
    path = f"/v2/{ref.path}/manifests/{tag_or_digest}"
    denied = NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist"
                      " or may require 'docker login'")
    try:
        resp = t.request("GET", path, {"Accept": ACCEPT})
    except TokenRefused:
        raise
    except Unauthorized:
        if t.auth.creds.anonymous:  # a token, but not for this repo: moby's words
            raise denied from None
        raise
    body = resp.read(_MAX_MANIFEST + 1)
    if resp.status == 404:
        raise NotFound(f"manifest for {ref.familiar()} not found: manifest unknown")
    if resp.status in (401, 403):
        raise denied
    check(resp, body, f"manifest {ref.familiar()}")
    if len(body) > _MAX_MANIFEST:
        raise InvalidArgument("manifest too large")
    digest = dg.sha256(body)
    header = resp.getheader("Docker-Content-Digest", "")
    if (tag_or_digest.startswith("sha256:") and digest != tag_or_digest) or (
            header.startswith("sha256:") and header != digest):
        raise DigestMismatch(f"manifest digest mismatch for {ref.familiar()}: got {digest}")
    try:
        doc = json.loads(body)
    except ValueError:
        raise InvalidArgument(f"invalid manifest for {ref.familiar()}") from None
    return Manifest(body, digest, doc)


def fetch_small_blob(store: ImageStore, t: Transport, path: str, desc: dict[str, Any],
                     lease: Lease) -> bytes:
    digest, size = dg.check(str(desc.get("digest", ""))), int(desc.get("size", -1))
    if not store.content.has(digest):
        download(store, t, path, digest, size, lambda n: None, threading.Event())
    lease.add(digest)
    return store.content.read(digest)


def download(store: ImageStore, t: Transport, path: str, digest: str, size: int,
             on_progress: Callable[[int], None], cancel: threading.Event) -> None:
    """Fetch blob *digest* into the content store; resumes a partial ingest with Range."""
    if size < 0:
        raise InvalidArgument(f"blob {digest}: missing size")
    for attempt in range(1, RETRIES + 1):
        if store.content.has(digest):
            return
        with store.content.ingest(digest, size) as ing:
            try:
                _fetch_into(t, path, digest, ing, on_progress, cancel)
            except (RegistryError, OSError, http.client.HTTPException) as e:
                if attempt == RETRIES or cancel.is_set():
                    raise RegistryError(f"download {dg.short(digest)}: {e}") from None
                continue  # partial bytes stay in the ingest: resume from there
            ing.commit()
            return


def _fetch_into(t: Transport, path: str, digest: str, ing: Any,
                on_progress: Callable[[int], None], cancel: threading.Event) -> None:
    headers = {"Range": f"bytes={ing.offset}-"} if ing.offset else {}
    resp = t.request("GET", f"/v2/{path}/blobs/{digest}", headers)
    conn = None
    if resp.status in (301, 302, 303, 307, 308):
        resp.read()
        resp, conn = open_url(resp.getheader("Location", ""), headers)
    try:
        if resp.status == 206 and not resp.getheader("Content-Range", "").startswith(
                f"bytes {ing.offset}-"):
            resp.read()
            ing.reset()
            raise RegistryError("registry answered a different range than asked")
        if resp.status == 200 and ing.offset:
            ing.reset()  # the registry ignored the Range: start over
        if resp.status not in (200, 206):
            check(resp, resp.read(1 << 16), f"blob {dg.short(digest)}")
        length = resp.getheader("Content-Length")
        if length is not None and ing.offset + int(length) > ing.size:
            raise DigestMismatch(f"blob {digest}: registry sends {int(length)} bytes, "
                                 f"manifest says {ing.size}")
        _copy(resp, ing, on_progress, cancel)
    finally:
        if conn is not None:
            conn.close()


def _copy(resp: http.client.HTTPResponse, ing: Any,
          on_progress: Callable[[int], None], cancel: threading.Event) -> None:
    buf = bytearray(_CHUNK)
    while True:
        if cancel.is_set():
            raise RegistryError("cancelled")
        n = resp.readinto(buf)
        if not n:
            break
        ing.write(memoryview(buf)[:n])
        on_progress(ing.offset)
    if ing.offset < ing.size:
        raise RegistryError(f"connection closed after {ing.offset} of {ing.size} bytes")


class _Job:
    """The concurrent part of a pull: download + unpack of each missing layer."""

    def __init__(self, store: ImageStore, ref: Reference, *, auth: Authorizer,
                 lease: Lease, at: Endpoint) -> None:
        self.store, self.ref, self.auth, self.lease, self.at = store, ref, auth, lease, at
        self.messages: queue.Queue[Message] = queue.Queue()
        self.cancel = threading.Event()
        self.results: dict[int, LayerBlob] = {}

    def drain(self) -> Iterator[Message]:
        while True:
            try:
                yield self.messages.get_nowait()
            except queue.Empty:
                return

    def run(self, todo: list[int], descs: list[dict[str, Any]], diff_ids: list[str],
            chains: list[str]) -> Iterator[Message]:
        """Progress messages while the layers *todo* download; results land in ``results``."""
        if not todo:
            return
        pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="pull")
        try:
            futures = {pool.submit(self._layer, descs[i], diff_ids[i],
                                   chains[i - 1] if i else ""): i for i in todo}
            pending = set(futures)
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=0.1)
                yield from self.drain()
                for f in done:
                    self.results[futures[f]] = f.result()
            yield from self.drain()
        finally:
            self.cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _layer(self, desc: dict[str, Any], diff_id: str, parent: str) -> LayerBlob:
        digest, size = dg.check(str(desc.get("digest", ""))), int(desc.get("size", -1))
        short = dg.short(digest)
        self.lease.add(digest)
        chain = dg.chain_ids([parent, diff_id])[1] if parent else diff_id
        self.lease.add(chain)
        t = Transport(self.store, self.ref.domain, self.auth, at=self.at)
        try:
            throttle = Throttle()

            def downloading(n: int) -> None:
                if throttle.ready() or n == size:
                    self.messages.put(progress("Downloading", short, n, size))

            try:
                download(self.store, t, self.ref.path, digest, size, downloading, self.cancel)
            except CoveError:
                raise
            except Exception as e:  # keep the stream's error in band and readable
                raise CoveError(f"download {short}: {e}") from None
            self.messages.put(status("Verifying Checksum", short))
            self.messages.put(status("Download complete", short))
            if not self.store.snapshots.has_layer(chain):
                self._extract(digest, size, diff_id, parent, short)
            self.messages.put(status("Pull complete", short))
            return blob_layer(self.store, digest, diff_id)
        finally:
            t.close()

    def _extract(self, digest: str, size: int, diff_id: str, parent: str, short: str) -> None:
        throttle = Throttle()

        def extracting(n: int) -> None:
            if throttle.ready() or n == size:
                self.messages.put(progress("Extracting", short, n, size))

        with self.store.content.open(digest) as f:
            counting = cast(BinaryIO, _Counting(f, extracting))
            self.store.snapshots.apply(parent, counting, diff_id)


class _Counting:
    """Reports how much of the compressed blob has been read (the Extracting bar)."""

    def __init__(self, f: BinaryIO, report: Callable[[int], None]) -> None:
        self._f, self._report, self._n = f, report, 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._n += len(data)
        self._report(self._n)
        return data

    def readinto(self, buf: Any) -> int:
        n = self._f.readinto(buf)  # type: ignore[attr-defined]
        self._n += n
        self._report(self._n)
        return int(n)

    def readable(self) -> bool:
        return True
