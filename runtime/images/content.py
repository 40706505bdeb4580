"""Content-addressed blob store (containerd's local content store, in small).

Lifecycle of a blob: bytes are written to ``ingest/<name>/data`` while being
hashed; :meth:`Ingest.commit` checks digest and size, fsyncs and renames the
file to ``blobs/sha256/<hex>``. Only that rename makes a blob present, so a
crash or a bad download never leaves a half blob that counts. An ingest named
after its expected digest survives an interrupted download: the next writer
re-hashes what is there and continues from its size (HTTP Range resume).

A committed blob is *sealed*: its mtime is set to the epoch. Anything that
writes to it later moves the mtime, so :meth:`ContentStore.verify` (run at
engine start) re-hashes only blobs that lost their seal and removes those that
no longer match their digest, instead of hashing the whole store every start.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from runtime.api.errors import CoveError, InvalidArgument, NotFound
from runtime.images import digest as dg

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


class DigestMismatch(CoveError):
    """A blob's bytes do not match its digest or declared size; nothing was stored."""

    status = 400


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Ingest:
    """One blob being written. Use as a context manager; commit() or it is aborted."""

    def __init__(self, store: ContentStore, expected: str | None, size: int | None) -> None:
        self._store = store
        self.expected = expected
        self.size = size
        name = dg.hex_of(expected) if expected else uuid.uuid4().hex
        self.dir = store.root / "ingest" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # one writer per blob, across processes
        self.path = self.dir / "data"
        self._hash = hashlib.sha256()
        self._file = open(self.path, "ab+")  # noqa: SIM115 - lives as long as the ingest
        self.offset = self._rehash()
        self._done = False

    def _rehash(self) -> int:
        """Hash what an earlier, interrupted writer left, so writing can resume after it."""
        self._file.seek(0)
        n = 0
        while chunk := self._file.read(_CHUNK):
            self._hash.update(chunk)
            n += len(chunk)
        if self.size is not None and n > self.size:
            self.reset()
            return 0
        return n

    def reset(self) -> None:
        """Forget any partial data (the server ignored our Range request)."""
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes | memoryview) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            self.abort()  # the bytes so far are suspect too: nothing is kept for a resume
            raise DigestMismatch(
                f"blob {self.expected or ''} is larger than its declared size {self.size}"
            )
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def copy_from(self, stream: BinaryIO) -> None:
        while chunk := stream.read(_CHUNK):
            self.write(chunk)

    def commit(self) -> str:
        """Verify, fsync and publish the blob; returns its digest."""
        actual = "sha256:" + self._hash.hexdigest()
        try:
            if self.size is not None and self.offset != self.size:
                raise DigestMismatch(
                    f"blob {self.expected or actual}: size {self.offset}, expected {self.size}"
                )
            if self.expected is not None and actual != self.expected:
                raise DigestMismatch(f"digest mismatch: expected {self.expected}, got {actual}")
            self._file.flush()
            os.utime(self._file.fileno(), ns=(0, 0))  # the seal (see the module doc)
            os.fsync(self._file.fileno())
            target = self._store.path(actual)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, target)
            _fsync_dir(target.parent)
        except BaseException:
            self.abort()
            raise
        self._close(remove=True)
        return actual

    def abort(self, keep_partial: bool = False) -> None:
        """Drop the ingest; *keep_partial* leaves verified-so-far bytes for a resume."""
        self._close(remove=not keep_partial)

    def _close(self, remove: bool) -> None:
        if self._done:
            return
        self._done = True
        self._file.close()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)

    def __enter__(self) -> Ingest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort(keep_partial=self.expected is not None)


class ContentStore:
    """Blobs by digest under *root*: ``blobs/sha256/<hex>``, ``ingest/<name>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "ingest").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / dg.hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def ingest(self, expected: str | None = None, size: int | None = None) -> Ingest:
        if expected is not None:
            dg.check(expected)
        if size is not None and size < 0:
            raise InvalidArgument(f"invalid blob size {size}")
        return Ingest(self, expected, size)

    def put(self, data: bytes, expected: str | None = None) -> str:
        digest = dg.sha256(data)
        if expected is not None and expected != digest:
            raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
        if self.has(digest):
            return digest
        with self.ingest(digest, len(data)) as ing:
            ing.write(data)
            return ing.commit()

    def delete(self, digest: str) -> None:
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            pass

    def digests(self) -> set[str]:
        return {"sha256:" + p.name for p in (self.root / "blobs" / "sha256").iterdir()}

    def verify(self) -> list[str]:
        """Re-hash blobs whose seal is broken; delete and return those that are damaged."""
        damaged = []
        for path in (self.root / "blobs" / "sha256").iterdir():
            try:
                if path.stat().st_mtime_ns == 0:
                    continue
                with open(path, "rb") as f:
                    actual = hashlib.file_digest(f, "sha256").hexdigest()
            except FileNotFoundError:
                continue
            if actual == path.name:
                os.utime(path, ns=(0, 0))  # unchanged after all (or from before seals)
                continue
            log.error("blob sha256:%s is damaged on disk (its content hashes to sha256:%s);"
                      " removed", path.name, actual)
            path.unlink(missing_ok=True)
            damaged.append("sha256:" + path.name)
        return damaged

    def clean_ingests(self) -> None:
        """Remove unnamed (non-resumable) ingests an earlier crash left behind."""
        for d in (self.root / "ingest").iterdir():
            if len(d.name) != 64:
                shutil.rmtree(d, ignore_errors=True)
