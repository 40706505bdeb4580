"""Layer streams: sniff gzip / zstd / plain tar and decompress on the fly, hashing the result.

zstd goes through Debian's ``zstd`` binary (no extra Python dependency); when it
is missing a zstd layer is refused with a clear error.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import threading
import zlib
from typing import Any, BinaryIO

from runtime.api.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


def sniff(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class _GzipReader(io.RawIOBase):
    """Multi-member gzip decompression with bounded output per read."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._z = zlib.decompressobj(wbits=31)
        self._pending = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._pos >= len(self._pending) and not self._eof:
            self._fill()
        n = min(len(view), len(self._pending) - self._pos)
        view[:n] = self._pending[self._pos : self._pos + n]
        self._pos += n
        return n

    def _fill(self) -> None:
        if self._z.eof:
            data = self._z.unused_data or self._raw.read(_CHUNK)
            if not data.strip(b"\0"):
                self._eof = self._only_zeros_left()  # zero padding after the last member
                if not self._eof:
                    raise InvalidArgument("invalid gzip data: garbage after the last member")
                return
            self._z = zlib.decompressobj(wbits=31)
        else:
            data = self._z.unconsumed_tail or self._raw.read(_CHUNK)
            if not data:
                raise InvalidArgument("unexpected end of gzip stream")
        try:
            self._pending = self._z.decompress(data, _CHUNK)
            self._pos = 0
        except zlib.error as e:
            raise InvalidArgument(f"invalid gzip data: {e}") from None

    def _only_zeros_left(self) -> bool:
        while chunk := self._raw.read(_CHUNK):
            if chunk.strip(b"\0"):
                return False
        return True


class _ZstdReader(io.RawIOBase):
    """``zstd -dc`` as a pipe; a thread feeds it so neither side blocks the other."""

    def __init__(self, raw: BinaryIO) -> None:
        if shutil.which("zstd") is None:
            raise InvalidArgument("zstd-compressed layer, but the zstd tool is not installed")
        self._proc = subprocess.Popen(
            ["zstd", "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._feeder = threading.Thread(target=self._feed, args=(raw,), daemon=True)
        self._feeder.start()

    def _feed(self, raw: BinaryIO) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while chunk := raw.read(_CHUNK):
                stdin.write(chunk)
        except (BrokenPipeError, OSError):
            pass
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        stdout = self._proc.stdout
        assert stdout is not None
        n = stdout.readinto(buffer)  # type: ignore[attr-defined]
        if n == 0:
            self._finish()
        return int(n)

    def _finish(self) -> None:
        rc = self._proc.wait()
        self._feeder.join()
        if rc != 0:
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            raise InvalidArgument(f"invalid zstd data: {err.strip()}")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for f in (self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()
        self._feeder.join()
        super().close()


class HashingReader(io.RawIOBase):
    """Counts and sha256-hashes everything read through it (the layer's DiffID)."""

    def __init__(self, raw: BinaryIO | io.RawIOBase) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[union-attr]
        if n:
            self.hash.update(memoryview(buffer)[:n])
            self.count += n
        return int(n or 0)

    def drain(self) -> None:
        buf = bytearray(_CHUNK)
        while self.readinto(buf):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def decompressed(stream: BinaryIO) -> tuple[io.RawIOBase, str]:
    """A reader of *stream*'s uncompressed bytes, and the compression it had."""
    buffered = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(
        _RawAdapter(stream), _CHUNK)
    kind = sniff(buffered.peek(4)[:4])
    if kind == "gzip":
        return _GzipReader(buffered), kind
    if kind == "zstd":
        return _ZstdReader(buffered), kind
    return _RawAdapter(buffered), kind


class _RawAdapter(io.RawIOBase):
    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._f.read(len(buffer))
        n = len(data)
        memoryview(buffer).cast("B")[:n] = data
        return n
